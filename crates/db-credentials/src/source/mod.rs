//! The credential provider: one interface over every source of design §4, one struct per source.
//!
//! * [`secrets_manager`]: through the [`SecretCache`](crate::cache::SecretCache), with the
//!   `AWSPENDING` fallback and the endpoint from the secret or the RDS API;
//! * [`ssm`]: SSM Parameter Store, kept for the same TTL;
//! * [`iam`]: an RDS IAM token made fresh for every connection;
//! * [`fixed`]: a `DATABASE_URL` or discrete variables.

mod fixed;
mod iam;
mod secrets_manager;
mod ssm;

use crate::{
    aws::AwsError,
    cache::{CacheStatus, CachedSecret},
    config::{Config, SourceConfig, SourceKind},
    endpoint::Endpoint,
    rds::{RdsApi, RdsEndpoints},
    secret::{DbSecret, SecretError},
    secrets_manager::{ReadSecrets, SdkSecrets, Stage},
    tls::{SslMode, TlsError, TlsSettings},
};
use aws_config::SdkConfig;
use secrecy::SecretString;
use std::sync::Mutex as StdMutex;

/// Where a set of credentials came from, as logged and reported by `/health/db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The source.
    pub source: SourceKind,
    /// Secret ARN/name or SSM prefix.
    pub secret_id: Option<String>,
    /// Secret version id (Secrets Manager) or parameter version (SSM).
    pub version_id: Option<String>,
    /// Secrets Manager stage the value was read from.
    pub stage: Option<Stage>,
    /// True when served from cache after a failed refresh.
    pub stale: bool,
}

impl Origin {
    /// A value that comes from no secret (configuration, tests, tools).
    pub fn fixed(source: SourceKind) -> Self {
        Self {
            source,
            secret_id: None,
            version_id: None,
            stage: None,
            stale: false,
        }
    }
}

/// Everything needed to open a connection. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User.
    pub user: String,
    /// Password or IAM token.
    pub password: SecretString,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub dbname: String,
    /// TLS decision for this database.
    pub tls: TlsSettings,
    /// Provenance.
    pub origin: Origin,
    cached: Option<CachedSecret>,
}

impl Credentials {
    /// Credentials made directly, outside any provider (tests, tools).
    pub fn new(user: &str, password: SecretString, host: &str, port: u16, dbname: &str, tls: TlsSettings) -> Self {
        Self {
            user: user.to_owned(),
            password,
            host: host.to_owned(),
            port,
            dbname: dbname.to_owned(),
            tls,
            origin: Origin::fixed(SourceKind::Env),
            cached: None,
        }
    }

    /// The credentials of a secret version: its user, password and database, at `at`.
    pub fn from_secret(secret: &DbSecret, at: &Endpoint, tls: TlsSettings, origin: Origin) -> Self {
        Self {
            user: secret.username().to_owned(),
            password: secret.password().clone(),
            host: at.host.clone(),
            port: at.port,
            dbname: secret.dbname().to_owned(),
            tls,
            origin,
            cached: None,
        }
    }
}

/// Why credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Reading from AWS failed.
    #[error("cannot read {what}: {error}")]
    Aws {
        /// What was being read, e.g. "secret app/db from Secrets Manager".
        what: String,
        /// The classified SDK error.
        error: AwsError,
    },
    /// The secret's content is unusable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// TLS cannot be set up as configured.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Neither the secret, DATABASE_HOST nor the RDS API gives a host.
    #[error(
        "secret {secret_id} has no host: add a \"host\" key, set DATABASE_HOST, or add dbInstanceIdentifier / dbClusterIdentifier so the RDS API can supply it"
    )]
    NoHost {
        /// The secret.
        secret_id: String,
    },
    /// SSM parameters are missing.
    #[error("SSM parameters not found: {names}")]
    SsmMissing {
        /// Comma-separated full parameter names.
        names: String,
    },
    /// An SSM parameter holds an unusable value.
    #[error("SSM parameter {name} must be {expected}")]
    SsmInvalid {
        /// Full parameter name.
        name: String,
        /// What it must hold.
        expected: &'static str,
    },
    /// An IAM token could not be made.
    #[error("cannot create an RDS IAM auth token for {user}@{host}: {reason}")]
    IamToken {
        /// User.
        user: String,
        /// Host.
        host: String,
        /// Why.
        reason: String,
    },
    /// IAM authentication without TLS.
    #[error("RDS IAM authentication sends a token as the password and requires TLS; DB_SSLMODE={mode} is not allowed")]
    IamWithoutTls {
        /// The refused mode.
        mode: SslMode,
    },
}

