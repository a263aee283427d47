//! Configuration, read once at start into typed values (design §4). Nothing reads env after this.
//!
//! [`Config::from_vars`] takes a snapshot of variables instead of reading the process environment,
//! so tests exercise every rule without touching global state.

use crate::tls::SslMode;
use secrecy::SecretString;
use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr, time::Duration};

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
];

/// Default revalidation interval of a cached secret.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);
/// Default connect timeout (TCP + TLS + authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5000);

/// Deployment environment (`ENVIRONMENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// A developer machine: `.env` is read.
    #[default]
    Local,
    /// A shared pre-production environment.
    Staging,
    /// Production: plaintext database connections are refused.
    Production,
}

impl Environment {
    /// The name as written in `ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

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

    fn needs(self) -> &'static str {
        match self {
            Self::SecretsManager => "DB_SECRET_ARN (or DB_SECRET_ID)",
            Self::Ssm => "DB_SSM_PREFIX",
            Self::Iam => "DB_IAM_AUTH=true with DATABASE_HOST and DATABASE_USER",
            Self::Url => "DATABASE_URL",
            Self::Env => "DATABASE_HOST, DATABASE_USER and DATABASE_PASSWORD (or DB_PASSWORD)",
        }
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

/// A configuration problem. Names the variable; echoes a value only when it cannot be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No source is configured.
    #[error(
        "no database credentials configured: set DB_SECRET_ARN (or DB_SECRET_ID) for Secrets Manager, \
         DB_SSM_PREFIX for SSM Parameter Store, DB_IAM_AUTH=true with DATABASE_HOST and DATABASE_USER for RDS IAM auth, \
         DATABASE_URL, or DATABASE_HOST + DATABASE_USER + DATABASE_PASSWORD (or DB_PASSWORD); \
         DB_CREDENTIALS_SOURCE forces one of secretsmanager|ssm|iam|url|env"
    )]
    NoSource,
    /// `DB_CREDENTIALS_SOURCE` names a source whose variables are not set.
    #[error("DB_CREDENTIALS_SOURCE={forced} but {needs} is not set")]
    ForcedSourceNotConfigured {
        /// The forced source.
        forced: SourceKind,
        /// What it needs.
        needs: &'static str,
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
    /// `DB_SECRET_ARN` and `DB_SECRET_ID` are both set and differ.
    #[error("DB_SECRET_ARN ({arn}) and DB_SECRET_ID ({id}) are both set and differ; set only one of them")]
    SecretIdConflict {
        /// DB_SECRET_ARN.
        arn: String,
        /// DB_SECRET_ID.
        id: String,
    },
    /// `ENVIRONMENT=production` with a plaintext `DB_SSLMODE`.
    #[error(
        "DB_SSLMODE={mode} allows plaintext, which ENVIRONMENT=production refuses; use require, verify-ca or verify-full"
    )]
    PlaintextInProduction {
        /// The refused mode.
        mode: SslMode,
    },
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

/// Host, port, database and user fixed by configuration, with a password.
#[derive(Clone)]
pub struct StaticCredentials {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: SecretString,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .finish()
    }
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
    /// `DATABASE_URL`, with its own `sslmode` / `sslrootcert` if present.
    Url {
        /// Parsed credentials.
        credentials: StaticCredentials,
        /// `sslmode` from the URL.
        ssl_mode: Option<SslMode>,
        /// `sslrootcert` from the URL.
        ssl_root_cert: Option<PathBuf>,
    },
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
            Self::Url { .. } => SourceKind::Url,
            Self::Env(_) => SourceKind::Env,
        }
    }
}

/// `DATABASE_HOST` / `DATABASE_PORT` / `DATABASE_NAME` / `DATABASE_USER` applied over a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the secret's host.
    pub host: Option<String>,
    /// Replaces the secret's port.
    pub port: Option<u16>,
    /// Replaces the secret's database.
    pub dbname: Option<String>,
    /// Replaces the secret's user.
    pub user: Option<String>,
}

