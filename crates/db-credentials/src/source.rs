//! The credential provider: one interface over every source of design §4.
//!
//! Secrets Manager values go through the [`SecretCache`]; SSM values are kept for the same TTL;
//! IAM tokens are made fresh for every connection; URL and env credentials are fixed.

use crate::{
    aws::AwsError,
    cache::{CacheError, CacheStatus, CachedSecret, SecretCache, Stage},
    config::{Config, SourceConfig, SourceKind, StaticCredentials},
    rds::{RdsApi, RdsTarget},
    secret::SecretError,
    secrets_manager::{SdkSecrets, SecretsBackend},
    tls::{SslMode, TlsError, TlsSettings},
};
use aws_config::SdkConfig;
use secrecy::SecretString;
use std::{fmt, path::PathBuf, sync::Mutex as StdMutex, time::Instant};
use tokio::sync::Mutex;

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

/// Everything needed to open a connection. `Debug` never shows the password.
#[derive(Clone)]
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

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("tls", &self.tls)
            .field("origin", &self.origin)
            .finish()
    }
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
            origin: Origin {
                source: SourceKind::Env,
                secret_id: None,
                version_id: None,
                stage: None,
                stale: false,
            },
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

struct SsmEntry {
    creds: StaticCredentials,
    version: String,
    fetched: Instant,
}

enum Backend {
    SecretsManager {
        cache: SecretCache<SdkSecrets>,
        rds: RdsApi,
    },
    Ssm {
        client: aws_sdk_ssm::Client,
        prefix: String,
        entry: Mutex<Option<SsmEntry>>,
    },
    Iam {
        sdk: Box<SdkConfig>,
        host: String,
        port: u16,
        dbname: String,
        user: String,
    },
    Static {
        creds: StaticCredentials,
        ssl_mode: Option<SslMode>,
        root_cert: Option<PathBuf>,
    },
}

