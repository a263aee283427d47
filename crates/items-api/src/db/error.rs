//! Why a database operation failed, and the 503 it becomes.

use crate::problem::ApiError;
use db_credentials::{Condition, ConnectError, ConnectErrorKind};
use std::sync::Arc;

use super::QUERY_TIMEOUT;

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
    /// Every connection of the environment's pool stayed in use for the whole request budget
    /// (`DB_POOL_SIZE` below the invocations the environment serves at once).
    #[error("all {size} database connections of this environment stayed busy")]
    Busy {
        /// The pool's size.
        size: usize,
    },
    /// The pool was closed: the environment is shutting down.
    #[error("the database connections are closed: the function is shutting down")]
    Closed,
    /// The pool itself failed (a misconfiguration of ours).
    #[error("connection pool: {0}")]
    Pool(String),
}

impl DbError {
    /// The condition of the database behind this failure; `None` for a credential or TLS problem,
    /// and for a statement that failed on its own (our defect).
    pub fn condition(&self) -> Option<Condition> {
        match self {
            Self::Connect(c) => Condition::of_connect(c),
            Self::Setup(e) | Self::Query(e) => Condition::of_error(e),
            Self::Lost | Self::Timeout => Some(Condition::ConnectionLost),
            Self::Busy { .. } | Self::Closed | Self::Pool(_) => None,
        }
    }

    /// Whether the statement itself failed while the database was fine: our own defect (a 500).
    pub fn is_defect(&self) -> bool {
        matches!(self, Self::Pool(_)) || matches!(self, Self::Query(e) if Condition::of_error(e).is_none())
    }

    /// Whether trying again soon may succeed.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            // A refused login was already recovered from as far as the credentials allow.
            Self::Connect(c) if c.kind == ConnectErrorKind::Authentication => false,
            Self::Lost | Self::Timeout | Self::Busy { .. } | Self::Closed | Self::Pool(_) => false,
            other => other.condition().is_some_and(Condition::is_transient),
        }
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
            (DbError::Busy { size }, _) => (
                format!("all {size} database connections of this function instance are busy"),
                1,
                "pool-busy",
            ),
            (DbError::Closed, _) => (
                "the function instance is shutting down".into(),
                1,
                "instance-shutting-down",
            ),
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
            (DbError::Connect(_) | DbError::Query(_) | DbError::Pool(_), None) => {
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
