//! The database connections of one execution environment (design §5, §11).
//!
//! A bounded pool ([`ConnectionPool`], deadpool's managed pool with our [`Manager`]) of at most
//! [`PoolSettings::size`] connections: 1 on classic Lambda (one request at a time per
//! environment), `AWS_LAMBDA_MAX_CONCURRENCY` (or `DB_POOL_SIZE`) when one environment serves
//! several invocations at once (Lambda Managed Instances). Connections are opened lazily (or one
//! during init under provisioned concurrency), reused across warm invocations, and replaced at
//! their first use after a jittered maximum lifetime. Every new session must be a writer
//! (`target_session_attrs=read-write`): after a failover the endpoint may still lead to the old
//! primary, read-only or gone. After idling (possibly frozen, while a NAT, RDS Proxy or the server
//! dropped the socket) a connection is checked with an empty query before use; a session the
//! server reported read-only, or one that met a condition that ends it (connection lost, shutting
//! down, read-only), is discarded, never reused. On shutdown every connection is closed cleanly.
//!
//! An operation that meets a transient condition of the database is tried again within a budget
//! ([`RetryPolicy`]): bounded in attempts and in time, with jittered exponential backoff.
//! Connects are single-flight per environment and follow one backoff for the whole environment,
//! so with N environments waiting for a database that refuses (53300, 57P03, unreachable,
//! read-only) it sees at most one attempt per environment per backoff step. A write whose outcome
//! is unknown (the connection broke after it was sent) is never sent again.

mod error;
mod manager;
mod policy;

pub use error::DbError;
pub use manager::{Live, Manager, WriterStatus};
pub use policy::{DEFAULT_MAX_LIFETIME, Done, PoolSettings, Retry, RetryPolicy};

use db_credentials::{Condition, Database};
use deadpool::managed::{Object, Pool, PoolError, Timeouts};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

/// Idle time after which a connection is checked before use.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);
/// Bound on that check. A socket a NAT dropped while the environment was frozen often gets no
/// reset, so a dead connection shows as silence: give up quickly and reconnect.
pub const IDLE_PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a single query (and on the idle check).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for one connection to say goodbye to the server.
pub const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);

/// A connection taken from the pool; it goes back when dropped.
pub type Lease = Object<Manager>;

/// The environment's connections. See the module docs.
pub struct ConnectionPool {
    pool: Pool<Manager>,
    fresh_per_request: bool,
}

impl ConnectionPool {
    /// A pool over `database`, asking every session to be a writer. `fresh_per_request` opens a
    /// new connection for every operation (a test setting that makes every request exercise
    /// credentials).
    pub fn new(database: Database, policy: RetryPolicy, settings: PoolSettings, fresh_per_request: bool) -> Self {
        let size = settings.size.max(1);
        let manager = Manager::new(database, policy, PoolSettings { size, ..settings });
        // The runtime is what `acquire`'s wait for a free slot is timed with.
        let pool = match Pool::builder(manager)
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
        {
            Ok(pool) => pool,
            // Only timeouts without a runtime fail a build, and the runtime is set.
            Err(e) => unreachable!("deadpool pool with a runtime: {e}"),
        };
        Self {
            pool,
            fresh_per_request,
        }
    }

    fn manager(&self) -> &Manager {
        self.pool.manager()
    }

    /// The database (credential provider and connect rules).
    pub fn database(&self) -> &Database {
        self.manager().database()
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        self.manager().policy()
    }

    /// The pool's size and connection lifetime.
    pub fn settings(&self) -> &PoolSettings {
        self.manager().settings()
    }

    /// Connections open now (idle and in use).
    pub fn open_connections(&self) -> usize {
        self.pool.status().size
    }

    /// What the environment knows about its writer.
    pub fn writer_status(&self) -> WriterStatus {
        self.manager().writer_status()
    }