impl CredentialError {
    /// The AWS error, when this came from an AWS call.
    pub fn aws(&self) -> Option<&AwsError> {
        match self {
            Self::Aws { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What `/health/db` reports about where credentials come from.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// Source kind.
    pub source: SourceKind,
    /// Secret ARN/name or SSM prefix.
    pub secret_id: Option<String>,
    /// Secrets Manager cache state (Secrets Manager only).
    pub cache: Option<CacheStatus>,
}

enum Source<S, R> {
    SecretsManager(secrets_manager::SecretsManagerSource<S, R>),
    Ssm(ssm::SsmSource),
    Iam(iam::IamSource),
    Fixed(fixed::FixedSource),
}

/// Credentials from the configured source, cached as design §5 says. Generic over the Secrets
/// Manager reads and the RDS API so its rules can be unit-tested against the in-memory model;
/// the defaults are the AWS SDK's.
pub struct CredentialProvider<S = SdkSecrets, R = RdsApi> {
    config: Config,
    source: Source<S, R>,
    /// Last version announced in the log, so the "resolved" line appears once per version.
    announced: StdMutex<Option<String>>,
}

impl CredentialProvider {
    /// Builds the provider, loading the AWS SDK configuration only if the source needs it.
    pub async fn new(config: Config) -> Self {
        let sdk = match config.source {
            SourceConfig::SecretsManager { .. } | SourceConfig::Ssm { .. } | SourceConfig::Iam { .. } => {
                Some(crate::aws::load_sdk_config().await)
            }
            _ => None,
        };
        Self::with_sdk(config, sdk.as_ref())
    }

    /// Builds the provider with a given SDK configuration (tests point it at moto). `None` is
    /// only for sources that never call AWS (URL, env); AWS sources would fail every call.
    pub fn with_sdk(config: Config, sdk: Option<&SdkConfig>) -> Self {
        // Clients are built for every source (cheap, no I/O); the SDK refuses to build one from a
        // configuration without a behaviour version.
        let sdk = sdk.cloned().unwrap_or_else(|| {
            SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build()
        });
        let secrets = SdkSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk));
        Self::from_parts(config, secrets, RdsApi::new(&sdk), &sdk)
    }
}

impl<S: ReadSecrets, R: RdsEndpoints> CredentialProvider<S, R> {
    /// Builds the provider over the given Secrets Manager reads and RDS API (the Secrets Manager
    /// source's) and SDK configuration (SSM and IAM's).
    pub fn from_parts(config: Config, secrets: S, rds: R, sdk: &SdkConfig) -> Self {
        let source = match &config.source {
            SourceConfig::SecretsManager { secret_id } => Source::SecretsManager(
                secrets_manager::SecretsManagerSource::new(&config, secret_id, secrets, rds),
            ),
            SourceConfig::Ssm { prefix } => Source::Ssm(ssm::SsmSource::new(&config, prefix, sdk)),
            SourceConfig::Iam {
                host,
                port,
                dbname,
                user,
            } => Source::Iam(iam::IamSource::new(&config, host, *port, dbname, user, sdk)),
            SourceConfig::Url(creds) | SourceConfig::Env(creds) => {
                Source::Fixed(fixed::FixedSource::new(&config, creds))
            }
        };
        Self {
            config,
            source,
            announced: StdMutex::new(None),
        }
    }

    /// The configuration this provider was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The source kind.
    pub fn kind(&self) -> SourceKind {
        self.config.source.kind()
    }

