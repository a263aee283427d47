//! The database connection of one execution environment (design §5, §11).
//!
//! Opened lazily on the first request that needs it, shared by concurrent invocations (a
//! tokio-postgres client pipelines queries), reused across warm invocations. Every new session must
//! be a writer (`target_session_attrs=read-write`): after a failover the endpoint may still lead to
//! the old primary, read-only or gone. After the environment has been idle (possibly frozen, while
//! a NAT, RDS Proxy or the server dropped the socket) the session is checked with an empty query
//! before use; a session the server reported read-only, or one that met a condition that ends it
//! (connection lost, shutting down, read-only), is discarded, never reused.
//!
//! An operation that meets a transient condition of the database is tried again within a budget
//! ([`RetryPolicy`]): bounded in attempts and in time, with jittered exponential backoff.
//! Connects are single-flight per environment and follow one backoff for the whole environment,
//! so with N environments waiting for a database that refuses (53300, 57P03, unreachable,
//! read-only) it sees at most one attempt per environment per backoff step. A write whose outcome
//! is unknown (the connection broke after it was sent) is never sent again.

use crate::{
    problem::ApiError,
    store::{self, ItemStore},
};
use db_credentials::{Condition, ConnectError, ConnectErrorKind, Database, SessionTarget, metric};
use std::{
    future::Future,
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{Mutex, RwLock};

/// Idle time after which a connection is checked before use.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);
/// Bound on that check. A socket a NAT dropped while the environment was frozen often gets no
/// reset, so a dead connection shows as silence: give up quickly and reconnect.
pub const IDLE_PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a single query (and on the idle check).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long and how often a request waits for the database to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// Wall time of a request after which no new try starts (a try under way finishes: at most
    /// one connect timeout or one [`QUERY_TIMEOUT`] more).
    pub budget: Duration,
    /// The first pause between connects of the environment; it doubles with each failure.
    pub first_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 12 tries within 5 s, pauses from 100 ms doubling to 1 s (so the time bound is the one met
    /// first): a failover whose writer is reachable again within about 4 s (the devstack's) costs
    /// no request; one that takes longer (RDS Multi-AZ: 1–2 minutes) is answered 503 with
    /// `Retry-After` well inside the function's 20 s timeout and API Gateway's 30 s.
    fn default() -> Self {
        Self {
            attempts: 12,
            budget: Duration::from_secs(5),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The pause after `failures` consecutive failures: exponential, capped, with equal jitter
    /// (half fixed, half random), so environments that failed together do not retry together.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let step = doubled.min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// A live connection with its prepared statements, and when it was last used.
#[derive(Debug)]
pub struct Live {
    /// The connection and its statements.
    pub store: ItemStore,
    last_used: StdMutex<Instant>,
}

impl Live {
    fn idle(&self) -> Duration {
        self.last_used.lock().map(|t| t.elapsed()).unwrap_or(Duration::MAX)
    }
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }
}

/// Why a database operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// No connection could be made.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Setting up a new connection (schema, statements) failed.
    #[error("preparing the connection failed: {}", db_credentials::server_message(.0))]
    Setup(Arc<tokio_postgres::Error>),
    /// The query failed.
    #[error("query failed: {}", db_credentials::server_message(.0))]
    Query(Arc<tokio_postgres::Error>),
    /// The connection broke after a non-idempotent statement was sent: it may or may not have been
    /// applied, so it was not sent again.
    #[error("the database connection was lost during the request; it may or may not have been applied")]
    Lost,
    /// The query did not finish within [`QUERY_TIMEOUT`].
    #[error("the database did not answer within {} ms", QUERY_TIMEOUT.as_millis())]
    Timeout,
}

impl DbError {
    /// The condition of the database behind this failure; `None` for a credential or TLS problem,
    /// and for a statement that failed on its own (our defect).
    pub fn condition(&self) -> Option<Condition> {
        match self {
            Self::Connect(c) => Condition::of_connect(c),
            Self::Setup(e) | Self::Query(e) => Condition::of_error(e),
            Self::Lost | Self::Timeout => Some(Condition::ConnectionLost),
        }
    }

    /// Whether the statement itself failed while the database was fine: our own defect (a 500).
    pub fn is_defect(&self) -> bool {
        matches!(self, Self::Query(e) if Condition::of_error(e).is_none())
    }

    /// Whether trying again soon may succeed.
    fn is_transient(&self) -> bool {
        match self {
            // A refused login was already recovered from as far as the credentials allow.
            Self::Connect(c) if c.kind == ConnectErrorKind::Authentication => false,
            Self::Lost | Self::Timeout => false,
            other => other.condition().is_some_and(Condition::is_transient),
        }
    }
}

/// Whether an operation may run a second time on a new connection when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once (reads, PUT, DELETE).
    Idempotent,
    /// It must not be repeated (POST): its outcome is unknown, and a repeat could apply it twice.
    /// It is still tried again when it certainly was not applied: no connection was made, or the
    /// server refused the statement (read-only, shutting down, rolled back).
    Never,
}

/// What a successful operation returned, and whether an earlier try of it may have been applied
/// (its connection broke after it was sent, and this result comes from a later try).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done<T> {
    /// The result of the try that succeeded.
    pub value: T,
    /// An earlier try may have been applied.
    pub after_unknown_outcome: bool,
}

