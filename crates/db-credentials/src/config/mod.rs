//! Configuration, read once at start into typed values (design §4). Nothing reads env after this.
//!
//! [`Config::from_vars`] takes a snapshot of variables instead of reading the process environment,
//! so tests exercise every rule without touching global state. The pieces:
//! [`vars`] (the snapshot, `.env`, typed readers), [`url`] (`DATABASE_URL`), the source kinds and
//! what each needs, and [`ConfigError`].

mod error;
mod kind;
pub mod url;
mod vars;

pub use error::ConfigError;
pub use kind::SourceKind;
pub use vars::{
    LoadedVars, Vars, bool_var, millis_var, number_var, parse_bool, parse_port, unknown_vars, var, warn_unknown,
};

use crate::{
    secret::{DEFAULT_DBNAME, DEFAULT_PORT},
    tls::{Environment, SslMode, TlsEnv},
};
use secrecy::SecretString;
use std::{path::PathBuf, time::Duration};

/// What a new session must be, as libpq's `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum SessionTarget {
    /// Any server that accepts the login (libpq's `any`).
    #[default]
    Any,
    /// A server that accepts writes (libpq's `read-write`): not a standby, and not read-only by
    /// `default_transaction_read_only` (a demoted primary). Otherwise the session is closed and
    /// the connect fails with [`crate::ConnectErrorKind::ReadOnly`].
    ReadWrite,
}

/// Every variable this crate reads. Listed in the "no source" error and used to spot typos.
pub const KNOWN_VARS: &[&str] = &[
    "DB_SECRET_ARN",
    "DB_SECRET_ID",
    "DB_SSM_PREFIX",
    "DATABASE_URL",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "DB_PASSWORD",
    "DB_IAM_AUTH",
    "DB_CREDENTIALS_SOURCE",
    "ENVIRONMENT",
    "DB_SSLMODE",
    "DB_SSL_ROOT_CERT",
    "DB_SECRET_TTL_SECS",
    "DB_CONNECT_TIMEOUT_MS",
    // items-api's pool (read by its settings; listed here so they are not reported as typos).
    "DB_POOL_SIZE",
    "DB_MAX_LIFETIME_SECS",
];

/// Default revalidation interval of a cached secret.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);
/// Default connect timeout (TCP + TLS + authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5000);

/// Host, port, database and user fixed by configuration, with a password.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// User.
    pub user: String,
    /// Password (its `Debug` shows `[REDACTED]`).
    pub password: SecretString,
}

/// The chosen source with what it needs.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Secrets Manager secret ARN or name.
    SecretsManager {
        /// ARN or name.
        secret_id: String,
    },
    /// SSM parameter prefix; parameters are `<prefix>db-endpoint`, `db-username`, `db-password`, `db-name`, `db-port`.
    Ssm {
        /// Prefix, ending in `/` when it is a path.
        prefix: String,
    },
    /// RDS IAM auth: a token is generated per connection.
    Iam {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Database.
        dbname: String,
        /// Database user with the `rds_iam` role.
        user: String,
    },
    /// `DATABASE_URL` (its `sslmode` / `sslrootcert` are in [`Config::tls`]).
    Url(StaticCredentials),
    /// Discrete variables.
    Env(StaticCredentials),
}

impl SourceConfig {
    /// Which kind this is.
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::SecretsManager { .. } => SourceKind::SecretsManager,
            Self::Ssm { .. } => SourceKind::Ssm,
            Self::Iam { .. } => SourceKind::Iam,
            Self::Url(_) => SourceKind::Url,
            Self::Env(_) => SourceKind::Env,
        }
    }

    /// The secret ARN/name or SSM prefix, for the sources that have one.
    pub fn secret_id(&self) -> Option<&str> {
        match self {
            Self::SecretsManager { secret_id } => Some(secret_id),
            Self::Ssm { prefix } => Some(prefix),
            _ => None,
        }
    }
}

/// `DATABASE_HOST` / `DATABASE_PORT` / `DATABASE_NAME` applied over a secret. Never the user: a
/// secret's `username` always wins (with alternating users it changes at every rotation), and
/// `DATABASE_USER` beside a secret is a configuration error ([`ConfigError::UserOverride`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the secret's host.
    pub host: Option<String>,
    /// Replaces the secret's port.
    pub port: Option<u16>,
    /// Replaces the secret's database.
    pub dbname: Option<String>,
}

