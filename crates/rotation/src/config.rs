//! The function's settings, read once at start into a typed [`Config`]; nothing reads env later.
//!
//! [`Config::from_vars`] takes a snapshot of variables, so tests exercise every rule without
//! touching the process environment.

use crate::{failpoint::Failpoint, strategy::Strategy};
use db_credentials::{
    ConfigError, TlsEnv,
    config::{Vars, millis_var, unknown_vars, var},
    secrets_manager::PasswordPolicy,
};
use std::time::Duration;

/// Default `TEST_QUERY`.
pub const DEFAULT_TEST_QUERY: &str = "SELECT 1";
/// Default `DB_CONNECT_TIMEOUT_MS`: AWS's templates use `connect_timeout=5`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `ROTATION_STEP_TIMEOUT_MS`: a step must end well inside the 30 s a rotation function
/// usually gets, with room to report its error.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(25);

/// Every variable this crate reads, besides the password knobs in [`crate::password::VARS`].
pub const VARS: [&str; 9] = [
    "ROTATION_STRATEGY",
    "TEST_QUERY",
    "DB_CONNECT_TIMEOUT_MS",
    "ROTATION_STEP_TIMEOUT_MS",
    "DB_SSLMODE",
    "DB_SSL_ROOT_CERT",
    "ENVIRONMENT",
    "SECRETS_MANAGER_ENDPOINT",
    "ROTATION_FAILPOINT",
];

/// Everything the function is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ROTATION_STRATEGY`: `single-user` (default) or `alternating-users`.
    pub strategy: Strategy,
    /// GetRandomPassword's knobs.
    pub password: PasswordPolicy,
    /// `TEST_QUERY`: what testSecret runs with the pending credentials (default `SELECT 1`). One
    /// statement without parameters (sent as a prepared statement, so Postgres refuses several
    /// with 42601), run inside a transaction that is rolled back, so a probe of write access leaves
    /// nothing behind.
    pub test_query: String,
    /// `DB_CONNECT_TIMEOUT_MS`: bound on each login, TCP + TLS + SCRAM (default 5000).
    pub connect_timeout: Duration,
    /// `ROTATION_STEP_TIMEOUT_MS`: bound on a whole step (default 25000; the Lambda deadline, when
    /// known, lowers it).
    pub step_timeout: Duration,
    /// `ENVIRONMENT`, `DB_SSLMODE`, `DB_SSL_ROOT_CERT`, read as every function reads them.
    pub tls: TlsEnv,
    /// `SECRETS_MANAGER_ENDPOINT`: overrides the Secrets Manager endpoint, as AWS's templates allow
    /// (a VPC endpoint's DNS name). `AWS_ENDPOINT_URL_SECRETS_MANAGER` does the same for the SDK.
    pub secrets_manager_endpoint: Option<String>,
    /// `ROTATION_FAILPOINT`: stop once at this point (honoured only in builds with the
    /// `failpoints` feature).
    pub failpoint: Option<Failpoint>,
    /// Variables that look like ours but are not (likely typos), for a warning at start.
    pub unknown_vars: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            password: PasswordPolicy::default(),
            test_query: DEFAULT_TEST_QUERY.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            step_timeout: DEFAULT_STEP_TIMEOUT,
            tls: TlsEnv::default(),
            secrets_manager_endpoint: None,
            failpoint: None,
            unknown_vars: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] for the first unusable variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads a snapshot of variables.
    ///
    /// # Errors
    /// [`ConfigError`] for the first unusable variable.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let get = |k: &str| var(vars, k);
        let strategy = match get("ROTATION_STRATEGY") {
            None => Strategy::default(),
            Some(v) => v
                .parse()
                .map_err(|()| ConfigError::invalid("ROTATION_STRATEGY", "single-user or alternating-users", v))?,
        };
        let test_query = get("TEST_QUERY").unwrap_or(DEFAULT_TEST_QUERY).to_owned();
        let connect_timeout =
            millis_var(vars, "DB_CONNECT_TIMEOUT_MS", 100, 60_000)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let step_timeout =
            millis_var(vars, "ROTATION_STEP_TIMEOUT_MS", 1_000, 900_000)?.unwrap_or(DEFAULT_STEP_TIMEOUT);
        let tls = TlsEnv::from_vars(vars)?;
        let failpoint = match get("ROTATION_FAILPOINT") {
            None => None,
            Some(v) => Some(
                v.parse::<Failpoint>()
                    .map_err(|()| ConfigError::invalid("ROTATION_FAILPOINT", Failpoint::EXPECTED, v))?,
            ),
        };
        Ok(Self {
            strategy,
            password: crate::password::policy_from_vars(vars)?,
            test_query,
            connect_timeout,
            step_timeout,
            tls,
            secrets_manager_endpoint: get("SECRETS_MANAGER_ENDPOINT").map(str::to_owned),
            failpoint,
            unknown_vars: unknown_vars(vars, &["ROTATION_", "EXCLUDE_", "PASSWORD_", "REQUIRE_"], &known_vars()),
        })
    }
}