/// What the environment knows about its writer, for `/health/db` and the failover metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStatus {
    /// The writer this environment had is gone (read-only, shutting down, or not reachable again
    /// at once) and no new writer has been reached yet.
    pub failover: bool,
    /// What the last session or connect found: `writer`, `read-only`, `shutting-down`,
    /// `starting`, `unreachable`, `no-free-connections`, or `unknown`.
    pub role: &'static str,
    /// Time since a writer last answered, if one ever did.
    pub since_last_writer: Option<Duration>,
}

#[derive(Debug, Default)]
struct Writer {
    /// When the writer was lost (first sign), until one is reached again.
    lost_at: Option<Instant>,
    /// Whether the loss was confirmed as a failover (and counted).
    failover: bool,
    last_answer: Option<Instant>,
    role: Option<&'static str>,
}

/// The environment's connects: single flight, and one backoff shared by every invocation.
#[derive(Default)]
struct Connects {
    /// The last attempt's error, shared with callers that queued behind it.
    error: Option<DbError>,
    /// Consecutive failed attempts.
    failures: u32,
    /// No attempt before this.
    not_before: Option<Instant>,
}

/// The connection holder. See the module docs.
pub struct SharedConnection {
    database: Database,
    policy: RetryPolicy,
    live: RwLock<Option<Arc<Live>>>,
    connects: Mutex<Connects>,
    attempts: AtomicU64,
    schema_ready: AtomicBool,
    fresh_per_request: bool,
    writer: StdMutex<Writer>,
}

impl SharedConnection {
    /// A holder over `database`, asking every session to be a writer. `fresh_per_request` opens a
    /// new connection for every operation (a test setting that makes every request exercise
    /// credentials).
    pub fn new(database: Database, policy: RetryPolicy, fresh_per_request: bool) -> Self {
        Self {
            database: database.with_target(SessionTarget::ReadWrite),
            policy,
            live: RwLock::new(None),
            connects: Mutex::new(Connects::default()),
            attempts: AtomicU64::new(0),
            schema_ready: AtomicBool::new(false),
            fresh_per_request,
            writer: StdMutex::new(Writer::default()),
        }
    }

    /// The database (credential provider and connect rules).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// What the environment knows about its writer.
    pub fn writer_status(&self) -> WriterStatus {
        let w = self.writer.lock().map(|w| (w.failover, w.role, w.last_answer));
        let (failover, role, last) = w.unwrap_or((false, None, None));
        WriterStatus {
            failover,
            role: role.unwrap_or("unknown"),
            since_last_writer: last.map(|t| t.elapsed()),
        }
    }