/// Credentials from the configured source, cached as design §5 says.
pub struct CredentialProvider {
    config: Config,
    backend: Backend,
    /// Host/port the RDS API gave for a secret version that has none.
    rds_endpoint: StdMutex<Option<(String, String, u16)>>,
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
        let sdk = sdk.cloned().unwrap_or_else(|| SdkConfig::builder().build());
        let backend = match &config.source {
            SourceConfig::SecretsManager { secret_id } => Backend::SecretsManager {
                cache: SecretCache::new(
                    SdkSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk)),
                    secret_id.clone(),
                    config.secret_ttl,
                ),
                rds: RdsApi::new(&sdk),
            },
            SourceConfig::Ssm { prefix } => Backend::Ssm {
                client: aws_sdk_ssm::Client::new(&sdk),
                prefix: prefix.clone(),
                entry: Mutex::new(None),
            },
            SourceConfig::Iam {
                host,
                port,
                dbname,
                user,
            } => Backend::Iam {
                sdk: Box::new(sdk),
                host: host.clone(),
                port: *port,
                dbname: dbname.clone(),
                user: user.clone(),
            },
            SourceConfig::Url {
                credentials,
                ssl_mode,
                ssl_root_cert,
            } => Backend::Static {
                creds: credentials.clone(),
                ssl_mode: ssl_mode.or(config.ssl_mode),
                root_cert: ssl_root_cert.clone().or_else(|| config.ssl_root_cert.clone()),
            },
            SourceConfig::Env(creds) => Backend::Static {
                creds: creds.clone(),
                ssl_mode: config.ssl_mode,
                root_cert: config.ssl_root_cert.clone(),
            },
        };
        Self {
            config,
            backend,
            rds_endpoint: StdMutex::new(None),
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
        matches!(self.backend, Backend::SecretsManager { .. } | Backend::Ssm { .. })
    }

    /// Credentials for a new connection.
    ///
    /// # Errors
    /// [`CredentialError`] naming the source and what failed.
    pub async fn current(&self) -> Result<Credentials, CredentialError> {
        let creds = match &self.backend {
            Backend::SecretsManager { cache, .. } => {
                let entry = cache.get().await.map_err(|e| self.cache_error(e))?;
                self.credentials_from(entry).await?
            }
            Backend::Ssm { .. } => self.ssm(false).await?.0,
            Backend::Iam {
                sdk,
                host,
                port,
                dbname,
                user,
            } => {
                let tls = self.tls(None, None, None, None)?;
                if !tls.requires_tls() {
                    return Err(CredentialError::IamWithoutTls { mode: tls.mode });
                }
                let password = crate::rds::iam_token(sdk, host, *port, user).await.map_err(|reason| {
                    CredentialError::IamToken {
                        user: user.clone(),
                        host: host.clone(),
                        reason,
                    }
                })?;
                Credentials {
                    user: user.clone(),
                    password,
                    host: host.clone(),
                    port: *port,
                    dbname: dbname.clone(),
                    tls,
                    origin: self.origin(None, None, false),
                    cached: None,
                }
            }
            Backend::Static {
                creds,
                ssl_mode,
                root_cert,
            } => Credentials {
                user: creds.user.clone(),
                password: creds.password.clone(),
                host: creds.host.clone(),
                port: creds.port,
                dbname: creds.dbname.clone(),
                tls: self.tls(*ssl_mode, root_cert.as_ref(), None, None)?,
                origin: self.origin(None, None, false),
                cached: None,
            },
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
        let fresh = match &self.backend {
            Backend::SecretsManager { cache, .. } => {
                let failed_version = failed.origin.version_id.as_deref().unwrap_or_default();
                let entry = cache
                    .refresh_after_auth_failure(failed_version)
                    .await
                    .map_err(|e| self.cache_error(e))?;
                self.credentials_from(entry).await?
            }
            Backend::Ssm { .. } => self.ssm(true).await?.0,
            Backend::Iam { .. } | Backend::Static { .. } => return Ok(None),
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
        let Backend::SecretsManager { cache, .. } = &self.backend else {
            return Ok(None);
        };
        let Some(entry) = cache.pending().await.map_err(|e| self.cache_error(e))? else {
            return Ok(None);
        };
        if Some(&entry.version_id) == failed.origin.version_id.as_ref() {
            return Ok(None);
        }
        Ok(Some(self.credentials_from(entry).await?))
    }

    /// Keeps using `creds` (pending credentials the database accepted) for new connections, in
    /// place of `refused` — unless another caller has cached something else meanwhile.
    pub async fn adopt(&self, creds: &Credentials, refused: &Credentials) {
        if let (Backend::SecretsManager { cache, .. }, Some(entry)) = (&self.backend, &creds.cached) {
            let refused_version = refused.origin.version_id.as_deref().unwrap_or_default();
            if cache.adopt(entry.clone(), refused_version).await {
                self.announce(creds);
            }
        }
    }

    /// Source state for health reporting.
    pub fn status(&self) -> SourceStatus {
        let (secret_id, cache) = match &self.backend {
            Backend::SecretsManager { cache, .. } => (Some(cache.secret_id().to_owned()), Some(cache.status())),
            Backend::Ssm { prefix, .. } => (Some(prefix.clone()), None),
            _ => (None, None),
        };
        SourceStatus {
            source: self.kind(),
            secret_id,
            cache,
        }
    }

    fn origin(&self, version_id: Option<String>, stage: Option<Stage>, stale: bool) -> Origin {
        let secret_id = match &self.config.source {
            SourceConfig::SecretsManager { secret_id } => Some(secret_id.clone()),
            SourceConfig::Ssm { prefix } => Some(prefix.clone()),
            _ => None,
        };
        Origin {
            source: self.kind(),
            secret_id,
            version_id,
            stage,
            stale,
        }
    }

    fn tls(
        &self,
        mode: Option<SslMode>,
        root: Option<&PathBuf>,
        secret_ssl: Option<bool>,
        secret_cert: Option<&str>,
    ) -> Result<TlsSettings, TlsError> {
        let mode = mode.or(self.config.ssl_mode);
        let root = root.or(self.config.ssl_root_cert.as_ref());
        TlsSettings::resolve(mode, root, secret_ssl, secret_cert, self.config.environment)
    }

    fn cache_error(&self, e: CacheError) -> CredentialError {
        let id = match &self.config.source {
            SourceConfig::SecretsManager { secret_id } => secret_id.as_str(),
            _ => "",
        };
        match e {
            CacheError::Aws(error) => CredentialError::Aws {
                what: format!("secret {id} from Secrets Manager"),
                error,
            },
            CacheError::Secret(s) => CredentialError::Secret(s),
        }
    }

    async fn credentials_from(&self, entry: CachedSecret) -> Result<Credentials, CredentialError> {
        let Backend::SecretsManager { cache, rds } = &self.backend else {
            unreachable!("credentials_from is only called for the Secrets Manager source")
        };
        let secret = &entry.secret;
        let o = &self.config.overrides;
        let (host, port) = match (&o.host, secret.host()) {
            (Some(h), _) => (h.clone(), o.port.unwrap_or(secret.port())),
            (None, Some(h)) => (h.to_owned(), o.port.unwrap_or(secret.port())),
            (None, None) => {
                let (h, p) = self.rds_endpoint(cache, rds, &entry).await?;
                (h, o.port.unwrap_or(if secret.has_port() { secret.port() } else { p }))
            }
        };
        let tls = self.tls(None, None, secret.ssl(), secret.ssl_cert_path())?;
        Ok(Credentials {
            user: o.user.clone().unwrap_or_else(|| secret.username().to_owned()),
            password: secret.password().clone(),
            host,
            port,
            dbname: o.dbname.clone().unwrap_or_else(|| secret.dbname().to_owned()),
            tls,
            origin: self.origin(Some(entry.version_id.clone()), Some(entry.stage), entry.stale),
            cached: Some(entry),
        })
    }

    async fn rds_endpoint(
        &self,
        cache: &SecretCache<SdkSecrets>,
        rds: &RdsApi,
        entry: &CachedSecret,
    ) -> Result<(String, u16), CredentialError> {
        if let Ok(guard) = self.rds_endpoint.lock()
            && let Some((version, host, port)) = guard.as_ref()
            && *version == entry.version_id
        {
            return Ok((host.clone(), *port));
        }
        let id = cache.secret_id();
        let mut target = RdsTarget::find(&entry.secret, &[]);
        if target.is_none() {
            // RDS-managed secrets name their database only in tags.
            let desc = cache
                .backend()
                .describe(id)
                .await
                .map_err(|error| CredentialError::Aws {
                    what: format!("tags of secret {id} from Secrets Manager"),
                    error,
                })?;
            target = RdsTarget::find(&entry.secret, &desc.tags);
        }
        let target = target.ok_or_else(|| CredentialError::NoHost {
            secret_id: id.to_owned(),
        })?;
        let (host, port) = rds.endpoint(&target).await.map_err(|error| CredentialError::Aws {
            what: format!("the endpoint of {target:?} from RDS"),
            error,
        })?;
        if let Ok(mut guard) = self.rds_endpoint.lock() {
            *guard = Some((entry.version_id.clone(), host.clone(), port));
        }
        Ok((host, port))
    }

    /// Reads the SSM parameters, or returns the kept ones while younger than the TTL.
    async fn ssm(&self, force: bool) -> Result<(Credentials, String), CredentialError> {
        let Backend::Ssm { client, prefix, entry } = &self.backend else {
            unreachable!("ssm is only called for the SSM source")
        };
        let mut guard = entry.lock().await;
        let fresh = guard
            .as_ref()
            .is_some_and(|e| e.fetched.elapsed() < self.config.secret_ttl);
        if force || !fresh {
            *guard = Some(fetch_ssm(client, prefix, &self.config).await?);
        }
        let Some(e) = guard.as_ref() else {
            unreachable!("set above")
        };
        let creds = Credentials {
            user: e.creds.user.clone(),
            password: e.creds.password.clone(),
            host: e.creds.host.clone(),
            port: e.creds.port,
            dbname: e.creds.dbname.clone(),
            tls: self.tls(None, None, None, None)?,
            origin: self.origin(Some(e.version.clone()), None, false),
            cached: None,
        };
        Ok((creds, e.version.clone()))
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

async fn fetch_ssm(client: &aws_sdk_ssm::Client, prefix: &str, config: &Config) -> Result<SsmEntry, CredentialError> {
    let name = |n: &str| format!("{prefix}{n}");
    let names = ["db-endpoint", "db-username", "db-password", "db-name", "db-port"].map(name);
    let out = client
        .get_parameters()
        .set_names(Some(names.to_vec()))
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| CredentialError::Aws {
            what: format!("parameters under {prefix} from SSM Parameter Store"),
            error: AwsError::from_sdk("GetParameters", &e),
        })?;
    let find = |n: &str| out.parameters().iter().find(|p| p.name() == Some(n));
    let missing: Vec<&str> = names[..3]
        .iter()
        .filter(|n| find(n).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(CredentialError::SsmMissing {
            names: missing.join(", "),
        });
    }
    let value = |n: &str| find(n).and_then(|p| p.value()).unwrap_or_default().to_owned();
    let password_param = find(&names[2]);
    let version = format!("ssm-v{}", password_param.map(|p| p.version()).unwrap_or_default());
    // RDS console endpoints are often copied with ":5432".
    let (host, endpoint_port) = split_endpoint(&value(&names[0])).ok_or_else(|| CredentialError::SsmInvalid {
        name: names[0].clone(),
        expected: "a host name or address, optionally with :port (an IPv6 address with a port in brackets)",
    })?;
    let port = match find(&names[4]).and_then(|p| p.value()) {
        Some(p) => Some(parse_port(p).ok_or_else(|| CredentialError::SsmInvalid {
            name: names[4].clone(),
            expected: "a port number from 1 to 65535",
        })?),
        None => endpoint_port,
    };
    let o = &config.overrides;
    let creds = StaticCredentials {
        host: o.host.clone().unwrap_or(host),
        port: o.port.or(port).unwrap_or(crate::secret::DEFAULT_PORT),
        dbname: o
            .dbname
            .clone()
            .or_else(|| find(&names[3]).and_then(|p| p.value()).map(str::to_owned))
            .unwrap_or_else(|| crate::secret::DEFAULT_DBNAME.to_owned()),
        user: o.user.clone().unwrap_or_else(|| value(&names[1])),
        password: SecretString::from(value(&names[2])),
    };
    Ok(SsmEntry {
        creds,
        version,
        fetched: Instant::now(),
    })
}

fn parse_port(p: &str) -> Option<u16> {
    p.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// `host`, `host:port`, `[v6]:port`, `[v6]` or a bare IPv6 address; `None` when empty or the
/// port is not one.
fn split_endpoint(endpoint: &str) -> Option<(String, Option<u16>)> {
    let endpoint = endpoint.trim();
    if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return Some((host.to_owned(), port)).filter(|(h, _)| !h.is_empty());
    }
    let (host, port) = match endpoint.rsplit_once(':') {
        // Two colons or more: a bare IPv6 address, which cannot carry a port without brackets.
        Some((h, _)) if h.contains(':') => (endpoint, None),
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (endpoint, None),
    };
    Some((host.to_owned(), port)).filter(|(h, _)| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::split_endpoint;

    #[test]
    fn ssm_endpoints_with_and_without_port() {
        let ok = |s: &str, host: &str, port: Option<u16>| {
            assert_eq!(split_endpoint(s), Some((host.to_owned(), port)), "{s}");
        };
        ok("db.example.com", "db.example.com", None);
        ok("db.example.com:6432", "db.example.com", Some(6432));
        ok(" 10.0.0.5:5432 ", "10.0.0.5", Some(5432));
        ok("2001:db8::1", "2001:db8::1", None);
        ok("[2001:db8::1]:5433", "2001:db8::1", Some(5433));
        ok("[::1]", "::1", None);
        for bad in [
            "",
            "db:0",
            "db:65536",
            "db:port",
            ":5432",
            "[::1]5432",
            "[::1]:0",
            "[]:5432",
        ] {
            assert_eq!(split_endpoint(bad), None, "{bad}");
        }
    }
}
