//! Postgres credentials for Lambda functions: where they come from, how they are kept, and how a
//! connection survives a password rotation.
//!
//! * [`secret`]: the JSON a Secrets Manager database secret holds; errors name keys, never values.
//! * [`config`]: env read once into a typed [`Config`]; the `auto` source order.
//! * [`source`]: the [`CredentialProvider`] over Secrets Manager, SSM, RDS IAM, URL and env.
//! * [`cache`]: the Secrets Manager cache: TTL, DescribeSecret revalidation, single-flight, stale-on-error.
//! * [`tls`]: libpq's `sslmode` names on native-tls, with multi-certificate CA bundles.
//! * [`connect`] and [`database`]: one connection, and connecting through a rotation.
//! * [`doctor`]: the staged checks behind the `db-doctor` binary.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use db_credentials::{Config, CredentialProvider, Database};
//! let config = Config::from_env()?;
//! let db = Database::new(CredentialProvider::new(config).await, "my-app");
//! let conn = db.connect().await?;
//! conn.client.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod aws;
pub mod cache;
pub mod config;
pub mod connect;
pub mod database;
pub mod doctor;
pub mod logging;
pub mod metric;
pub mod rds;
pub mod secret;
pub mod secrets_manager;
pub mod source;
pub mod tls;

pub use config::{Config, ConfigError, Environment, SourceKind};
pub use connect::{ConnectError, ConnectErrorKind, Connection, ConnectionInfo};
pub use database::{Database, RecoveryPolicy};
pub use secret::{DbSecret, SecretError};
pub use source::{CredentialError, CredentialProvider, Credentials, Origin};
pub use tls::{SslMode, TlsSettings};

/// Logs the start-up facts about configuration: which source won, which were ignored, and
/// variables that look like ours but are unknown (likely typos).
pub fn log_config(config: &Config) {
    if !config.ignored_sources.is_empty() {
        let ignored: Vec<&str> = config.ignored_sources.iter().map(|k| k.as_str()).collect();
        tracing::warn!(
            source = config.source.kind().as_str(),
            ignored = %ignored.join(","),
            "several credential sources are configured; using the first in order secretsmanager, ssm, iam, url, env"
        );
    }
    for var in &config.unknown_vars {
        tracing::warn!(variable = %var, "unknown database setting ignored; check its spelling");
    }
    if config.dotenv_loaded {
        tracing::info!("read .env (ENVIRONMENT=local)");
    }
}
