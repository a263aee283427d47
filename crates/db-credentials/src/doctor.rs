//! Staged diagnosis of the credential path, behind the `db-doctor` binary.
//!
//! Each stage is checked on its own so a failure points at one thing: configuration, AWS
//! credentials, the route to the AWS endpoint, reading the secret, its JSON, DNS, TCP, the TLS
//! handshake, authentication, a query. Every failure carries what is wrong and what to do.
//! Credentials are resolved exactly as the items API resolves them (same [`CredentialProvider`]).

use crate::{
    aws::{AwsError, AwsErrorKind},
    config::{Config, ConfigError, SourceConfig, SourceKind},
    connect::{ConnectErrorKind, connect},
    source::{CredentialError, CredentialProvider, Credentials},
    tls::SslMode,
};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Outcome of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed.
    Ok,
    /// Failed; later stages are skipped.
    Failed,
    /// Not applicable, or not reached.
    Skipped,
}

/// One stage's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stage name.
    pub stage: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Time the stage took.
    pub millis: u64,
}

/// All stages.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when no stage failed.
    pub ok: bool,
    /// Stages in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The check for a stage, if it ran.
    pub fn stage(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.stage == name)
    }

    /// The first failed stage.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == Status::Failed)
    }

    /// Human-readable text, one line per stage plus a `fix:` line under failures.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Failed => "FAIL",
                Status::Skipped => "skip",
            };
            out.push_str(&format!("[{mark}] {:<16} {}\n", c.stage, c.detail));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
        out.push_str(if self.ok {
            "database access OK\n"
        } else {
            "database access FAILED\n"
        });
        out
    }
}

/// Every stage name, in order.
pub const STAGES: [&str; 10] = [
    "configuration",
    "aws-credentials",
    "aws-endpoint",
    "secret",
    "secret-json",
    "dns",
    "tcp",
    "tls",
    "authentication",
    "query",
];

struct Run {
    checks: Vec<Check>,
    failed: bool,
}

impl Run {
    fn record(&mut self, stage: &'static str, started: Instant, result: Result<String, (String, String)>) -> bool {
        let millis = started.elapsed().as_millis() as u64;
        let check = match result {
            Ok(detail) => Check {
                stage,
                status: Status::Ok,
                detail,
                fix: None,
                millis,
            },
            Err((detail, fix)) => {
                self.failed = true;
                Check {
                    stage,
                    status: Status::Failed,
                    detail,
                    fix: Some(fix),
                    millis,
                }
            }
        };
        self.checks.push(check);
        !self.failed
    }

    fn skip(&mut self, stage: &'static str, why: &str) {
        self.checks.push(Check {
            stage,
            status: Status::Skipped,
            detail: why.to_owned(),
            fix: None,
            millis: 0,
        });
    }

    fn finish(mut self) -> Report {
        let done: Vec<&str> = self.checks.iter().map(|c| c.stage).collect();
        for stage in STAGES {
            if !done.contains(&stage) {
                self.checks.push(Check {
                    stage,
                    status: Status::Skipped,
                    detail: "not reached".into(),
                    fix: None,
                    millis: 0,
                });
            }
        }
        Report {
            ok: !self.failed,
            checks: self.checks,
        }
    }
}