/// Everything the credential layer needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// The source that won.
    pub source: SourceConfig,
    /// Sources that were also configured but lost to `source` (logged at start).
    pub ignored_sources: Vec<SourceKind>,
    /// Discrete overrides for secret-based sources.
    pub overrides: Overrides,
    /// `DB_SSLMODE`.
    pub ssl_mode: Option<SslMode>,
    /// `DB_SSL_ROOT_CERT`.
    pub ssl_root_cert: Option<PathBuf>,
    /// `DB_SECRET_TTL_SECS`.
    pub secret_ttl: Duration,
    /// `DB_CONNECT_TIMEOUT_MS`.
    pub connect_timeout: Duration,
    /// Variables that look like ours but are not (likely typos), to be logged.
    pub unknown_vars: Vec<String>,
    /// Whether a `.env` file contributed variables.
    pub dotenv_loaded: bool,
}

/// A snapshot of variables.
pub type Vars = BTreeMap<String, String>;

/// The variables a process starts with: its environment, plus `.env` in the working directory
/// when `ENVIRONMENT` is `local` (or unset). A `.env` value never overrides a variable that is set.
#[derive(Debug, Clone, Default)]
pub struct LoadedVars {
    /// The merged snapshot.
    pub vars: Vars,
    /// Whether `.env` contributed anything.
    pub dotenv_loaded: bool,
}

impl LoadedVars {
    /// Reads the process environment and, on a developer machine, `.env`.
    ///
    /// # Errors
    /// [`ConfigError::DotEnv`] when `.env` exists but cannot be read or parsed (the message never
    /// quotes the file: a line of it may hold a password).
    pub fn load() -> Result<Self, ConfigError> {
        let mut vars: Vars = std::env::vars().collect();
        let local = vars
            .get("ENVIRONMENT")
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("local"));
        let mut dotenv_loaded = false;
        if local {
            match dotenvy::from_filename_iter(".env") {
                Ok(iter) => {
                    for item in iter {
                        let (k, v) = item.map_err(|e| ConfigError::DotEnv(dotenv_reason(&e)))?;
                        vars.entry(k).or_insert(v);
                        dotenv_loaded = true;
                    }
                }
                Err(e) if e.not_found() => {}
                Err(e) => return Err(ConfigError::DotEnv(dotenv_reason(&e))),
            }
        }
        Ok(Self { vars, dotenv_loaded })
    }
}

/// A variable's value, trimmed; `None` when unset or blank.
pub fn var<'a>(vars: &'a Vars, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Reads a boolean the way AWS's rotation templates do (`value.lower() in ['true', '1', 'y',
/// 'yes']`): those are true; `false`, `0`, `n`, `no` and the empty string are false; anything else
/// is a typo and an error naming the variable, never a silent false. Every function of this
/// workspace reads booleans with this.
///
/// # Errors
/// [`ConfigError::Invalid`].
pub fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Ok(true),
        "false" | "0" | "n" | "no" | "" => Ok(false),
        _ => Err(invalid(var, "true/1/y/yes or false/0/n/no", value)),
    }
}

/// A boolean variable, `default` when unset.
///
/// # Errors
/// [`ConfigError::Invalid`], as [`parse_bool`].
pub fn bool_var(vars: &Vars, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    vars.get(name).map_or(Ok(default), |v| parse_bool(name, v))
}

/// A whole number from `min` to `max` counting `unit`, `None` when unset or blank.
///
/// # Errors
/// [`ConfigError::OutOfRange`], naming the variable, the unit and the range.
pub fn number_var(
    vars: &Vars,
    name: &'static str,
    unit: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = var(vars, name) else { return Ok(None) };
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::OutOfRange {
            var: name,
            unit,
            min,
            max,
            got: v.to_owned(),
        }),
    }
}

/// A duration given in milliseconds (the `*_MS` variables), `None` when unset or blank.
///
/// # Errors
/// [`ConfigError::OutOfRange`].
pub fn millis_var(vars: &Vars, name: &'static str, min: u64, max: u64) -> Result<Option<Duration>, ConfigError> {
    Ok(number_var(vars, name, "milliseconds", min, max)?.map(Duration::from_millis))
}

