//! The database connection of one execution environment.
//!
//! Opened lazily on the first request that needs it, shared by concurrent invocations (a
//! tokio-postgres client pipelines queries), reused across warm invocations. After the
//! environment has been idle (possibly frozen, during which a NAT, RDS Proxy or the server may
//! have dropped the socket) it is checked with an empty query before use. A connection that died
//! is replaced once; idempotent operations are then retried on the new one.

use crate::{
    problem::ApiError,
    store::{self, ItemStore},
};
use db_credentials::{ConnectError, ConnectErrorKind, Database, server_message};
use std::{
    future::Future,
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{Mutex, RwLock};
use tokio_postgres::error::SqlState;

/// Idle time after which a connection is checked before use.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);
/// Bound on that check. A socket a NAT dropped while the environment was frozen often gets no
/// reset, so a dead connection shows as silence: give up quickly and reconnect.
pub const IDLE_PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a single query (and on the idle check).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error("preparing the connection failed: {0}")]
    Setup(String),
    /// The query failed.
    #[error("query failed: {0}")]
    Query(Arc<tokio_postgres::Error>),
    /// The connection died during a non-idempotent operation, so it was not retried.
    #[error("the database connection was lost during the request")]
    Lost,
    /// The query did not finish within [`QUERY_TIMEOUT`].
    #[error("the database did not answer within {} ms", QUERY_TIMEOUT.as_millis())]
    Timeout,
}

/// Whether an operation may run a second time on a new connection when its connection died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once (reads, PUT, DELETE).
    Idempotent,
    /// It must not be repeated (POST): its outcome is unknown, and a repeat could apply it twice.
    Never,
}

/// The connection holder. See the module docs.
pub struct SharedConnection {
    database: Database,
    live: RwLock<Option<Arc<Live>>>,
    /// Single flight for connects. Holds the outcome of the last attempt, so callers that queued
    /// behind a failed attempt share its error instead of each making their own.
    connecting: Mutex<Attempt>,
    attempts: AtomicU64,
    schema_ready: AtomicBool,
    fresh_per_request: bool,
}

impl SharedConnection {
    /// A holder over `database`. `fresh_per_request` opens a new connection for every operation
    /// (a test setting that makes every request exercise credentials).
    pub fn new(database: Database, fresh_per_request: bool) -> Self {
        Self {
            database,
            live: RwLock::new(None),
            connecting: Mutex::new(Attempt::default()),
            attempts: AtomicU64::new(0),
            schema_ready: AtomicBool::new(false),
            fresh_per_request,
        }
    }

    /// The database (credential provider and connect rules).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A usable connection: the shared one if it is alive, else a new one.
    ///
    /// # Errors
    /// [`DbError::Connect`] or [`DbError::Setup`].
    pub async fn acquire(&self) -> Result<Arc<Live>, DbError> {
        if self.fresh_per_request {
            return self.open().await;
        }
        if let Some(live) = self.shared().await {
            return Ok(live);
        }
        // Single flight: one connect at a time. Whoever queued behind an attempt takes its
        // outcome, success or failure: with the database down, N concurrent invocations make one
        // attempt, not N in a row (each of which can take the whole connect timeout).
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last = self.connecting.lock().await;
        if let Some(live) = self
            .live
            .read()
            .await
            .clone()
            .filter(|l| !l.store.connection().client.is_closed())
        {
            return Ok(live);
        }
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some(err) = &last.error
        {
            return Err(err.clone());
        }
        let outcome = self.open().await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(live) => {
                last.error = None;
                *self.live.write().await = Some(live.clone());
                Ok(live)
            }
            Err(e) => {
                last.error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn shared(&self) -> Option<Arc<Live>> {
        let live = self.live.read().await.clone()?;
        let client = &live.store.connection().client;
        if !client.is_closed() {
            if live.idle() < IDLE_CHECK_AFTER {
                live.touch();
                return Some(live);
            }
            let ping = tokio::time::timeout(IDLE_PING_TIMEOUT, client.simple_query("")).await;
            if matches!(ping, Ok(Ok(_))) {
                live.touch();
                return Some(live);
            }
            tracing::info!(
                idle_ms = live.idle().as_millis() as u64,
                "idle database connection is dead; reconnecting"
            );
        }
        self.discard(&live).await;
        None
    }

    async fn open(&self) -> Result<Arc<Live>, DbError> {
        let conn = self.database.connect().await?;
        if !self.schema_ready.load(Ordering::Acquire) {
            store::ensure_schema(&conn.client).await.map_err(setup_error)?;
            self.schema_ready.store(true, Ordering::Release);
        }
        let store = ItemStore::new(conn).await.map_err(setup_error)?;
        Ok(Arc::new(Live {
            store,
            last_used: StdMutex::new(Instant::now()),
        }))
    }

    /// Forgets `live` if it is still the shared connection.
    pub async fn discard(&self, live: &Arc<Live>) {
        let mut guard = self.live.write().await;
        if guard.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, live)) {
            *guard = None;
        }
    }