    /// A usable connection: the shared one if it is alive and a writer, else a new one, waiting
    /// for the environment's backoff only until `deadline` (`None`: not at all).
    ///
    /// # Errors
    /// [`DbError::Connect`] or [`DbError::Setup`]; while backing off past `deadline`, the last
    /// attempt's error.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Arc<Live>, DbError> {
        if !self.fresh_per_request
            && let Some(live) = self.shared().await
        {
            return Ok(live);
        }
        // Single flight: one connect at a time. Whoever queued behind an attempt takes its
        // outcome, success or failure: with the database down, N concurrent invocations make one
        // attempt, not N in a row (each of which can take the whole connect timeout).
        let seen = self.attempts.load(Ordering::Acquire);
        let mut connects = self.connects.lock().await;
        if !self.fresh_per_request
            && let Some(live) = self.usable().await
        {
            return Ok(live);
        }
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some(err) = &connects.error
        {
            return Err(err.clone());
        }
        if let Some(not_before) = connects.not_before
            && not_before > Instant::now()
        {
            match deadline {
                Some(deadline) if not_before < deadline => tokio::time::sleep_until(not_before.into()).await,
                _ => {
                    if let Some(err) = &connects.error {
                        return Err(err.clone());
                    }
                }
            }
        }
        let outcome = self.open().await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(live) => {
                *connects = Connects::default();
                self.writer_reached();
                if !self.fresh_per_request {
                    *self.live.write().await = Some(live.clone());
                }
                Ok(live)
            }
            Err(e) => {
                connects.failures += 1;
                connects.not_before = Some(Instant::now() + self.policy.backoff(connects.failures));
                connects.error = Some(e.clone());
                self.connect_failed(&e);
                Err(e)
            }
        }
    }

    /// The shared connection, checked: alive, not reported read-only, answering after idling.
    async fn shared(&self) -> Option<Arc<Live>> {
        let live = self.usable().await?;
        if live.idle() < IDLE_CHECK_AFTER {
            live.touch();
            return Some(live);
        }
        let client = &live.store.connection().client;
        let ping = tokio::time::timeout(IDLE_PING_TIMEOUT, client.simple_query("")).await;
        if !matches!(ping, Ok(Ok(_))) {
            tracing::info!(
                idle_ms = live.idle().as_millis() as u64,
                "idle database connection is dead; reconnecting"
            );
            self.discard(&live, Condition::ConnectionLost).await;
            return None;
        }
        // The ping is the idle session's first statement since a possible reload: a demoted node
        // reports itself read-only in its answer.
        if live.store.connection().is_read_only() {
            tracing::warn!("the database reported this session read-only; discarding it");
            self.discard(&live, Condition::ReadOnly).await;
            return None;
        }
        live.touch();
        Some(live)
    }

    /// The shared connection unless it is closed or on a node that turned read-only.
    async fn usable(&self) -> Option<Arc<Live>> {
        let live = self.live.read().await.clone()?;
        let conn = live.store.connection();
        if conn.is_read_only() {
            tracing::warn!("the database reported this session read-only; discarding it");
            self.discard(&live, Condition::ReadOnly).await;
            return None;
        }
        if conn.client.is_closed() {
            self.discard(&live, Condition::ConnectionLost).await;
            return None;
        }
        Some(live)
    }

    async fn open(&self) -> Result<Arc<Live>, DbError> {
        let conn = self.database.connect().await?;
        if !self.schema_ready.load(Ordering::Acquire) {
            store::ensure_schema(&conn.client)
                .await
                .map_err(|e| DbError::Setup(Arc::new(e)))?;
            self.schema_ready.store(true, Ordering::Release);
        }
        let store = ItemStore::new(conn).await.map_err(|e| DbError::Setup(Arc::new(e)))?;
        Ok(Arc::new(Live {
            store,
            last_used: StdMutex::new(Instant::now()),
        }))
    }

    /// Forgets `live` if it is still the shared connection; `why` is what it met.
    pub async fn discard(&self, live: &Arc<Live>, why: Condition) {
        {
            let mut guard = self.live.write().await;
            if guard.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, live)) {
                *guard = None;
            }
        }
        self.session_lost(why);
    }

    /// Runs `op` on a connection, trying again within the [`RetryPolicy`] when the database is in
    /// a transient condition. An operation whose outcome is unknown is tried again only when
    /// `retry` allows.
    ///
    /// # Errors
    /// [`DbError`]: the last failure.
    pub async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, DbError>
    where
        F: Fn(Arc<Live>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.run_tracked(retry, op).await.map(|done| done.value)
    }

    /// [`Self::run`], also saying whether an earlier try may have been applied.
    ///
    /// # Errors
    /// [`DbError`]: the last failure.
    pub async fn run_tracked<T, F, Fut>(&self, retry: Retry, op: F) -> Result<Done<T>, DbError>
    where
        F: Fn(Arc<Live>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let deadline = Instant::now() + self.policy.budget;
        let mut tries = 0;
        let mut after_unknown_outcome = false;
        loop {
            tries += 1;
            let may_retry = |e: &DbError| e.is_transient() && tries < self.policy.attempts && Instant::now() < deadline;
            let live = match self.acquire(Some(deadline)).await {
                Ok(live) => live,
                // Nothing was sent: always safe to try again (acquire waits for the backoff).
                Err(e) if may_retry(&e) => continue,
                Err(e) => return Err(e),
            };
            let e = match tokio::time::timeout(QUERY_TIMEOUT, op(live.clone())).await {
                // A demoted node reports `default_transaction_read_only` with the first answer
                // after its reload: a read it served may be stale (the new writer has moved on),
                // so the answer is not used. A write that succeeded committed before the node
                // turned read-only (after, it gets 25006): it stands, and is never sent again.
                Ok(Ok(_))
                    if retry == Retry::Idempotent
                        && live.store.connection().is_read_only()
                        && tries < self.policy.attempts
                        && Instant::now() < deadline =>
                {
                    tracing::warn!("the answer came from a node that turned read-only; asking the writer");
                    self.discard(&live, Condition::ReadOnly).await;
                    // Whatever this try did (a PUT, a DELETE) counts as applied.
                    after_unknown_outcome = true;
                    continue;
                }
                Ok(Ok(value)) => {
                    self.writer_answered();
                    return Ok(Done {
                        value,
                        after_unknown_outcome,
                    });
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    // A query that hangs may have wedged the connection (a primary waiting for a
                    // standby that was promoted): start clean, and do not spend the budget again.
                    self.discard(&live, Condition::ConnectionLost).await;
                    return Err(if retry == Retry::Never {
                        DbError::Lost
                    } else {
                        DbError::Timeout
                    });
                }
            };
            let Some(condition) = Condition::of_error(&e) else {
                return Err(DbError::Query(Arc::new(e)));
            };
            if condition.ends_session() {
                self.discard(&live, condition).await;
            }
            // An error the server sent in answer to the statement means it was not applied (in
            // autocommit, any error before the commit rolls it back). A broken connection says
            // nothing about it.
            if e.as_db_error().is_none() {
                if retry == Retry::Never {
                    return Err(DbError::Lost);
                }
                after_unknown_outcome = true;
            }
            let e = DbError::Query(Arc::new(e));
            if !may_retry(&e) {
                return Err(e);
            }
            tracing::info!(
                condition = condition.as_str(),
                tries,
                "database condition; trying again"
            );
            if !condition.ends_session() {
                // Same session (a conflict, a canceled statement): pause before the next try.
                let pause = self
                    .policy
                    .backoff(tries)
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// A session ended on `why`: the first sign that the writer may be gone.
    fn session_lost(&self, why: Condition) {
        let Ok(mut w) = self.writer.lock() else { return };
        let had_writer = w.last_answer.is_some();
        if w.lost_at.is_none() {
            w.lost_at = Some(Instant::now());
        }
        w.role = Some(role_of(why));
        if why.means_failover() && had_writer {
            confirm_failover(&mut w, why.as_str());
        }
    }

    /// A connect failed: a node that is not a writer, or none reachable, after having had a writer,
    /// is a failover.
    fn connect_failed(&self, e: &DbError) {
        let condition = e.condition();
        if condition == Some(Condition::TooManyConnections) {
            metrics::counter!(metric::CONNECTIONS_EXHAUSTED).increment(1);
        }
        let Ok(mut w) = self.writer.lock() else { return };
        w.role = Some(condition.map_or("unknown", role_of));
        let lost_writer = matches!(
            condition,
            Some(
                Condition::ReadOnly | Condition::ShuttingDown | Condition::CannotConnectNow | Condition::ConnectionLost
            )
        );
        if lost_writer && w.last_answer.is_some() {
            if w.lost_at.is_none() {
                w.lost_at = Some(Instant::now());
            }
            confirm_failover(&mut w, condition.map_or("unknown", Condition::as_str));
        }
    }

    /// A new session on a writer.
    fn writer_reached(&self) {
        let Ok(mut w) = self.writer.lock() else { return };
        if w.failover
            && let Some(lost_at) = w.lost_at
        {
            let ms = lost_at.elapsed().as_secs_f64() * 1000.0;
            metrics::histogram!(metric::TIME_TO_WRITER_MS).record(ms);
            tracing::info!(
                time_to_writer_ms = ms.round() as u64,
                "reached a writer after a failover"
            );
        }
        w.failover = false;
        w.lost_at = None;
        w.role = Some("writer");
        w.last_answer = Some(Instant::now());
    }

    /// A statement succeeded on a writer.
    fn writer_answered(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.last_answer = Some(Instant::now());
            if !w.failover {
                w.lost_at = None;
                w.role = Some("writer");
            }
        }
    }
}

fn confirm_failover(w: &mut Writer, evidence: &str) {
    if w.failover {
        return;
    }
    w.failover = true;
    metrics::counter!(metric::FAILOVERS_DETECTED).increment(1);
    tracing::warn!(
        evidence,
        "the writer is gone (failover detected); looking for the new one through the endpoint"
    );
}

fn role_of(condition: Condition) -> &'static str {
    match condition {
        Condition::ReadOnly => "read-only",
        Condition::ShuttingDown => "shutting-down",
        Condition::CannotConnectNow => "starting",
        Condition::ConnectionLost => "unreachable",
        Condition::TooManyConnections => "no-free-connections",
        _ => "writer",
    }
}