    /// A usable connection: an idle one that passes its check, else a new one, waiting for a free
    /// slot and for the environment's backoff only until `deadline` (`None`: not for the backoff,
    /// and for a slot at most the retry budget).
    ///
    /// # Errors
    /// [`DbError::Connect`] or [`DbError::Setup`]; while backing off past `deadline`, the last
    /// attempt's error; [`DbError::Busy`] when no slot came free in time; [`DbError::Closed`]
    /// after [`Self::close`].
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Lease, DbError> {
        let wait = deadline.map_or(self.policy().budget, |d| d.saturating_duration_since(Instant::now()));
        let timeouts = Timeouts {
            wait: Some(wait),
            create: None,
            recycle: None,
        };
        let ask = manager::Ask {
            deadline,
            seen: self.manager().attempts(),
        };
        match manager::ASK.scope(ask, self.pool.timeout_get(&timeouts)).await {
            Ok(lease) => Ok(lease),
            Err(PoolError::Backend(e)) => Err(e),
            // No slot came free in time. When the slots were held by connects that keep failing,
            // that failure is the answer (the database, not this environment's load), as it is
            // for requests that queued behind a failed connect.
            Err(PoolError::Timeout(_)) => Err(self.manager().failing_connects().unwrap_or(DbError::Busy {
                size: self.settings().size,
            })),
            Err(PoolError::Closed) => Err(DbError::Closed),
            // No hooks are installed and the runtime is set: our own defect if ever seen.
            Err(e) => Err(DbError::Pool(e.to_string())),
        }
    }

    /// Takes `lease` out of the pool for good (its client closes it); `why` is what it met.
    pub fn discard(&self, lease: Lease, why: Condition) {
        drop(Object::take(lease));
        self.manager().discarded(why);
    }

    /// Gives `lease` back, or closes it when every request gets a fresh connection.
    pub fn release(&self, lease: Lease) {
        if self.fresh_per_request {
            drop(Object::take(lease));
        }
    }

    /// Opens one connection now (eager init under provisioned concurrency) and keeps it idle.
    ///
    /// # Errors
    /// [`DbError`]: why none could be opened.
    pub async fn warm(&self) -> Result<(), DbError> {
        let lease = self.acquire(Some(Instant::now() + self.policy().budget)).await?;
        self.release(lease);
        Ok(())
    }

    /// Closes every idle connection cleanly (Terminate, then the socket), and the pool: a later
    /// request is answered 503. For SIGTERM, when no invocation is in flight.
    pub async fn close(&self) {
        let idle = self.pool.retain(|_, _| false).removed;
        self.pool.close();
        let count = idle.len();
        let closing = idle
            .into_iter()
            .filter_map(|live| Arc::try_unwrap(live).ok())
            .map(|live| live.store.into_connection().close(CLOSE_TIMEOUT));
        futures_util::future::join_all(closing).await;
        tracing::info!(connections = count, "database connections closed");
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
        let policy = *self.policy();
        let deadline = Instant::now() + policy.budget;
        let mut tries = 0;
        let mut after_unknown_outcome = false;
        loop {
            tries += 1;
            let may_retry = |e: &DbError| e.is_transient() && tries < policy.attempts && Instant::now() < deadline;
            let lease = match self.acquire(Some(deadline)).await {
                Ok(lease) => lease,
                // Nothing was sent: always safe to try again (acquire waits for the backoff).
                Err(e) if may_retry(&e) => continue,
                Err(e) => return Err(e),
            };
            let live = Arc::clone(&lease);
            let e = match tokio::time::timeout(QUERY_TIMEOUT, op(live.clone())).await {
                // A demoted node reports `default_transaction_read_only` with the first answer
                // after its reload: a read it served may be stale (the new writer has moved on),
                // so the answer is not used. A write that succeeded committed before the node
                // turned read-only (after, it gets 25006): it stands, and is never sent again.
                Ok(Ok(_))
                    if retry == Retry::Idempotent
                        && live.store.connection().is_read_only()
                        && tries < policy.attempts
                        && Instant::now() < deadline =>
                {
                    tracing::warn!("the answer came from a node that turned read-only; asking the writer");
                    self.discard(lease, Condition::ReadOnly);
                    // Whatever this try did (a PUT, a DELETE) counts as applied.
                    after_unknown_outcome = true;
                    continue;
                }
                Ok(Ok(value)) => {
                    self.manager().writer_answered();
                    self.release(lease);
                    return Ok(Done {
                        value,
                        after_unknown_outcome,
                    });
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    // A query that hangs may have wedged the connection (a primary waiting for a
                    // standby that was promoted): start clean, and do not spend the budget again.
                    self.discard(lease, Condition::ConnectionLost);
                    return Err(if retry == Retry::Never {
                        DbError::Lost
                    } else {
                        DbError::Timeout
                    });
                }
            };
            let Some(condition) = Condition::of_error(&e) else {
                self.release(lease);
                return Err(DbError::Query(Arc::new(e)));
            };
            if condition.ends_session() {
                self.discard(lease, condition);
            } else {
                self.release(lease);
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
                let pause = policy
                    .backoff(tries)
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
    }
}
