//! The pool's manager: creating a connection is the credential path (db-credentials'
//! [`Database::connect`]: rotation recovery, TLS rules), single-flight with one backoff for the
//! whole environment; recycling checks a connection before it is handed out again. Also what the
//! environment knows about its writer (failover bookkeeping).

use super::{DbError, IDLE_CHECK_AFTER, IDLE_PING_TIMEOUT, PoolSettings, RetryPolicy};
use crate::store::{self, ItemStore};
use db_credentials::{Condition, Database, SessionTarget, metric};
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use std::{
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::Mutex;

/// What a request asking for a connection brings to a connect: its deadline, and how many
/// connects the environment had finished when it began to wait (for a slot or for the connect
/// lock), so that it takes the error of any attempt that failed meanwhile.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub(super) deadline: Option<Instant>,
    pub(super) seen: u64,
}

tokio::task_local! {
    /// deadpool's `create` takes no arguments, and it runs in the task that called `get`: this is
    /// how a connect learns about the request it serves.
    pub(super) static ASK: Ask;
}

/// A live connection with its prepared statements, when it was last used, and when it retires.
#[derive(Debug)]
pub struct Live {
    /// The connection and its statements.
    pub store: ItemStore,
    last_used: StdMutex<Instant>,
    lifetime: Duration,
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
    /// Whether it has reached its (jittered) maximum lifetime.
    pub fn expired(&self) -> bool {
        self.store.connection().info.opened_at.elapsed() >= self.lifetime
    }
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

/// Creates and checks the pool's connections. See the module docs.
pub struct Manager {
    database: Database,
    policy: RetryPolicy,
    pool: PoolSettings,
    connects: Mutex<Connects>,
    /// A copy of `connects.error`, readable while a connect holds that lock.
    last_connect_error: StdMutex<Option<DbError>>,
    attempts: AtomicU64,
    schema_ready: AtomicBool,
    writer: StdMutex<Writer>,
}

impl Manager {
    pub(super) fn new(database: Database, policy: RetryPolicy, pool: PoolSettings) -> Self {
        Self {
            database: database.with_target(SessionTarget::ReadWrite),
            policy,
            pool,
            connects: Mutex::new(Connects::default()),
            last_connect_error: StdMutex::new(None),
            attempts: AtomicU64::new(0),
            schema_ready: AtomicBool::new(false),
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

    /// The pool's settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.pool
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

    async fn open(&self) -> Result<Live, DbError> {
        let conn = self.database.connect().await?;
        if !self.schema_ready.load(Ordering::Acquire) {
            store::ensure_schema(&conn.client)
                .await
                .map_err(|e| DbError::Setup(Arc::new(e)))?;
            self.schema_ready.store(true, Ordering::Release);
        }
        let store = ItemStore::new(conn).await.map_err(|e| DbError::Setup(Arc::new(e)))?;
        Ok(Live {
            store,
            last_used: StdMutex::new(Instant::now()),
            lifetime: self.pool.jittered_lifetime(),
        })
    }

    /// The last connect's error, while no connect has succeeded since: why a request that waited
    /// for a slot until its deadline got none, when the slot was held by failing connects.
    pub(super) fn failing_connects(&self) -> Option<DbError> {
        self.connects.try_lock().ok().and_then(|c| c.error.clone()).or_else(|| {
            // A connect holds the lock: its predecessor's error is the one to report.
            self.last_connect_error.lock().ok().and_then(|e| e.clone())
        })
    }

    /// Connects finished so far.
    pub(super) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// A connection was taken out of the pool because it met `why`.
    pub(super) fn discarded(&self, why: Condition) {
        self.session_lost(why);
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
    pub(super) fn writer_answered(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.last_answer = Some(Instant::now());
            if !w.failover {
                w.lost_at = None;
                w.role = Some("writer");
            }
        }
    }
}

impl managed::Manager for Manager {
    type Type = Arc<Live>;
    type Error = DbError;

    /// A new connection. Single flight: one connect at a time per environment. Whoever queued
    /// behind a failed attempt takes its error: with the database down, N concurrent invocations
    /// make one attempt, not N in a row (each of which can take the whole connect timeout). After
    /// a failure the environment backs off; a caller waits for that only until its deadline.
    async fn create(&self) -> Result<Arc<Live>, DbError> {
        let ask = ASK.try_with(|a| *a).unwrap_or(Ask {
            deadline: None,
            seen: self.attempts(),
        });
        let (deadline, seen) = (ask.deadline, ask.seen);
        let mut connects = self.connects.lock().await;
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
        // Boxed: the credential path is a deep future, and nesting it in deadpool's own would
        // overflow the compiler's layout depth.
        let outcome = Box::pin(self.open()).await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(live) => {
                *connects = Connects::default();
                if let Ok(mut last) = self.last_connect_error.lock() {
                    *last = None;
                }
                self.writer_reached();
                Ok(Arc::new(live))
            }
            Err(e) => {
                connects.failures += 1;
                connects.not_before = Some(Instant::now() + self.policy.backoff(connects.failures));
                connects.error = Some(e.clone());
                if let Ok(mut last) = self.last_connect_error.lock() {
                    *last = Some(e.clone());
                }
                self.connect_failed(&e);
                Err(e)
            }
        }
    }

    /// Before a pooled connection is handed out again: alive, not reported read-only, not past
    /// its lifetime, and answering an empty query after idling (possibly frozen, while a NAT, RDS
    /// Proxy or the server dropped the socket). A connection that fails is dropped (its client
    /// closes it) and the pool takes another or creates one.
    async fn recycle(&self, live: &mut Arc<Live>, _: &Metrics) -> RecycleResult<DbError> {
        let conn = live.store.connection();
        if conn.is_read_only() {
            tracing::warn!("the database reported this session read-only; discarding it");
            self.session_lost(Condition::ReadOnly);
            return Err(RecycleError::message("read-only session"));
        }
        if conn.client.is_closed() {
            self.session_lost(Condition::ConnectionLost);
            return Err(RecycleError::message("connection closed"));
        }
        if live.expired() {
            tracing::info!(
                age_s = conn.info.opened_at.elapsed().as_secs(),
                "database connection reached its maximum lifetime; replacing it"
            );
            return Err(RecycleError::message("maximum lifetime reached"));
        }
        if live.idle() >= IDLE_CHECK_AFTER {
            let ping = tokio::time::timeout(IDLE_PING_TIMEOUT, conn.client.simple_query("")).await;
            if !matches!(ping, Ok(Ok(_))) {
                tracing::info!(
                    idle_ms = live.idle().as_millis() as u64,
                    "idle database connection is dead; reconnecting"
                );
                self.session_lost(Condition::ConnectionLost);
                return Err(RecycleError::message("idle connection dead"));
            }
            // The ping is the idle session's first statement since a possible reload: a demoted
            // node reports itself read-only in its answer.
            if conn.is_read_only() {
                tracing::warn!("the database reported this session read-only; discarding it");
                self.session_lost(Condition::ReadOnly);
                return Err(RecycleError::message("read-only session"));
            }
        }
        live.touch();
        Ok(())
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