/// The 503 for a database failure: what failed, without hosts, users or secret ids (those are
/// logged with the request id).
impl From<&DbError> for ApiError {
    fn from(e: &DbError) -> Self {
        let (detail, retry_after, cause): (String, u32, &'static str) = match (e, e.condition()) {
            (DbError::Lost, _) => (
                "the database connection was lost after the request was sent; it may or may not have been applied"
                    .into(),
                1,
                "outcome-unknown",
            ),
            (DbError::Timeout, _) => ("the database did not answer in time".into(), 2, "timeout"),
            (DbError::Connect(c), _) if c.kind == ConnectErrorKind::Authentication => (
                "the database refused the service's credentials".into(),
                2,
                "credentials-refused",
            ),
            (DbError::Connect(c), _) if c.kind == ConnectErrorKind::Credentials => (
                "the database credentials could not be read".into(),
                2,
                "credentials-unavailable",
            ),
            (DbError::Connect(c), _) if c.kind == ConnectErrorKind::Tls => {
                ("the TLS connection to the database failed".into(), 30, "tls")
            }
            (DbError::Connect(c), _) if c.kind == ConnectErrorKind::Timeout => {
                ("the database did not answer in time".into(), 2, "timeout")
            }
            (DbError::Connect(c), _) if c.kind == ConnectErrorKind::Unreachable => {
                ("the database is unreachable".into(), 2, "unreachable")
            }
            (_, Some(condition)) => (condition_detail(condition), retry_after(condition), condition.as_str()),
            (DbError::Setup(_), None) => ("the database connection could not be prepared".into(), 5, "setup"),
            (DbError::Connect(_) | DbError::Query(_), None) => {
                ("the database refused the connection".into(), 5, "refused")
            }
        };
        Self::Unavailable {
            detail,
            retry_after,
            cause,
        }
    }
}