/// Every variable the function reads: [`VARS`] and the password knobs.
fn known_vars() -> Vec<&'static str> {
    VARS.iter().chain(crate::password::VARS.iter()).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use db_credentials::{Environment, SslMode};
    use std::path::PathBuf;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_vars(&Vars::new()).unwrap();
        assert_eq!(c.strategy, Strategy::SingleUser);
        assert_eq!(c.test_query, "SELECT 1");
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.step_timeout, Duration::from_secs(25));
        assert_eq!(c.tls.ssl_mode, None);
        assert_eq!(c.tls.environment, Environment::Local);
        assert_eq!(c.failpoint, None);
        assert!(c.unknown_vars.is_empty());
    }

    #[test]
    fn settings_are_read_and_validated() {
        let c = Config::from_vars(&vars(&[
            ("ROTATION_STRATEGY", "alternating-users"),
            ("TEST_QUERY", "SELECT count(*) FROM items"),
            ("DB_CONNECT_TIMEOUT_MS", "1500"),
            ("DB_SSLMODE", "verify-full"),
            ("DB_SSL_ROOT_CERT", "/opt/rds.pem"),
            ("ENVIRONMENT", "production"),
            ("ROTATION_FAILPOINT", "after-set-password"),
        ]))
        .unwrap();
        assert_eq!(c.strategy, Strategy::AlternatingUsers);
        assert_eq!(c.test_query, "SELECT count(*) FROM items");
        assert_eq!(c.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.tls.ssl_mode, Some(SslMode::VerifyFull));
        assert_eq!(c.tls.ssl_root_cert, Some(PathBuf::from("/opt/rds.pem")));
        assert_eq!(c.tls.environment, Environment::Production);
        assert_eq!(c.failpoint, Some(Failpoint::AfterSetPassword));

        for (k, v) in [
            ("ROTATION_STRATEGY", "both"),
            ("DB_CONNECT_TIMEOUT_MS", "5s"),
            ("DB_CONNECT_TIMEOUT_MS", "10"),
            ("ROTATION_STEP_TIMEOUT_MS", "0"),
            ("DB_SSLMODE", "allow"),
            ("ENVIRONMENT", "prod"),
            ("ROTATION_FAILPOINT", "somewhere"),
        ] {
            let err = Config::from_vars(&vars(&[(k, v)])).unwrap_err().to_string();
            assert!(err.contains(k), "{err}");
        }
        let err = Config::from_vars(&vars(&[("ENVIRONMENT", "production"), ("DB_SSLMODE", "prefer")])).unwrap_err();
        assert!(err.to_string().contains("plaintext"), "{err}");
    }

    #[test]
    fn likely_typos_are_reported() {
        let c = Config::from_vars(&vars(&[
            ("EXCLUDE_CHARACTER", "x"),
            ("ROTATION_STRATEGY", "single-user"),
        ]))
        .unwrap();
        assert_eq!(c.unknown_vars, vec!["EXCLUDE_CHARACTER".to_owned()]);
    }
}
