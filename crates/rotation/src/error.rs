//! Every way a rotation step can fail, each a sentence an operator can act on.
//!
//! Messages name the secret, version, user and host. They never carry a password, a secret's
//! JSON or the `RotationToken`: database errors are reduced to their SQLSTATE and server message,
//! and secret parse errors name only the key.

use crate::event::{EventError, Step};
use db_credentials::{ConnectError, SecretError, TlsError, aws::AwsError};
use std::fmt;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event is malformed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// DescribeSecret says `RotationEnabled: false`.
    #[error("secret {secret} is not enabled for rotation")]
    RotationDisabled {
        /// Secret ARN.
        secret: String,
    },
    /// The token is not a version of the secret.
    #[error("secret version {token} has no stage for rotation of secret {secret}")]
    TokenNotAVersion {
        /// Secret ARN.
        secret: String,
        /// The event's token.
        token: String,
    },
    /// The token is a version without `AWSPENDING` (and nothing else holds it).
    #[error("secret version {token} not set as AWSPENDING for rotation of secret {secret}")]
    TokenNotPending {
        /// Secret ARN.
        secret: String,
        /// The event's token.
        token: String,
    },
    /// `AWSPENDING` sits on another version: another rotation is under way or was abandoned.
    #[error(
        "secret version {token} not set as AWSPENDING for rotation of secret {secret}: AWSPENDING is on version {pending}, so another rotation is in progress or was left unfinished; refusing to overwrite it"
    )]
    ForeignPending {
        /// Secret ARN.
        secret: String,
        /// The event's token.
        token: String,
        /// The version that holds `AWSPENDING`.
        pending: String,
    },
    /// A Secrets Manager or RDS call failed.
    #[error("cannot {action} of secret {secret}: {source}")]
    Aws {
        /// What was being done, e.g. "read AWSCURRENT".
        action: String,
        /// Secret ARN (or the master secret's).
        secret: String,
        /// The classified SDK error.
        #[source]
        source: AwsError,
    },
    /// A secret version's JSON is unusable (names the key, never a value).
    #[error("{stage} version: {source}")]
    Secret {
        /// The stage read (`AWSCURRENT`, `AWSPENDING`, the master…).
        stage: &'static str,
        /// What is wrong.
        #[source]
        source: SecretError,
    },
    /// No host in the secret and no RDS identifier to look one up.
    #[error(
        "{stage} version of secret {secret} names no host, and neither dbInstanceIdentifier/dbClusterIdentifier nor RDS tags to find one"
    )]
    NoHost {
        /// Secret ARN.
        secret: String,
        /// The stage read.
        stage: &'static str,
    },
    /// `<user>_clone` would not fit in a Postgres identifier.
    #[error(
        "cannot make the alternate user of {user}: {user}_clone would be {bytes} bytes and Postgres names are limited to 63 bytes; shorten the user name or use single-user rotation"
    )]
    CloneNameTooLong {
        /// The current user.
        user: String,
        /// Byte length of the would-be clone name.
        bytes: usize,
    },
    /// Confused-deputy guard: the pending version names an unexpected user.
    #[error(
        "secret {secret}: attempting to modify user {pending} other than {expected} (the user this rotation may change); AWSPENDING was edited or belongs to another rotation"
    )]
    UserMismatch {
        /// Secret ARN.
        secret: String,
        /// User in AWSPENDING.
        pending: String,
        /// The user this strategy may change.
        expected: String,
    },
    /// Confused-deputy guard: the pending version names another host.
    #[error("secret {secret}: attempting to modify user for host {pending} other than current host {current}")]
    HostMismatch {
        /// Secret ARN.
        secret: String,
        /// host:port in AWSPENDING.
        pending: String,
        /// host:port in AWSCURRENT.
        current: String,
    },
    /// Single user: none of pending, current or previous logs in.
    #[error(
        "secret {secret}: unable to log into {host} as {user} with the pending, current or previous password ({attempts})"
    )]
    CannotLogIn {
        /// Secret ARN.
        secret: String,
        /// The user.
        user: String,
        /// host:port.
        host: String,
        /// What each attempt said.
        attempts: String,
    },
    /// The database cannot be reached at all (refused, no answer, TLS refused); trying other
    /// credentials against the same host would only spend the step's time.
    #[error("secret {secret}: {source}")]
    Unreachable {
        /// Secret ARN.
        secret: String,
        /// The connect failure.
        #[source]
        source: Box<ConnectError>,
    },
    /// Alternating users: the current credentials must work before the master is used.
    #[error("secret {secret}: unable to log in with the current credentials, so the master will not be used: {source}")]
    CurrentLoginFailed {
        /// Secret ARN.
        secret: String,
        /// The connect failure.
        #[source]
        source: Box<ConnectError>,
    },
    /// Alternating users (or the `Custom::DatabaseRole` resource): the secret has no `masterarn`.
    #[error(
        "secret {secret} has no \"masterarn\" key, which alternating-users rotation and the Custom::DatabaseRole resource need to find the privileged secret"
    )]
    NoMasterArn {
        /// Secret ARN.
        secret: String,
    },
    /// Alternating users: the master secret is for another host.
    #[error(
        "secret {secret}: current database host {current} is not the host of master secret {master} ({master_host}); refusing to use it"
    )]
    MasterHostMismatch {
        /// Secret ARN.
        secret: String,
        /// Master secret ARN.
        master: String,
        /// Host in AWSCURRENT.
        current: String,
        /// Host of the master.
        master_host: String,
    },
    /// Alternating users: the master credentials do not log in.
    #[error("master secret {master}: unable to log in: {source}")]
    MasterLoginFailed {
        /// Master secret ARN.
        master: String,
        /// The connect failure.
        #[source]
        source: Box<ConnectError>,
    },
    /// testSecret: the pending credentials do not log in.
    #[error("secret {secret}: unable to log in with the pending credentials: {source}")]
    PendingLoginFailed {
        /// Secret ARN.
        secret: String,
        /// The connect failure.
        #[source]
        source: Box<ConnectError>,
    },
    /// `Custom::DatabaseRole`: the role exists with rights the API must not have.
    #[error(
        "secret {secret}: role {role} exists and {reasons}; the API's role must have none of these, so it is left as it is and not used. Remove them (ALTER ROLE … NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS, REVOKE rds_superuser FROM …) or name another user in the secret"
    )]
    AppRoleUnsafe {
        /// The application secret.
        secret: String,
        /// The role.
        role: String,
        /// What it has.
        reasons: String,
    },
    /// finishSecret: the pending credentials do not log in, so `AWSCURRENT` is not moved.
    #[error(
        "secret {secret}: refusing to move AWSCURRENT to version {token}: its credentials do not log in ({source}); AWSCURRENT stays on version {current}. Run setSecret and testSecret for this version again (a retry of the rotation does), then finishSecret"
    )]
    FinishRefused {
        /// Secret ARN.
        secret: String,
        /// The event's token.
        token: String,
        /// The version that keeps `AWSCURRENT`.
        current: String,
        /// The failed login.
        #[source]
        source: Box<ConnectError>,
    },
    /// The user that logged in may not change the password (SQLSTATE 42501), e.g. under
    /// `rds.restrict_password_commands`, or a master without the right to create the clone (on
    /// Postgres 16+, without ADMIN OPTION on the role).
    #[error(
        "{user} is not allowed to {} role {role} on {host} (SQLSTATE 42501: {detail}); {fix}",
        .statement.verb()
    )]
    PermissionDenied {
        /// The user logged in.
        user: String,
        /// What it tried.
        statement: Statement,
        /// The role whose password was to change.
        role: String,
        /// host:port.
        host: String,
        /// The server's message, with its DETAIL and HINT.
        detail: String,
        /// What to do: the privilege that is missing and how to grant it.
        fix: String,
    },
    /// Alternating users: the existing `<user>_clone` has rights `<user>` lacks (or is a
    /// superuser). Rotating to it would hand the API those rights; nothing was changed.
    #[error(
        "secret {secret}: refusing to rotate to {clone}: the existing alternate user {reasons}. An alternate user must have no rights {base} lacks; nothing was changed and AWSCURRENT stays on {base}. Remove those rights from {clone} (ALTER ROLE … NOSUPERUSER/NOCREATEDB/…, REVOKE <role> FROM {clone}, REASSIGN OWNED BY {clone} TO {base} or grant the objects to {base}), or drop {clone} so the next rotation creates it afresh"
    )]
    UnsafeClone {
        /// Secret ARN.
        secret: String,
        /// The clone.
        clone: String,
        /// The user it stands in for.
        base: String,
        /// What it has that `base` lacks.
        reasons: String,
    },
    /// A statement failed for another reason.
    #[error("{} on {host} as {user} failed: {detail}", .statement.as_str())]
    Database {
        /// What was being done.
        statement: Statement,
        /// The user logged in.
        user: String,
        /// host:port.
        host: String,
        /// SQLSTATE and server message.
        detail: String,
    },
    /// TLS cannot be set up as configured (e.g. `ssl: true` with `DB_SSLMODE=disable`).
    #[error("TLS settings for secret {secret}: {source}")]
    Tls {
        /// Secret ARN.
        secret: String,
        /// What is wrong.
        #[source]
        source: TlsError,
    },
    /// A revoke that would be unsafe or meaningless: it names why and what to do.
    #[error("secret {secret}: revoke refused: {reason}")]
    RevokeRefused {
        /// Secret ARN.
        secret: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The step ran out of time.
    #[error("the step did not finish within {budget_ms} ms; last doing: {doing}")]
    Timeout {
        /// The budget.
        budget_ms: u128,
        /// What it was waiting for.
        doing: &'static str,
    },
    /// A test build stopped at a failpoint.
    #[error("stopped at failpoint {name} (ROTATION_FAILPOINT)")]
    Failpoint {
        /// The failpoint's name.
        name: &'static str,
    },
}