/// The settings every function reads the same way to reach its database: `ENVIRONMENT`,
/// `DB_SSLMODE` (a plaintext mode is refused in production) and `DB_SSL_ROOT_CERT`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsEnv {
    /// `ENVIRONMENT` (default local).
    pub environment: Environment,
    /// `DB_SSLMODE`; unset means [`TlsSettings::resolve`](crate::TlsSettings::resolve)'s default.
    pub ssl_mode: Option<SslMode>,
    /// `DB_SSL_ROOT_CERT`: CA bundle for verify-ca / verify-full.
    pub ssl_root_cert: Option<PathBuf>,
}

impl TlsEnv {
    /// Reads the three variables.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown environment or mode;
    /// [`ConfigError::PlaintextInProduction`].
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let environment = match var(vars, "ENVIRONMENT") {
            None => Environment::Local,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "local" => Environment::Local,
                "staging" => Environment::Staging,
                "production" => Environment::Production,
                _ => return Err(invalid("ENVIRONMENT", "local, staging or production", v)),
            },
        };
        let ssl_mode = var(vars, "DB_SSLMODE")
            .map(|v| {
                v.parse::<SslMode>()
                    .map_err(|()| invalid("DB_SSLMODE", SSLMODE_EXPECTED, v))
            })
            .transpose()?;
        if let (Environment::Production, Some(mode @ (SslMode::Disable | SslMode::Prefer))) = (environment, ssl_mode) {
            return Err(ConfigError::PlaintextInProduction { mode });
        }
        Ok(Self {
            environment,
            ssl_mode,
            ssl_root_cert: var(vars, "DB_SSL_ROOT_CERT").map(PathBuf::from),
        })
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

        let TlsEnv {
            environment,
            ssl_mode,
            ssl_root_cert,
        } = TlsEnv::from_vars(vars)?;
        let secret_ttl = number_var(vars, "DB_SECRET_TTL_SECS", "seconds", 0, 86_400)?
            .map_or(DEFAULT_SECRET_TTL, Duration::from_secs);
        let connect_timeout =
            millis_var(vars, "DB_CONNECT_TIMEOUT_MS", 100, 60_000)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);

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
            user: get("DATABASE_USER").map(str::to_owned),
        };

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
            Some(v) => Some(
                v.parse::<SourceKind>()
                    .map_err(|()| invalid("DB_CREDENTIALS_SOURCE", "auto, secretsmanager, ssm, iam, url or env", v))?,
            ),
        };
        let kind = match chosen {
            Some(kind) if configured(kind) => kind,
            Some(kind) => {
                return Err(ConfigError::ForcedSourceNotConfigured {
                    forced: kind,
                    needs: kind.needs(),
                });
            }
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
        let port = overrides.port.unwrap_or(crate::secret::DEFAULT_PORT);
        let dbname = overrides
            .dbname
            .clone()
            .unwrap_or_else(|| crate::secret::DEFAULT_DBNAME.to_owned());
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
                    user: overrides.user.clone().unwrap_or_default(),
                }
            }
            SourceKind::Url => parse_url(get("DATABASE_URL").unwrap_or_default())?,
            SourceKind::Env => {
                require(&["DATABASE_HOST", "DATABASE_USER"])?;
                SourceConfig::Env(StaticCredentials {
                    host: overrides.host.clone().unwrap_or_default(),
                    port,
                    dbname,
                    user: overrides.user.clone().unwrap_or_default(),
                    password: SecretString::from(password.unwrap_or_default()),
                })
            }
        };
        let unknown_vars = vars
            .keys()
            .filter(|k| (k.starts_with("DB_") || k.starts_with("DATABASE_")) && !KNOWN_VARS.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Self {
            environment,
            source,
            ignored_sources,
            overrides,
            ssl_mode,
            ssl_root_cert,
            secret_ttl,
            connect_timeout,
            unknown_vars,
            dotenv_loaded: false,
        })
    }
}

const SSLMODE_EXPECTED: &str = "one of disable, prefer, require, verify-ca, verify-full";

fn invalid(var: &'static str, expected: &'static str, got: &str) -> ConfigError {
    ConfigError::Invalid {
        var,
        expected,
        got: got.to_owned(),
    }
}

fn dotenv_reason(e: &dotenvy::Error) -> String {
    // dotenvy's parse errors quote the offending line, which may hold a password.
    match e {
        dotenvy::Error::LineParse(_, index) => format!("syntax error at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "unreadable".to_owned(),
    }
}

fn parse_port(var: &'static str, v: &str) -> Result<u16, ConfigError> {
    v.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(var, "a port number from 1 to 65535", v))
}

