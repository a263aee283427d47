//! The Secrets Manager rotation function for Postgres: the four-step protocol (`createSecret`,
//! `setSecret`, `testSecret`, `finishSecret`) in two strategies, single user and alternating
//! users (design §8).
//!
//! * [`event`]: the event the service sends; [`config`] and [`password`]: env read once at start.
//! * [`steps`]: one short function per step, each after the stage checks of AWS's templates.
//! * [`strategy`]: which user a rotation changes; [`db`]: logging in and setting a password as a
//!   SCRAM verifier computed here, so the plaintext never reaches Postgres.
//! * [`secrets`]: the Secrets Manager calls behind a trait, with `model` (unit tests only), an
//!   exact in-memory model of its version-stage rules; [`rds`]: endpoints of RDS-managed masters.
//! * [`rotator`]: the function itself, [`Rotator::handle`], bounded in time and logged without
//!   secrets; [`logging`]: the log set-up; [`failpoint`]: test-only stops after each write.
//!
//! # Settings (environment, read once)
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ROTATION_STRATEGY` | `single-user` | or `alternating-users` (needs `masterarn` in the secret); single user with a `masterarn` lets the master set the password when the user may not (SQLSTATE 42501, `rds.restrict_password_commands`) |
//! | `PASSWORD_LENGTH`, `EXCLUDE_CHARACTERS`, `EXCLUDE_NUMBERS`, `EXCLUDE_PUNCTUATION`, `EXCLUDE_UPPERCASE`, `EXCLUDE_LOWERCASE`, `REQUIRE_EACH_INCLUDED_TYPE` | 32, `:/@"'\`, false ×4, true | GetRandomPassword, as in AWS's templates |
//! | `TEST_QUERY` | `SELECT 1` | testSecret's probe: one statement, run in a transaction that is rolled back |
//! | `DB_CONNECT_TIMEOUT_MS` | 5000 | bound on one login (TCP + TLS + SCRAM) |
//! | `ROTATION_STEP_TIMEOUT_MS` | 25000 | bound on a step; the Lambda deadline lowers it |
//! | `DB_SSLMODE`, `DB_SSL_ROOT_CERT`, `ENVIRONMENT` | see design §6 | TLS, via db-credentials |
//! | `SECRETS_MANAGER_ENDPOINT` | unset | Secrets Manager endpoint override |
//! | `ROTATION_FAILPOINT` | unset | test builds only (feature `failpoints`): see [`failpoint`] |
//!
//! # In process
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rotation::{AwsRotator, Config};
//! let sdk = db_credentials::aws::load_sdk_config().await;
//! let rotator = AwsRotator::from_sdk(Config::from_env()?, &sdk);
//! let event = serde_json::json!({"SecretId": "app/db", "ClientRequestToken": "…", "Step": "createSecret"});
//! rotator.handle_json(&event).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod db;
pub mod error;
pub mod event;
pub mod failpoint;
/// The log set-up with its caps, shared with items-api.
pub use db_credentials::logging;
#[cfg(test)]
mod model;
pub mod password;
pub mod rds;
pub mod rotator;
pub mod secrets;
pub mod steps;
pub mod strategy;

pub use config::Config;
pub use error::{Error, StepError};
pub use event::{RotationEvent, Step};
pub use failpoint::Failpoint;
pub use rotator::{AwsRotator, Rotator};
pub use steps::Outcome;
pub use strategy::Strategy;