/// Everything the credential layer needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The source that won.
    pub source: SourceConfig,
    /// Sources that were also configured but lost to `source` (logged at start).
    pub ignored_sources: Vec<SourceKind>,
    /// Discrete overrides for secret-based sources.
    pub overrides: Overrides,
    /// `ENVIRONMENT`, `DB_SSLMODE`, `DB_SSL_ROOT_CERT` (with a URL's `sslmode`/`sslrootcert` over them).
    pub tls: TlsEnv,
    /// `DB_SECRET_TTL_SECS`.
    pub secret_ttl: Duration,
    /// `DB_CONNECT_TIMEOUT_MS`, or a URL's `connect_timeout`.
    pub connect_timeout: Duration,
    /// A URL's `application_name`, over the name the function gives its sessions.
    pub application_name: Option<String>,
    /// A URL's `target_session_attrs` (`any` when not given). A function that writes asks for a
    /// writer whatever this says.
    pub target_session_attrs: SessionTarget,
    /// Variables that look like ours but are not (likely typos), to be logged.
    pub unknown_vars: Vec<String>,
    /// Whether a `.env` file contributed variables.
    pub dotenv_loaded: bool,
}

const SSLMODE_EXPECTED: &str = "one of disable, prefer, require, verify-ca, verify-full";

impl TlsEnv {
    /// Reads `ENVIRONMENT`, `DB_SSLMODE` and `DB_SSL_ROOT_CERT`, the same way for every function.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown environment or mode; [`ConfigError::Tls`] for a
    /// plaintext mode in production.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let environment = match var(vars, "ENVIRONMENT") {
            None => Environment::Local,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "local" => Environment::Local,
                "staging" => Environment::Staging,
                "production" => Environment::Production,
                _ => return Err(ConfigError::invalid("ENVIRONMENT", "local, staging or production", v)),
            },
        };
        let ssl_mode = var(vars, "DB_SSLMODE")
            .map(|v| {
                v.parse::<SslMode>()
                    .map_err(|()| ConfigError::invalid("DB_SSLMODE", SSLMODE_EXPECTED, v))
            })
            .transpose()?;
        let env = Self {
            environment,
            ssl_mode,
            ssl_root_cert: var(vars, "DB_SSL_ROOT_CERT").map(PathBuf::from),
        };
        env.refuse_plaintext(ssl_mode)?;
        Ok(env)
    }
}

