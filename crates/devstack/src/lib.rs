//! Local stand-ins for AWS and RDS, for tests, benchmarks and `make run`:
//!
//! * [`postgres`]: a throwaway Postgres cluster on a free loopback port (TLS, SCRAM or md5,
//!   plaintext refused), from Debian's install (15) or the npm Postgres 18 (`DEVSTACK_POSTGRES`);
//! * [`failover`]: that cluster with a synchronous standby behind an [`endpoint`] (a stand-in for
//!   the RDS writer endpoint), and failovers that crash or demote the primary;
//! * [`faults`]: a stand-in in front of moto that answers the first N calls with throttling,
//!   429 or 5xx, as a storm of cold starts meets Secrets Manager;
//! * [`rds`]: an RDS-like master user (`CREATEROLE`, a member of `rds_superuser`, not superuser);
//! * [`moto`]: `moto_server` for Secrets Manager, SSM, RDS, IAM and a Lambda registry;
//! * [`stack`]: both together, plus helpers that create an application role, its database and
//!   the matching secret;
//! * [`watch`]: `cargo lambda watch` serving the functions, stopped with its whole process group;
//! * [`rotation_driver`]: plays the Secrets Manager service rotating a secret: RotateSecret (which
//!   leaves the empty `AWSPENDING` placeholder), the four steps with that token, then cleanup.
//! * [`capture`]: an in-memory writer for tests that read what a `tracing` subscriber logged.
//! * [`runtime_api`]: the Lambda Runtime API, serving events to a function's built (release)
//!   binary as the Lambda service does, for the benchmarks.
//!
//! With `DEVSTACK_EVIDENCE_DIR` set, [`evidence`] collects every secret created and every server
//! and function log, for the suite-wide leak check.
//!
//! Every server is stopped by its own PID when its handle drops, and also when the owning process
//! dies without dropping it (see [`guard`]). Nothing binds anything but 127.0.0.1.

#![warn(missing_docs)]

pub mod capture;
pub mod control;
pub mod endpoint;
pub mod evidence;
pub mod failover;
pub mod faults;
pub mod guard;
pub mod moto;
pub mod postgres;
pub mod rds;
pub mod rotation_driver;
pub mod runtime_api;
pub mod signal;
pub mod stack;
pub mod watch;

pub use endpoint::Endpoint;
pub use failover::{FailoverMode, FailoverOptions, FailoverPhase, FailoverReport};
pub use moto::{Moto, MotoOptions};
pub use postgres::{PasswordEncryption, Postgres, PostgresInstall, PostgresOptions};
pub use rds::{MasterKind, MasterLogin};
pub use rotation_driver::{RotationDriver, RotationEvent, Step, StepRunner};
pub use stack::{AppDatabase, Stack, StackOptions};
pub use watch::Watch;

/// A devstack failure, naming the step and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DevstackError {
    /// A required program is not installed.
    #[error("{tool} is not installed: {install}")]
    Missing {
        /// The program.
        tool: &'static str,
        /// How to install it.
        install: &'static str,
    },
    /// A program failed.
    #[error("{step} failed: {detail}")]
    Tool {
        /// What was being done.
        step: &'static str,
        /// Its output.
        detail: String,
    },
    /// An I/O error.
    #[error("cannot {step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A Postgres statement failed.
    #[error("postgres: {0}")]
    Postgres(String),
    /// An AWS call to moto failed.
    #[error("aws: {0}")]
    Aws(String),
    /// A rotation function broke the protocol's contract.
    #[error("rotation contract broken: {0}")]
    Contract(String),
    /// A rotation step failed.
    #[error("rotation step {step} failed: {message}")]
    Step {
        /// The step.
        step: &'static str,
        /// The function's error.
        message: String,
    },
}

impl DevstackError {
    pub(crate) fn io(step: &'static str, source: std::io::Error) -> Self {
        Self::Io { step, source }
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
///
/// # Errors
/// When no socket can be bound.
pub fn free_port() -> Result<u16, DevstackError> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| DevstackError::io("find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| DevstackError::io("find a free port", e))
}

/// 32 random hex characters (for names and throwaway passwords).
pub fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
