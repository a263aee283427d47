#![doc = include_str!("../README.md")]
//!
//! # The crate
//!
//! * [`event`]: the event the service sends; [`config`] and [`password`]: env read once at start.
//! * [`steps`]: one file per step, each after the stage checks of AWS's templates.
//! * [`strategy`]: which user a rotation changes; [`db`]: logging in and setting a password in
//!   the form [`verifier`] computes from the server's settings, so the plaintext never reaches
//!   Postgres.
//! * [`secrets`]: the Secrets Manager calls, db-credentials' reads plus rotation's writes, unit
//!   tested against db-credentials' exact in-memory model of its version-stage rules.
//! * [`rotator`]: the function itself, [`Rotator::handle`], bounded in time and logged without
//!   secrets; [`logging`]: the log set-up; [`failpoint`]: test-only stops after each write.
//! * [`custom_resource`]: the `Custom::DatabaseRole` CloudFormation resource the same function
//!   serves ([`Rotator::handle_custom_resource`]): the application role, made through the master.
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
pub mod custom_resource;
pub mod db;
pub mod error;
pub mod event;
pub mod failpoint;
/// The log set-up with its caps, shared with items-api.
pub use db_credentials::logging;
pub mod password;
pub mod preflight;
pub mod revoke;
pub mod rotator;
pub mod secrets;
pub mod sessions;
pub mod steps;
pub mod strategy;
pub mod verifier;

pub use config::Config;
pub use error::{Error, StepError};
pub use event::{RotationEvent, Step};
pub use failpoint::Failpoint;
pub use rotator::{AwsRotator, Rotator};
pub use steps::Outcome;
pub use strategy::Strategy;