/// What a session was running when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// Single user: `ALTER ROLE` on itself.
    SetOwnPassword,
    /// Alternating users: the master's `CREATE ROLE` + `GRANT`, or `ALTER ROLE`.
    CreateOrSetPassword,
    /// Single user with a `masterarn`: the master's `ALTER ROLE` after the user was refused.
    MasterSetPassword,
    /// testSecret's `TEST_QUERY`.
    Probe,
    /// `Custom::DatabaseRole`: the master's CREATE ROLE, GRANTs and CREATE SCHEMA.
    AppRole,
    /// Revoke: `pg_terminate_backend` on the superseded credential's sessions.
    EndSessions,
}

impl Statement {
    /// The statement, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SetOwnPassword => "ALTER ROLE … PASSWORD",
            Self::CreateOrSetPassword => "CREATE/ALTER ROLE",
            Self::MasterSetPassword => "ALTER ROLE … PASSWORD (as the master)",
            Self::Probe => "TEST_QUERY",
            Self::AppRole => "CREATE ROLE / GRANT / CREATE SCHEMA (Custom::DatabaseRole)",
            Self::EndSessions => "pg_terminate_backend (revoke)",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::SetOwnPassword => "change the password of",
            Self::CreateOrSetPassword => "create or change the password of",
            Self::MasterSetPassword => "change the password of",
            Self::Probe => "run TEST_QUERY as",
            Self::AppRole => "create or set up",
            Self::EndSessions => "end the sessions of",
        }
    }

    /// What to do about a permission refused to this statement, when the server's message does
    /// not say which grant is missing.
    pub fn hint(self) -> &'static str {
        match self {
            Self::SetOwnPassword => {
                "grant it the right (rds_password under rds.restrict_password_commands) or add a masterarn to the secret so the master sets it"
            }
            Self::CreateOrSetPassword => {
                "the master secret's user needs CREATEROLE and the right to grant membership in the user (or superuser)"
            }
            Self::MasterSetPassword => "the master secret's user needs CREATEROLE or rds_password (or superuser)",
            Self::Probe => "grant the user what TEST_QUERY needs",
            Self::EndSessions => {
                "the user ending the sessions needs pg_signal_backend (RDS's rds_superuser has it) or membership in the role"
            }
            Self::AppRole => {
                "the master secret's user needs CREATEROLE, and must own the database (or hold CONNECT on it WITH GRANT OPTION) to grant CONNECT on it"
            }
        }
    }
}

/// A failed step: the step, secret and token, then why. This is what the Lambda reports.
#[derive(Debug)]
pub struct StepError {
    /// The step.
    pub step: Option<Step>,
    /// Secret ARN or id from the event.
    pub secret: String,
    /// The event's token.
    pub token: String,
    /// Why.
    pub error: Error,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(step) = self.step else {
            return write!(f, "{}", self.error);
        };
        let inner = self.error.to_string();
        // Most messages already name the secret; say it once.
        if inner.contains(&self.secret) {
            write!(f, "{step} failed (version {}): {inner}", self.token)
        } else {
            write!(
                f,
                "{step} failed for secret {} (version {}): {inner}",
                self.secret, self.token
            )
        }
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