fn parse_url(raw: &str) -> Result<SourceConfig, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidUrl {
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw).map_err(|e| ConfigError::InvalidUrl { reason: e.to_string() })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("it has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| bad("a percent-escape in the user, password or database is not valid UTF-8"))
    };
    let user = decode(url.username())?;
    if user.is_empty() {
        return Err(bad("it has no user"));
    }
    let password = decode(url.password().unwrap_or_default())?;
    if password.is_empty() {
        return Err(bad("it has no password"));
    }
    let dbname = match url.path().trim_start_matches('/') {
        "" => crate::secret::DEFAULT_DBNAME.to_owned(),
        path => decode(path)?,
    };
    let mut ssl_mode = None;
    let mut ssl_root_cert = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => {
                ssl_mode = Some(
                    value
                        .parse::<SslMode>()
                        .map_err(|()| bad(&format!("sslmode must be {SSLMODE_EXPECTED}")))?,
                )
            }
            "sslrootcert" => ssl_root_cert = Some(PathBuf::from(value.as_ref())),
            other => {
                return Err(bad(&format!(
                    "parameter {other:?} is not supported (only sslmode and sslrootcert are)"
                )));
            }
        }
    }
    Ok(SourceConfig::Url {
        credentials: StaticCredentials {
            host,
            port: url.port().unwrap_or(crate::secret::DEFAULT_PORT),
            dbname,
            user,
            password: SecretString::from(password),
        },
        ssl_mode,
        ssl_root_cert,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn no_source_lists_every_variable_it_looked_for() {
        let msg = Config::from_vars(&vars(&[])).unwrap_err().to_string();
        for var in [
            "DB_SECRET_ARN",
            "DB_SECRET_ID",
            "DB_SSM_PREFIX",
            "DB_IAM_AUTH",
            "DATABASE_URL",
            "DATABASE_HOST",
        ] {
            assert!(msg.contains(var), "{msg} should mention {var}");
        }
        assert!(msg.contains("DATABASE_PASSWORD") && msg.contains("DB_PASSWORD"));
    }

    #[test]
    fn auto_takes_the_first_configured_source_and_reports_the_rest() {
        let c = Config::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("DB_SSM_PREFIX", "/app/"),
            ("DB_SECRET_ARN", "arn:s"),
            ("DATABASE_PASSWORD", "pw"),
            ("DATABASE_HOST", "h"),
            ("DATABASE_USER", "u"),
        ]))
        .unwrap();
        assert_eq!(c.source.kind(), SourceKind::SecretsManager);
        assert_eq!(
            c.ignored_sources,
            vec![SourceKind::Ssm, SourceKind::Url, SourceKind::Env]
        );
        assert_eq!(
            c.overrides.host.as_deref(),
            Some("h"),
            "discrete vars still override the secret"
        );
    }

    #[test]
    fn forced_source_wins_and_must_be_configured() {
        let c = Config::from_vars(&vars(&[
            ("DB_SECRET_ARN", "arn:s"),
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("DB_CREDENTIALS_SOURCE", "url"),
        ]))
        .unwrap();
        assert_eq!(c.source.kind(), SourceKind::Url);
        let err =
            Config::from_vars(&vars(&[("DB_SECRET_ARN", "arn:s"), ("DB_CREDENTIALS_SOURCE", "ssm")])).unwrap_err();
        assert!(err.to_string().contains("DB_SSM_PREFIX"), "{err}");
        let err = Config::from_vars(&vars(&[("DB_SECRET_ARN", "a"), ("DB_CREDENTIALS_SOURCE", "vault")])).unwrap_err();
        assert!(err.to_string().contains("DB_CREDENTIALS_SOURCE"), "{err}");
    }

    #[test]
    fn secret_id_is_an_alias_and_conflicts_are_refused() {
        let c = Config::from_vars(&vars(&[("DB_SECRET_ID", "app/db")])).unwrap();
        assert!(matches!(c.source, SourceConfig::SecretsManager { ref secret_id } if secret_id == "app/db"));
        let err = Config::from_vars(&vars(&[("DB_SECRET_ID", "a"), ("DB_SECRET_ARN", "b")])).unwrap_err();
        assert!(matches!(err, ConfigError::SecretIdConflict { .. }));
    }

    #[test]
    fn both_password_variables_must_agree_and_are_never_echoed() {
        let base = [("DATABASE_HOST", "h"), ("DATABASE_USER", "u")];
        let mut v = vars(&base);
        v.insert("DATABASE_PASSWORD".into(), "s3cret-one".into());
        v.insert("DB_PASSWORD".into(), "s3cret-two".into());
        let msg = Config::from_vars(&v).unwrap_err().to_string();
        assert!(
            msg.contains("DATABASE_PASSWORD") && msg.contains("DB_PASSWORD"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"), "{msg}");
        v.insert("DB_PASSWORD".into(), "s3cret-one".into());
        assert!(Config::from_vars(&v).is_ok(), "equal values are fine");
        v.remove("DATABASE_PASSWORD");
        let c = Config::from_vars(&v).unwrap();
        let SourceConfig::Env(creds) = c.source else {
            panic!("env source expected")
        };
        assert_eq!(
            creds.password.expose_secret(),
            "s3cret-one",
            "the older DB_PASSWORD alone works"
        );
    }

    #[test]
    fn env_source_names_missing_variables() {
        let msg = Config::from_vars(&vars(&[("DB_PASSWORD", "pw")]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("DATABASE_HOST") && msg.contains("DATABASE_USER"), "{msg}");
    }

    #[test]
    fn iam_needs_host_and_user() {
        let msg = Config::from_vars(&vars(&[("DB_IAM_AUTH", "true"), ("DATABASE_HOST", "h")]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("DATABASE_USER"), "{msg}");
        let c = Config::from_vars(&vars(&[
            ("DB_IAM_AUTH", "1"),
            ("DATABASE_HOST", "h"),
            ("DATABASE_USER", "u"),
        ]));
        assert!(matches!(c.unwrap().source, SourceConfig::Iam { ref user, port: 5432, .. } if user == "u"));
        let err = Config::from_vars(&vars(&[("DB_IAM_AUTH", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("DB_IAM_AUTH"));
    }

    #[test]
    fn database_url_is_decoded_and_never_echoed() {
        let c = Config::from_vars(&vars(&[(
            "DATABASE_URL",
            "postgresql://app%40corp:p%40ss%3Aw%2Fd@db.example.com:6543/items%20db?sslmode=verify-full&sslrootcert=/ca.pem",
        )]))
        .unwrap();
        let SourceConfig::Url {
            credentials,
            ssl_mode,
            ssl_root_cert,
        } = c.source
        else {
            panic!("url expected")
        };
        assert_eq!(credentials.user, "app@corp");
        assert_eq!(credentials.password.expose_secret(), "p@ss:w/d");
        assert_eq!(credentials.host, "db.example.com");
        assert_eq!(credentials.port, 6543);
        assert_eq!(credentials.dbname, "items db");
        assert_eq!(ssl_mode, Some(SslMode::VerifyFull));
        assert_eq!(ssl_root_cert, Some(PathBuf::from("/ca.pem")));

        for bad in [
            "mysql://u:topsecret@h/db",
            "postgres://u:topsecret@h/db?application_name=x",
            "postgres://:topsecret@h/",
        ] {
            let msg = Config::from_vars(&vars(&[("DATABASE_URL", bad)]))
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with("DATABASE_URL"), "{msg}");
            assert!(!msg.contains("topsecret"), "{msg}");
        }
    }

    #[test]
    fn numbers_and_modes_are_validated() {
        let base = [("DB_SECRET_ARN", "a")];
        for (var, val) in [
            ("DB_SECRET_TTL_SECS", "ten"),
            ("DB_SECRET_TTL_SECS", "100000"),
            ("DB_CONNECT_TIMEOUT_MS", "5"),
            ("DB_SSLMODE", "allow"),
            ("DATABASE_PORT", "0"),
            ("ENVIRONMENT", "prod"),
        ] {
            let mut v = vars(&base);
            v.insert(var.into(), val.into());
            let msg = Config::from_vars(&v).unwrap_err().to_string();
            assert!(msg.contains(var), "{var}={val}: {msg}");
        }
        let mut v = vars(&base);
        v.insert("DB_SECRET_TTL_SECS".into(), "0".into());
        v.insert("DB_CONNECT_TIMEOUT_MS".into(), "250".into());
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(c.secret_ttl, Duration::ZERO);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(Config::from_vars(&vars(&base)).unwrap().secret_ttl, DEFAULT_SECRET_TTL);
    }

    #[test]
    fn production_refuses_plaintext_sslmode_up_front() {
        for mode in ["disable", "prefer"] {
            let v = vars(&[
                ("DB_SECRET_ARN", "a"),
                ("ENVIRONMENT", "production"),
                ("DB_SSLMODE", mode),
            ]);
            assert!(
                matches!(Config::from_vars(&v), Err(ConfigError::PlaintextInProduction { .. })),
                "{mode}"
            );
        }
    }

    #[test]
    fn ssm_path_prefix_gets_a_trailing_slash() {
        let c = Config::from_vars(&vars(&[("DB_SSM_PREFIX", "/app/prod")])).unwrap();
        assert!(matches!(c.source, SourceConfig::Ssm { ref prefix } if prefix == "/app/prod/"));
        let c = Config::from_vars(&vars(&[("DB_SSM_PREFIX", "app-prod-")])).unwrap();
        assert!(matches!(c.source, SourceConfig::Ssm { ref prefix } if prefix == "app-prod-"));
    }

    #[test]
    fn likely_typos_are_reported() {
        let c = Config::from_vars(&vars(&[("DB_SECRET_ARN", "a"), ("DB_SECRET_TLL_SECS", "5")])).unwrap();
        assert_eq!(c.unknown_vars, vec!["DB_SECRET_TLL_SECS".to_owned()]);
    }

    #[test]
    fn booleans_parse_like_aws_templates() {
        for t in ["true", "TRUE", "1", "y", "Yes", " yes "] {
            assert!(parse_bool("DB_IAM_AUTH", t).unwrap(), "{t}");
        }
        for f in ["false", "0", "n", "NO", ""] {
            assert!(!parse_bool("DB_IAM_AUTH", f).unwrap(), "{f}");
        }
        let err = parse_bool("DB_IAM_AUTH", "treu").unwrap_err().to_string();
        assert!(err.contains("DB_IAM_AUTH") && err.contains("treu"), "{err}");
        assert!(bool_var(&Vars::new(), "X", true).unwrap());
        assert!(!bool_var(&vars(&[("X", "")]), "X", true).unwrap());
    }

    #[test]
    fn numbers_name_their_unit_and_range() {
        let v = vars(&[("A_MS", " 250 "), ("B_MS", "5s"), ("C_MS", "")]);
        assert_eq!(
            millis_var(&v, "A_MS", 100, 1000).unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(millis_var(&v, "C_MS", 100, 1000).unwrap(), None);
        assert_eq!(millis_var(&v, "D_MS", 100, 1000).unwrap(), None);
        let err = millis_var(&v, "B_MS", 100, 1000).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"B_MS must be a whole number of milliseconds from 100 to 1000, got "5s""#
        );
        let err = number_var(&v, "A_MS", "seconds", 0, 10).unwrap_err().to_string();
        assert!(err.contains("from 0 to 10"), "{err}");
    }

    #[test]
    fn tls_env_is_read_once_for_every_function() {
        assert_eq!(TlsEnv::from_vars(&Vars::new()).unwrap(), TlsEnv::default());
        let t = TlsEnv::from_vars(&vars(&[
            ("ENVIRONMENT", "Production"),
            ("DB_SSLMODE", "verify-full"),
            ("DB_SSL_ROOT_CERT", "/opt/rds.pem"),
        ]))
        .unwrap();
        assert_eq!(t.environment, Environment::Production);
        assert_eq!(t.ssl_mode, Some(SslMode::VerifyFull));
        assert_eq!(t.ssl_root_cert, Some(PathBuf::from("/opt/rds.pem")));
        let err = TlsEnv::from_vars(&vars(&[("ENVIRONMENT", "production"), ("DB_SSLMODE", "prefer")])).unwrap_err();
        assert!(matches!(err, ConfigError::PlaintextInProduction { .. }), "{err}");
    }
}