/// Runs every stage. `sdk` is the AWS configuration to use (the default chain when `None`).
pub async fn diagnose(config: Result<Config, ConfigError>, sdk: Option<SdkConfig>) -> Report {
    let mut run = Run {
        checks: Vec::new(),
        failed: false,
    };
    let t = Instant::now();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let fix = match e {
                ConfigError::NoSource => {
                    "set DB_SECRET_ARN to the secret's ARN (the usual setup), or one of the other sources listed"
                }
                ConfigError::PasswordConflict => "remove DB_PASSWORD (the older name) or make both identical",
                _ => "correct the variable named above",
            };
            run.record("configuration", t, Err((e.to_string(), fix.to_owned())));
            return run.finish();
        }
    };
    let kind = config.source.kind();
    let mut summary = format!("source {kind}");
    match &config.source {
        SourceConfig::SecretsManager { secret_id } => summary.push_str(&format!(" (secret {secret_id})")),
        SourceConfig::Ssm { prefix } => summary.push_str(&format!(" (prefix {prefix})")),
        _ => {}
    }
    if !config.ignored_sources.is_empty() {
        let ignored: Vec<&str> = config.ignored_sources.iter().map(|k| k.as_str()).collect();
        summary.push_str(&format!("; also configured but ignored: {}", ignored.join(", ")));
    }
    summary.push_str(&format!("; ENVIRONMENT={}", config.environment.as_str()));
    run.record("configuration", t, Ok(summary));

    let uses_aws = matches!(kind, SourceKind::SecretsManager | SourceKind::Ssm | SourceKind::Iam);
    let sdk = if uses_aws {
        Some(match sdk {
            Some(s) => s,
            None => crate::aws::load_sdk_config().await,
        })
    } else {
        run.skip("aws-credentials", "source does not use AWS");
        run.skip("aws-endpoint", "source does not use AWS");
        None
    };
    if let Some(sdk) = &sdk {
        let t = Instant::now();
        if !run.record("aws-credentials", t, check_aws_credentials(sdk).await) {
            return run.finish();
        }
        let t = Instant::now();
        if kind != SourceKind::Iam && !run.record("aws-endpoint", t, check_endpoint(sdk, kind).await) {
            return run.finish();
        }
        if kind == SourceKind::Iam {
            run.skip("aws-endpoint", "IAM tokens are signed locally");
        }
    }

    let provider = CredentialProvider::with_sdk(config.clone(), sdk.as_ref());
    let t = Instant::now();
    let creds = match provider.current().await {
        Ok(c) => {
            let what = match c.origin.source {
                SourceKind::SecretsManager | SourceKind::Ssm => format!(
                    "read {} version {}",
                    c.origin.secret_id.as_deref().unwrap_or("-"),
                    c.origin.version_id.as_deref().unwrap_or("-")
                ),
                other => format!("credentials from {other}"),
            };
            run.record("secret", t, Ok(what));
            run.record(
                "secret-json",
                t,
                Ok(format!(
                    "user {}, host {}:{}, database {}",
                    c.user, c.host, c.port, c.dbname
                )),
            );
            c
        }
        Err(CredentialError::Secret(e)) => {
            run.record("secret", t, Ok("read".into()));
            run.record(
                "secret-json",
                t,
                Err((
                    e.to_string(),
                    "store a JSON object in RDS's format: username, password, host, port, dbname, engine".into(),
                )),
            );
            return run.finish();
        }
        Err(e) => {
            run.record("secret", t, Err((e.to_string(), credential_fix(&e, &config))));
            return run.finish();
        }
    };

    let t = Instant::now();
    if !run.record("dns", t, check_dns(&creds).await) {
        return run.finish();
    }
    let t = Instant::now();
    if !run.record("tcp", t, check_tcp(&creds, config.connect_timeout).await) {
        return run.finish();
    }
    let t = Instant::now();
    if creds.tls.mode == SslMode::Disable {
        run.skip("tls", "sslmode disable");
    } else {
        match check_tls(&creds, config.connect_timeout).await {
            Ok(None) => run.skip(
                "tls",
                "the server offers no TLS; sslmode prefer goes on in plaintext (production refuses prefer)",
            ),
            result => {
                if !run.record("tls", t, result.map(Option::unwrap_or_default)) {
                    return run.finish();
                }
            }
        }
    }
    let t = Instant::now();
    let conn = match connect(&creds, config.connect_timeout, "db-doctor").await {
        Ok(c) => {
            run.record(
                "authentication",
                t,
                Ok(format!(
                    "logged in as {} in {} ms",
                    c.info.user,
                    c.info.connect_time.as_millis()
                )),
            );
            c
        }
        Err(e) => {
            let fix = match e.kind {
                ConnectErrorKind::Authentication if e.detail.contains("pg_hba.conf") => {
                    "pg_hba.conf refuses this connection: if it says \"no encryption\" the server requires TLS (set DB_SSLMODE=require or better); otherwise allow this user, database and address".to_owned()
                }
                ConnectErrorKind::Authentication => format!(
                    "the password for {} does not match the database. If a rotation is in progress, compare AWSCURRENT and AWSPENDING (docs/rotation-runbook.md); otherwise set the password in the secret to the role's password",
                    e.user
                ),
                ConnectErrorKind::Tls => "see the tls stage: the server's TLS setup and ours disagree".to_owned(),
                ConnectErrorKind::Server if e.sqlstate.as_deref() == Some("3D000") => {
                    format!("database {} does not exist: fix dbname in the secret or DATABASE_NAME", creds.dbname)
                }
                _ => "check the server log for this connection".to_owned(),
            };
            run.record("authentication", t, Err((e.to_string(), fix)));
            return run.finish();
        }
    };
    let t = Instant::now();
    let query = async {
        let row = conn
            .client
            .query_one("SELECT current_setting('server_version'), current_user::text, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)", &[])
            .await?;
        Ok::<_, tokio_postgres::Error>((row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, bool>(2)))
    };
    let result = match query.await {
        Ok((version, user, ssl)) => Ok(format!(
            "PostgreSQL {version} as {user}, TLS {}",
            if ssl { "in use" } else { "NOT in use" }
        )),
        Err(e) => Err((
            e.to_string(),
            "the user may lack CONNECT or USAGE privileges; check grants".to_owned(),
        )),
    };
    run.record("query", t, result);
    run.finish()
}