impl Config {
    /// Reads the process environment, plus `.env` when local (see [`LoadedVars::load`]).
    ///
    /// # Errors
    /// [`ConfigError`] describing the first problem found.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_loaded(&LoadedVars::load()?)
    }

    /// Builds the configuration from variables already loaded, for a process that also reads
    /// settings of its own from the same snapshot.
    ///
    /// # Errors
    /// [`ConfigError`] describing the first problem found.
    pub fn from_loaded(loaded: &LoadedVars) -> Result<Self, ConfigError> {
        let mut config = Self::from_vars(&loaded.vars)?;
        config.dotenv_loaded = loaded.dotenv_loaded;
        Ok(config)
    }

    /// Builds the configuration from a snapshot of variables.
    ///
    /// # Errors
    /// [`ConfigError`] describing the first problem found.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let get = |k: &str| var(vars, k);
        let mut tls = TlsEnv::from_vars(vars)?;
        let secret_ttl = number_var(vars, "DB_SECRET_TTL_SECS", "seconds", 0, 86_400)?
            .map_or(DEFAULT_SECRET_TTL, Duration::from_secs);
        let mut connect_timeout =
            millis_var(vars, "DB_CONNECT_TIMEOUT_MS", 100, 60_000)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut application_name = None;
        let mut target_session_attrs = SessionTarget::Any;

        // Password variables: the newer name and the older one must agree when both are set.
        let password = match (vars.get("DATABASE_PASSWORD"), vars.get("DB_PASSWORD")) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a != b => {
                return Err(ConfigError::PasswordConflict);
            }
            (Some(a), _) if !a.is_empty() => Some(a.clone()),
            (_, Some(b)) if !b.is_empty() => Some(b.clone()),
            _ => None,
        };
        let secret_id = match (get("DB_SECRET_ARN"), get("DB_SECRET_ID")) {
            (Some(a), Some(b)) if a != b => {
                return Err(ConfigError::SecretIdConflict {
                    arn: a.to_owned(),
                    id: b.to_owned(),
                });
            }
            (Some(a), _) | (None, Some(a)) => Some(a.to_owned()),
            (None, None) => None,
        };
        let iam = bool_var(vars, "DB_IAM_AUTH", false)?;
        let overrides = Overrides {
            host: get("DATABASE_HOST").map(str::to_owned),
            port: get("DATABASE_PORT")
                .map(|v| parse_port("DATABASE_PORT", v))
                .transpose()?,
            dbname: get("DATABASE_NAME").map(str::to_owned),
        };
        let user = get("DATABASE_USER").map(str::to_owned);

        let configured = |kind: SourceKind| match kind {
            SourceKind::SecretsManager => secret_id.is_some(),
            SourceKind::Ssm => get("DB_SSM_PREFIX").is_some(),
            SourceKind::Iam => iam,
            SourceKind::Url => get("DATABASE_URL").is_some(),
            SourceKind::Env => password.is_some(),
        };
        let chosen = match get("DB_CREDENTIALS_SOURCE") {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("auto") => None,
            Some(v) => Some(v.parse::<SourceKind>().map_err(|()| {
                ConfigError::invalid("DB_CREDENTIALS_SOURCE", "auto, secretsmanager, ssm, iam, url or env", v)
            })?),
        };
        let kind = match chosen {
            Some(kind) if configured(kind) => kind,
            Some(forced) => return Err(ConfigError::ForcedSourceNotConfigured { forced }),
            None => SourceKind::AUTO_ORDER
                .into_iter()
                .find(|k| configured(*k))
                .ok_or(ConfigError::NoSource)?,
        };
        let ignored_sources = SourceKind::AUTO_ORDER
            .into_iter()
            .filter(|k| *k != kind && configured(*k))
            .collect();

        let require = |names: &[&'static str]| -> Result<(), ConfigError> {
            let missing: Vec<&str> = names.iter().copied().filter(|n| get(n).is_none()).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(ConfigError::Missing {
                    chosen: kind,
                    missing: missing.join(", "),
                })
            }
        };
        let secret_var = match kind {
            SourceKind::SecretsManager if get("DB_SECRET_ARN").is_some() => Some("DB_SECRET_ARN"),
            SourceKind::SecretsManager => Some("DB_SECRET_ID"),
            SourceKind::Ssm => Some("DB_SSM_PREFIX"),
            SourceKind::Iam | SourceKind::Url | SourceKind::Env => None,
        };
        if let (Some(source_var), Some(_)) = (secret_var, &user) {
            return Err(ConfigError::UserOverride {
                chosen: kind,
                source_var,
            });
        }
        let port = overrides.port.unwrap_or(DEFAULT_PORT);
        let dbname = overrides.dbname.clone().unwrap_or_else(|| DEFAULT_DBNAME.to_owned());
        let source = match kind {
            SourceKind::SecretsManager => SourceConfig::SecretsManager {
                secret_id: secret_id.unwrap_or_default(),
            },
            SourceKind::Ssm => {
                let mut prefix = get("DB_SSM_PREFIX").unwrap_or_default().to_owned();
                // "/app/prod" and "/app/prod/" both mean the /app/prod/ path.
                if prefix.starts_with('/') && !prefix.ends_with('/') {
                    prefix.push('/');
                }
                SourceConfig::Ssm { prefix }
            }
            SourceKind::Iam => {
                require(&["DATABASE_HOST", "DATABASE_USER"])?;
                SourceConfig::Iam {
                    host: overrides.host.clone().unwrap_or_default(),
                    port,
                    dbname,
                    user: user.clone().unwrap_or_default(),
                }
            }
            SourceKind::Url => {
                let parsed = url::parse(get("DATABASE_URL").unwrap_or_default())?;
                tls = tls.overridden(parsed.ssl_mode, parsed.ssl_root_cert)?;
                // The URL's own parameters win over the variables, as its sslmode does.
                connect_timeout = parsed.connect_timeout.unwrap_or(connect_timeout);
                application_name = parsed.application_name;
                target_session_attrs = parsed.target_session_attrs.unwrap_or_default();
                SourceConfig::Url(StaticCredentials {
                    host: parsed.host,
                    port: parsed.port,
                    dbname: parsed.dbname,
                    user: parsed.user,
                    password: parsed.password,
                })
            }
            SourceKind::Env => {
                require(&["DATABASE_HOST", "DATABASE_USER"])?;
                SourceConfig::Env(StaticCredentials {
                    host: overrides.host.clone().unwrap_or_default(),
                    port,
                    dbname,
                    user: user.clone().unwrap_or_default(),
                    password: SecretString::from(password.unwrap_or_default()),
                })
            }
        };
        // Without a secret nothing can add a root certificate later: check the TLS rules now, so
        // a verifying mode without a root stops the function at start, not at its first request.
        if !matches!(source, SourceConfig::SecretsManager { .. }) {
            tls.settings(None)?;
        }
        Ok(Self {
            source,
            ignored_sources,
            overrides,
            tls,
            secret_ttl,
            connect_timeout,
            application_name,
            target_session_attrs,
            unknown_vars: unknown_vars(vars, &["DB_", "DATABASE_"], KNOWN_VARS),
            dotenv_loaded: false,
        })
    }

    /// Logs the start-up facts: which source won, which were ignored, variables that look like ours
    /// but are unknown (likely typos), and whether `.env` was read.
    pub fn log(&self) {
        if !self.ignored_sources.is_empty() {
            let ignored: Vec<&str> = self.ignored_sources.iter().map(|k| k.as_str()).collect();
            tracing::warn!(
                source = self.source.kind().as_str(),
                ignored = %ignored.join(","),
                "several credential sources are configured; using the first in order secretsmanager, ssm, iam, url, env"
            );
        }
        warn_unknown(&self.unknown_vars);
        if self.dotenv_loaded {
            tracing::info!("read .env (ENVIRONMENT=local)");
        }
    }
}

#[cfg(test)]
mod tests;
