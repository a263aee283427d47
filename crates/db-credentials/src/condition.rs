//! Conditions of the database, told apart from defects of a statement (design §11): what the
//! server or the network did, by SQLSTATE class, so a caller can answer "try again later" instead
//! of "internal error", drop a session that can no longer serve, and know whether a failed
//! statement may have been applied.

use crate::connect::{ConnectError, ConnectErrorKind};
use std::fmt;
use tokio_postgres::error::SqlState;

/// A condition of the database that is not the statement's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// The connection broke (closed, reset, I/O error, SQLSTATE class 08), or no server answered.
    ConnectionLost,
    /// The server ended the session: shutting down (57P01 admin_shutdown, as after a failover),
    /// restarting after a crash (57P02), or another operator action of class 57P (a dropped
    /// database, an idle-session timeout).
    ShuttingDown,
    /// The server accepts no sessions yet (57P03 cannot_connect_now: starting up, in recovery).
    CannotConnectNow,
    /// The server no longer accepts writes (25006 read_only_sql_transaction): a primary demoted in
    /// a failover, or a standby.
    ReadOnly,
    /// No connection slot is free (53300 too_many_connections, also a role's connection limit).
    TooManyConnections,
    /// The server lacks another resource (class 53: disk full, out of memory, a configured limit).
    InsufficientResources,
    /// A privilege the function needs was revoked while it ran (42501 insufficient_privilege).
    InsufficientPrivilege,
    /// The transaction was rolled back for a conflict (class 40: serialization failure, deadlock).
    RolledBack,
    /// The statement was canceled (57014: `statement_timeout`, an operator's cancel).
    Canceled,
    /// The server failed on its own (class 58 system error, class XX internal error).
    ServerFault,
}

impl Condition {
    /// The condition a SQLSTATE names, `None` for anything that is a statement's own fault.
    pub fn of_sqlstate(code: &SqlState) -> Option<Self> {
        let code = code.code();
        Some(match code {
            "25006" => Self::ReadOnly,
            "53300" => Self::TooManyConnections,
            "57P03" => Self::CannotConnectNow,
            "57014" => Self::Canceled,
            "42501" => Self::InsufficientPrivilege,
            c if c.starts_with("57P") => Self::ShuttingDown,
            c if c.starts_with("08") => Self::ConnectionLost,
            c if c.starts_with("53") => Self::InsufficientResources,
            c if c.starts_with("40") => Self::RolledBack,
            c if c.starts_with("58") || c.starts_with("XX") => Self::ServerFault,
            _ => return None,
        })
    }

    /// The condition behind a failed statement, `None` when the statement itself is at fault.
    pub fn of_error(e: &tokio_postgres::Error) -> Option<Self> {
        if let Some(code) = e.code() {
            return Self::of_sqlstate(code);
        }
        use std::error::Error as _;
        if e.is_closed() {
            return Some(Self::ConnectionLost);
        }
        let mut source = e.source();
        while let Some(s) = source {
            if s.is::<std::io::Error>() {
                return Some(Self::ConnectionLost);
            }
            source = s.source();
        }
        None
    }

    /// The condition behind a failed connect, `None` for what is not the database's condition
    /// (credentials refused or unreadable, TLS set up wrongly).
    pub fn of_connect(e: &ConnectError) -> Option<Self> {
        match e.kind {
            ConnectErrorKind::ReadOnly => Some(Self::ReadOnly),
            ConnectErrorKind::Unreachable | ConnectErrorKind::Timeout => Some(Self::ConnectionLost),
            ConnectErrorKind::Server => e.sqlstate.as_ref().and_then(Self::of_sqlstate),
            ConnectErrorKind::Authentication | ConnectErrorKind::Credentials | ConnectErrorKind::Tls => None,
        }
    }

    /// Whether a session that met this cannot serve again: it is closed, or on a node that is
    /// not (or no longer) the writer.
    pub fn ends_session(self) -> bool {
        matches!(
            self,
            Self::ConnectionLost | Self::ShuttingDown | Self::CannotConnectNow | Self::ReadOnly
        )
    }

    /// Whether it may clear within seconds, so that trying again soon is worth it.
    pub fn is_transient(self) -> bool {
        !matches!(self, Self::InsufficientPrivilege | Self::ServerFault)
    }

    /// Whether it is what a failover looks like from a session: the node turned read-only or
    /// shut down.
    pub fn means_failover(self) -> bool {
        matches!(self, Self::ReadOnly | Self::ShuttingDown)
    }

    /// The name used in problem documents, logs and `/health/db`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionLost => "connection-lost",
            Self::ShuttingDown => "shutting-down",
            Self::CannotConnectNow => "cannot-connect-now",
            Self::ReadOnly => "read-only",
            Self::TooManyConnections => "too-many-connections",
            Self::InsufficientResources => "insufficient-resources",
            Self::InsufficientPrivilege => "insufficient-privilege",
            Self::RolledBack => "rolled-back",
            Self::Canceled => "canceled",
            Self::ServerFault => "server-fault",
        }
    }

    /// What it means, as a sentence an API caller can read (no host, user or secret).
    pub fn describe(self) -> &'static str {
        match self {
            Self::ConnectionLost => "the connection to the database was lost",
            Self::ShuttingDown => "the database is shutting down or ended the session (a failover or restart)",
            Self::CannotConnectNow => "the database is starting up or recovering and accepts no connections yet",
            Self::ReadOnly => "the database does not accept writes (a failover is in progress)",
            Self::TooManyConnections => "the database has no free connection slots",
            Self::InsufficientResources => "the database is out of a resource (disk, memory or a configured limit)",
            Self::InsufficientPrivilege => "the database refused the service a privilege it needs",
            Self::RolledBack => "the database rolled the transaction back after a conflict",
            Self::Canceled => "the database canceled the statement",
            Self::ServerFault => "the database reported an internal error",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_of_the_database_are_conditions_and_statement_faults_are_not() {
        for (code, condition) in [
            ("53300", Condition::TooManyConnections),
            ("53100", Condition::InsufficientResources),
            ("53200", Condition::InsufficientResources),
            ("57P01", Condition::ShuttingDown),
            ("57P02", Condition::ShuttingDown),
            ("57P03", Condition::CannotConnectNow),
            ("57P05", Condition::ShuttingDown),
            ("57014", Condition::Canceled),
            ("08006", Condition::ConnectionLost),
            ("08P01", Condition::ConnectionLost),
            ("25006", Condition::ReadOnly),
            ("42501", Condition::InsufficientPrivilege),
            ("40001", Condition::RolledBack),
            ("40P01", Condition::RolledBack),
            ("58030", Condition::ServerFault),
            ("XX000", Condition::ServerFault),
        ] {
            assert_eq!(
                Condition::of_sqlstate(&SqlState::from_code(code)),
                Some(condition),
                "{code}"
            );
        }
        // Our own defects: a syntax error, a missing column, a violated constraint, bad input.
        for code in ["42601", "42703", "42P01", "23505", "23514", "22P02", "0A000"] {
            assert_eq!(Condition::of_sqlstate(&SqlState::from_code(code)), None, "{code}");
        }
        assert!(Condition::ReadOnly.ends_session() && Condition::ShuttingDown.ends_session());
        assert!(!Condition::TooManyConnections.ends_session() && !Condition::InsufficientPrivilege.ends_session());
        assert!(!Condition::InsufficientPrivilege.is_transient() && Condition::TooManyConnections.is_transient());
        assert!(Condition::ReadOnly.means_failover() && !Condition::ConnectionLost.means_failover());
    }
}