async fn check_aws_credentials(sdk: &SdkConfig) -> Result<String, (String, String)> {
    let fix = "Unable to locate AWS credentials. In Lambda: the function needs an execution role. Locally: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned();
    let Some(provider) = sdk.credentials_provider() else {
        return Err(("no AWS credentials provider is configured".into(), fix));
    };
    match provider.provide_credentials().await {
        Ok(c) => Ok(format!(
            "found AWS credentials (access key {}…); region {}",
            c.access_key_id().chars().take(4).collect::<String>(),
            sdk.region().map_or("not set", |r| r.as_ref())
        )),
        Err(e) => Err((format!("no AWS credentials: {e}"), fix)),
    }
}

async fn check_endpoint(sdk: &SdkConfig, kind: SourceKind) -> Result<String, (String, String)> {
    let service = if kind == SourceKind::Ssm {
        "ssm"
    } else {
        "secretsmanager"
    };
    let region = sdk
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned());
    let url = sdk
        .endpoint_url()
        .map_or_else(|| format!("https://{service}.{region}.amazonaws.com"), str::to_owned);
    let parsed = url::Url::parse(&url).map_err(|e| {
        (
            format!("endpoint {url} is not a URL: {e}"),
            "fix AWS_ENDPOINT_URL".to_owned(),
        )
    })?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let fix = format!(
        "no route to {host}:{port}. In a VPC without a NAT gateway, add an interface VPC endpoint com.amazonaws.{region}.{service} with private DNS enabled and allow HTTPS (443) from the function's security group to the endpoint's"
    );
    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(format!("{url} reachable")),
        Ok(Err(e)) => Err((format!("cannot reach {url}: {e}"), fix)),
        Err(_) => Err((format!("cannot reach {url}: no answer within 3 s"), fix)),
    }
}

fn credential_fix(e: &CredentialError, config: &Config) -> String {
    let target = match &config.source {
        SourceConfig::SecretsManager { secret_id } => secret_id.clone(),
        SourceConfig::Ssm { prefix } => format!("{prefix}*"),
        _ => String::new(),
    };
    match e.aws().map(|a: &AwsError| a.kind) {
        Some(AwsErrorKind::NotFound) => format!(
            "{target} does not exist in this account and region: check DB_SECRET_ARN / DB_SSM_PREFIX and AWS_REGION"
        ),
        Some(AwsErrorKind::AccessDenied) => format!(
            "the role may not read {target}: allow secretsmanager:GetSecretValue and secretsmanager:DescribeSecret (ssm:GetParameters for SSM) on it, and kms:Decrypt on its key if it uses a customer-managed key"
        ),
        Some(AwsErrorKind::NoCredentials) => "no AWS credentials: see aws-credentials".to_owned(),
        Some(k) if k.is_transient() => {
            "the AWS endpoint did not answer: see aws-endpoint (VPC endpoint or NAT)".to_owned()
        }
        _ => match e {
            CredentialError::NoHost { .. } => "add a host to the secret or set DATABASE_HOST".to_owned(),
            CredentialError::Tls(_) => "fix DB_SSLMODE / DB_SSL_ROOT_CERT as the message says".to_owned(),
            CredentialError::SsmMissing { .. } => {
                "create the listed parameters (db-password as a SecureString)".to_owned()
            }
            _ => "see the message above".to_owned(),
        },
    }
}

