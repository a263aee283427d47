//! Postgres credentials for Lambda functions: where they come from, how they are kept, and how a
//! connection survives a password rotation.
//!
//! The vocabulary both Lambdas share:
//!
//! * [`DbSecret`]: the JSON a Secrets Manager database secret holds; errors name keys, never values.
//! * [`secrets_manager`]: stages (`Stage`), DescribeSecret/GetSecretValue behind `ReadSecrets`
//!   (which the rotation function extends with its writes), and an exact in-memory model of
//!   Secrets Manager for unit tests (feature `test-util`).
//! * [`Endpoint`] and [`resolve_endpoint`]: where a secret's database is (its host, else the RDS API).
//! * [`pending`]: what a pending version may name (same database; the user or its `_clone`), the
//!   guard both the rotation's setSecret and the items API's `AWSPENDING` fallback apply.
//! * [`TlsEnv`] → [`TlsSettings`]: libpq's `sslmode` names on native-tls, decided in one place.
//! * [`config`]: env read once into a typed [`Config`]; the `auto` source order.
//! * [`CredentialProvider`]: credentials from Secrets Manager, SSM, RDS IAM, a URL or env; the
//!   Secrets Manager cache (TTL, DescribeSecret revalidation, single flight, stale-on-error).
//! * [`connect()`] and [`Database`]: one connection, and connecting through a rotation.
//! * [`Condition`]: what the database did (read-only, shutting down, out of connections…), told
//!   apart from a statement's own fault by SQLSTATE class.
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
mod cache;
mod condition;
pub mod config;
mod connect;
mod database;
pub mod doctor;
mod endpoint;
pub mod logging;
pub mod metric;
pub mod pending;
pub mod rds;
mod secret;
pub mod secrets_manager;
mod source;
mod tls;

pub use cache::{CacheStatus, CachedSecret};
pub use condition::Condition;
pub use config::{Config, ConfigError, SessionTarget, SourceKind};
pub use connect::{
    ConnectError, ConnectErrorKind, Connection, ConnectionInfo, connect, connect_to, is_auth_error, server_message,
};
pub use database::{Database, RecoveryPolicy};
pub use endpoint::{Endpoint, EndpointError, resolve as resolve_endpoint};
pub use pending::{CloneNameTooLong, PendingMismatch, alternate_username, check_pending};
pub use secret::{DEFAULT_DBNAME, DEFAULT_PORT, DbSecret, SUPPORTED_ENGINES, SecretError};
pub use source::{CredentialError, CredentialProvider, Credentials, Origin, SourceStatus};
pub use tls::{Environment, SYSTEM_ROOT_CERT, SslMode, TlsEnv, TlsError, TlsSettings};