    /// Whether a refused login can be retried with other credentials (Secrets Manager, SSM).
    pub fn can_refresh(&self) -> bool {
        matches!(self.source, Source::SecretsManager(_) | Source::Ssm(_))
    }

    /// Credentials for a new connection.
    ///
    /// # Errors
    /// [`CredentialError`] naming the source and what failed.
    pub async fn current(&self) -> Result<Credentials, CredentialError> {
        let creds = match &self.source {
            Source::SecretsManager(s) => s.current().await?,
            Source::Ssm(s) => s.current(false).await?,
            Source::Iam(s) => s.current().await?,
            Source::Fixed(s) => s.current()?,
        };
        self.announce(&creds);
        Ok(creds)
    }

    /// After the database refused `failed`: newer credentials from the source, or `None` when
    /// the source has nothing newer.
    ///
    /// # Errors
    /// [`CredentialError`] when the source cannot be read.
    pub async fn after_auth_failure(&self, failed: &Credentials) -> Result<Option<Credentials>, CredentialError> {
        let fresh = match &self.source {
            Source::SecretsManager(s) => s.after_auth_failure(failed).await?,
            Source::Ssm(s) => s.current(true).await?,
            Source::Iam(_) | Source::Fixed(_) => return Ok(None),
        };
        if fresh.origin.version_id == failed.origin.version_id {
            return Ok(None);
        }
        self.announce(&fresh);
        Ok(Some(fresh))
    }

    /// The `AWSPENDING` credentials, when Secrets Manager has a pending version other than
    /// `failed`'s. During single-user rotation the database accepts these before `AWSCURRENT` moves.
    ///
    /// # Errors
    /// [`CredentialError`] when Secrets Manager cannot be read.
    pub async fn pending(&self, failed: &Credentials) -> Result<Option<Credentials>, CredentialError> {
        match &self.source {
            Source::SecretsManager(s) => s.pending(failed).await,
            _ => Ok(None),
        }
    }

    /// Keeps using `creds` (pending credentials the database accepted) for new connections, in
    /// place of `refused` — unless another caller has cached something else meanwhile.
    pub async fn adopt(&self, creds: &Credentials, refused: &Credentials) {
        if let Source::SecretsManager(s) = &self.source
            && s.adopt(creds, refused).await
        {
            self.announce(creds);
        }
    }

    /// Source state for health reporting.
    pub fn status(&self) -> SourceStatus {
        SourceStatus {
            source: self.kind(),
            secret_id: self.config.source.secret_id().map(str::to_owned),
            cache: match &self.source {
                Source::SecretsManager(s) => Some(s.status()),
                _ => None,
            },
        }
    }

    /// As [`Self::status`], with the cached secret revalidated first when its TTL has passed, so
    /// that its version is what new connections would use now: `/health/db` compares the version
    /// its connection logged in with against it. Costs at most one DescribeSecret per TTL.
    ///
    /// # Errors
    /// [`CredentialError`] when Secrets Manager cannot be read and nothing usable is cached.
    pub async fn revalidated_status(&self) -> Result<SourceStatus, CredentialError> {
        let mut status = self.status();
        if let Source::SecretsManager(s) = &self.source {
            status.cache = Some(s.revalidated_status().await?);
        }
        Ok(status)
    }

    fn announce(&self, creds: &Credentials) {
        let key = creds.origin.version_id.clone().unwrap_or_default();
        let Ok(mut announced) = self.announced.lock() else {
            return;
        };
        if announced.as_deref() == Some(key.as_str()) {
            return;
        }
        *announced = Some(key);
        tracing::info!(
            source = creds.origin.source.as_str(),
            secret_id = creds.origin.secret_id.as_deref().unwrap_or("-"),
            version_id = creds.origin.version_id.as_deref().unwrap_or("-"),
            stage = creds.origin.stage.map_or("-", Stage::label),
            user = %creds.user,
            host = %creds.host,
            port = creds.port,
            dbname = %creds.dbname,
            tls_mode = creds.tls.mode.as_str(),
            "database credentials resolved"
        );
    }
}

#[cfg(test)]
mod tests;