fn condition_detail(condition: Condition) -> String {
    let sqlstate = match condition {
        Condition::ReadOnly => " (SQLSTATE 25006)",
        Condition::TooManyConnections => " (SQLSTATE 53300)",
        Condition::InsufficientPrivilege => " (SQLSTATE 42501)",
        Condition::CannotConnectNow => " (SQLSTATE 57P03)",
        _ => "",
    };
    format!("{}{sqlstate}", condition.describe())
}

fn retry_after(condition: Condition) -> u32 {
    match condition {
        // A failover: a writer is usually reachable again within seconds.
        Condition::ReadOnly | Condition::ShuttingDown | Condition::ConnectionLost | Condition::CannotConnectNow => 1,
        Condition::TooManyConnections | Condition::RolledBack | Condition::Canceled => 2,
        Condition::InsufficientResources => 10,
        // Not transient: an operator has to act.
        Condition::InsufficientPrivilege | Condition::ServerFault => 30,
    }
}

impl ApiError {
    /// The answer to a failed database operation, logged: a 500 for a statement that failed while
    /// the database was fine (our own defect), a 503 for anything the database or AWS did.
    pub fn from_db(e: DbError) -> Self {
        if e.is_defect() {
            tracing::error!(error = %e, "unexpected database error");
            return Self::Internal;
        }
        tracing::error!(error = %e, condition = e.condition().map_or("-", Condition::as_str), "database unavailable");
        Self::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_equal_jitter() {
        let p = RetryPolicy::default();
        for failures in 1..=20 {
            let step = (p.first_backoff * 2u32.pow((failures - 1).min(10))).min(p.max_backoff);
            for _ in 0..50 {
                let pause = p.backoff(failures);
                assert!(
                    pause >= step / 2 && pause <= step,
                    "{failures}: {pause:?} outside [{:?}, {step:?}]",
                    step / 2
                );
            }
        }
        // Jitter: environments that failed together do not come back together.
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(pauses.len() > 1);
    }
}
