//! The credential sources of design §4 and the variables each one needs, written once: the `auto`
//! order, the "no source" message and `DB_CREDENTIALS_SOURCE` all read them from here.

use std::{fmt, str::FromStr};

/// Where credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// AWS Secrets Manager (`DB_SECRET_ARN`).
    SecretsManager,
    /// SSM Parameter Store (`DB_SSM_PREFIX`).
    Ssm,
    /// RDS IAM authentication tokens (`DB_IAM_AUTH=true`).
    Iam,
    /// A `postgres://` URL (`DATABASE_URL`).
    Url,
    /// Discrete variables (`DATABASE_HOST`, `DATABASE_USER`, `DATABASE_PASSWORD`…).
    Env,
}

impl SourceKind {
    /// The order `auto` tries sources in.
    pub const AUTO_ORDER: [SourceKind; 5] = [Self::SecretsManager, Self::Ssm, Self::Iam, Self::Url, Self::Env];

    /// The name used in `DB_CREDENTIALS_SOURCE`, logs and `/health/db`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "ssm",
            Self::Iam => "iam",
            Self::Url => "url",
            Self::Env => "env",
        }
    }

    /// What must be set to configure this source, as an operator reads it.
    pub fn needs(self) -> &'static str {
        match self {
            Self::SecretsManager => "DB_SECRET_ARN (or DB_SECRET_ID)",
            Self::Ssm => "DB_SSM_PREFIX",
            Self::Iam => "DB_IAM_AUTH=true with DATABASE_HOST and DATABASE_USER",
            Self::Url => "DATABASE_URL",
            Self::Env => "DATABASE_HOST, DATABASE_USER and DATABASE_PASSWORD (or DB_PASSWORD)",
        }
    }

    /// Every source with what it needs, in `auto` order: the "no source" message.
    pub fn all_needs() -> String {
        Self::AUTO_ORDER
            .map(|k| format!("{} for {}", k.needs(), k.as_str()))
            .join("; ")
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::AUTO_ORDER
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or(())
    }
}
