//! What can be wrong with the configuration. Each message names the variable; a value is echoed
//! only when it cannot be a secret.

use super::kind::SourceKind;
use crate::tls::TlsError;

/// A configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No source is configured.
    #[error(
        "no database credentials configured: set {}; DB_CREDENTIALS_SOURCE forces one of secretsmanager|ssm|iam|url|env",
        SourceKind::all_needs()
    )]
    NoSource,
    /// `DB_CREDENTIALS_SOURCE` names a source whose variables are not set.
    #[error("DB_CREDENTIALS_SOURCE={forced} but {} is not set", .forced.needs())]
    ForcedSourceNotConfigured {
        /// The forced source.
        forced: SourceKind,
    },
    /// A chosen source lacks variables it needs.
    #[error("credential source {chosen} needs {missing}, which is not set")]
    Missing {
        /// The chosen source.
        chosen: SourceKind,
        /// Comma-separated variable names.
        missing: String,
    },
    /// A variable has a value of the wrong shape (only for variables that are never secret).
    #[error("{var} must be {expected}, got {got:?}")]
    Invalid {
        /// Variable name.
        var: &'static str,
        /// What it must hold.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// `DATABASE_URL` does not parse. The URL itself is never shown: it may hold a password.
    #[error("DATABASE_URL is not a usable postgres:// URL: {reason}")]
    InvalidUrl {
        /// What is wrong.
        reason: String,
    },
    /// `DATABASE_PASSWORD` and `DB_PASSWORD` are both set and differ.
    #[error("DATABASE_PASSWORD and DB_PASSWORD are both set and differ; set only one of them")]
    PasswordConflict,
    /// `DATABASE_USER` beside a source whose secret names the user (Secrets Manager, SSM).
    #[error(
        "DATABASE_USER is set beside {source_var} (credential source {chosen}): the user comes from the secret, whose username changes at every rotation with alternating users; unset DATABASE_USER"
    )]
    UserOverride {
        /// The source whose secret names the user.
        chosen: SourceKind,
        /// The variable that configured it.
        source_var: &'static str,
    },
    /// `DB_SECRET_ARN` and `DB_SECRET_ID` are both set and differ.
    #[error("DB_SECRET_ARN ({arn}) and DB_SECRET_ID ({id}) are both set and differ; set only one of them")]
    SecretIdConflict {
        /// DB_SECRET_ARN.
        arn: String,
        /// DB_SECRET_ID.
        id: String,
    },
    /// The TLS settings cannot hold (e.g. a plaintext mode under `ENVIRONMENT=production`).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A number outside its range, or not a whole number.
    #[error("{var} must be a whole number of {unit} from {min} to {max}, got {got:?}")]
    OutOfRange {
        /// Variable name.
        var: &'static str,
        /// What the number counts.
        unit: &'static str,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
        /// The value given.
        got: String,
    },
    /// The `.env` file exists but cannot be read.
    #[error("cannot read .env: {0}")]
    DotEnv(String),
}

impl ConfigError {
    /// A variable holds something unusable (never called for a variable that can hold a secret).
    pub fn invalid(var: &'static str, expected: &'static str, got: &str) -> Self {
        Self::Invalid {
            var,
            expected,
            got: got.to_owned(),
        }
    }
}