async fn check_dns(creds: &Credentials) -> Result<String, (String, String)> {
    match tokio::net::lookup_host((creds.host.as_str(), creds.port)).await {
        Ok(addrs) => {
            let addrs: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            Ok(format!("{} resolves to {}", creds.host, addrs.join(", ")))
        }
        Err(e) => Err((
            format!("cannot resolve {}: {e}", creds.host),
            "check the host in the secret (or DATABASE_HOST); in a VPC, enable DNS resolution and DNS hostnames"
                .to_owned(),
        )),
    }
}

async fn check_tcp(creds: &Credentials, timeout: Duration) -> Result<String, (String, String)> {
    let target = format!("{}:{}", creds.host, creds.port);
    match tokio::time::timeout(timeout, TcpStream::connect((creds.host.as_str(), creds.port))).await {
        Ok(Ok(_)) => Ok(format!("{target} accepts connections")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err((
            format!("{target} refused the connection"),
            "nothing listens there: check the port and that the database is running".to_owned(),
        )),
        Ok(Err(e)) => Err((format!("cannot connect to {target}: {e}"), network_fix(creds.port))),
        Err(_) => Err((
            format!("no answer from {target} within {} ms", timeout.as_millis()),
            network_fix(creds.port),
        )),
    }
}

fn network_fix(port: u16) -> String {
    format!(
        "the database's security group must allow TCP {port} from the function's security group, and the function must run in subnets that route to the database"
    )
}

/// The TLS handshake the connection will make. `Ok(None)`: the server offers no TLS and sslmode
/// prefer will go on without it.
async fn check_tls(creds: &Credentials, timeout: Duration) -> Result<Option<String>, (String, String)> {
    let handshake = async {
        let mut stream = TcpStream::connect((creds.host.as_str(), creds.port))
            .await
            .map_err(|e| (e.to_string(), String::new()))?;
        // SSLRequest: length 8, code 80877103.
        stream
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(|e| (e.to_string(), String::new()))?;
        let mut answer = [0u8; 1];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| (e.to_string(), String::new()))?;
        if answer[0] != b'S' {
            if creds.tls.mode == SslMode::Prefer {
                return Ok(None);
            }
            return Err((
                "server does not support TLS".to_owned(),
                "the server does not offer TLS: enable ssl on the server (RDS always offers it); DB_SSLMODE=disable is only for local use".to_owned(),
            ));
        }
        let connector = creds
            .tls
            .native_connector()
            .map_err(|e| (e.to_string(), "fix DB_SSL_ROOT_CERT".to_owned()))?;
        let connector = tokio_native_tls::TlsConnector::from(connector);
        match connector.connect(&creds.host, stream).await {
            Ok(_) => Ok(Some(format!(
                "handshake OK, sslmode {}{}",
                creds.tls.mode,
                creds
                    .tls
                    .root_cert
                    .as_ref()
                    .map(|p| format!(", CA {}", p.display()))
                    .unwrap_or_default()
            ))),
            Err(e) => {
                let msg = e.to_string();
                let fix = if msg.contains("hostname") || msg.contains("IP address mismatch") {
                    format!(
                        "the certificate does not name {}: connect with the name in the certificate (the RDS endpoint, not a CNAME), or use DB_SSLMODE=verify-ca",
                        creds.host
                    )
                } else if msg.contains("certificate") {
                    "the server's certificate is not signed by a trusted CA: set DB_SSL_ROOT_CERT to the CA bundle (for RDS, global-bundle.pem from truststore.pki.rds.amazonaws.com)".to_owned()
                } else {
                    "the TLS handshake failed; check the server's TLS configuration".to_owned()
                };
                Err((format!("TLS handshake with {} failed: {msg}", creds.host), fix))
            }
        }
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err((
            "no TLS answer within the connect timeout".into(),
            network_fix(creds.port),
        )),
    }
}