    /// Runs `op` on a connection. If the connection turns out to be dead, it is replaced and,
    /// when `retry` allows, `op` runs once more on the new one.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, DbError>
    where
        F: Fn(Arc<Live>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let live = self.acquire().await?;
        match tokio::time::timeout(QUERY_TIMEOUT, op(live.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if connection_lost(&e) => {
                self.discard(&live).await;
                if retry == Retry::Never {
                    return Err(DbError::Lost);
                }
                tracing::info!(error = %e, "database connection lost; retrying once on a new connection");
                let live = self.acquire().await?;
                match tokio::time::timeout(QUERY_TIMEOUT, op(live.clone())).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => {
                        if connection_lost(&e) {
                            self.discard(&live).await;
                        }
                        Err(DbError::Query(Arc::new(e)))
                    }
                    Err(_) => {
                        self.discard(&live).await;
                        Err(DbError::Timeout)
                    }
                }
            }
            Ok(Err(e)) => Err(DbError::Query(Arc::new(e))),
            Err(_) => {
                // A query that hangs may have wedged the connection; start clean next time.
                self.discard(&live).await;
                Err(DbError::Timeout)
            }
        }
    }
}

/// The last connect attempt's outcome, shared with callers that queued behind it.
#[derive(Default)]
struct Attempt {
    error: Option<DbError>,
}

fn setup_error(e: tokio_postgres::Error) -> DbError {
    DbError::Setup(server_message(&e))
}

/// Whether an error means the connection is gone (as opposed to the statement failing).
pub fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        // The connection_exception class (08), and admin_shutdown, crash_shutdown, cannot_connect_now.
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The 503 for a database failure: what failed, without hosts, users or secret ids (those are
/// logged with the request id).
impl From<&DbError> for ApiError {
    fn from(e: &DbError) -> Self {
        let (detail, retry_after) = match e {
            DbError::Connect(c) => match c.kind {
                ConnectErrorKind::Authentication => ("the database refused the service's credentials", 2),
                ConnectErrorKind::Credentials => ("the database credentials could not be read", 2),
                ConnectErrorKind::Tls => ("the TLS connection to the database failed", 30),
                ConnectErrorKind::Timeout => ("the database did not answer in time", 2),
                ConnectErrorKind::Unreachable => ("the database is unreachable", 5),
                ConnectErrorKind::Server => ("the database refused the connection", 5),
            },
            DbError::Setup(_) => ("the database connection could not be prepared", 5),
            DbError::Lost => (
                "the database connection was lost; the request may not have been applied",
                1,
            ),
            DbError::Timeout => ("the database did not answer in time", 2),
            DbError::Query(_) => ("the database connection failed", 1),
        };
        Self::Unavailable {
            detail: detail.to_owned(),
            retry_after,
        }
    }
}

impl ApiError {
    /// The answer to a failed database operation, logged: a 503 for a condition of the database,
    /// a 500 for a statement that failed on a live connection (our own defect).
    pub fn from_db(e: DbError) -> Self {
        match &e {
            DbError::Query(q) if !connection_lost(q) => {
                tracing::error!(error = %e, "unexpected database error");
                Self::Internal
            }
            _ => {
                tracing::error!(error = %e, "database unavailable");
                Self::from(&e)
            }
        }
    }
}
