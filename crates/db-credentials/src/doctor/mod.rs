//! Staged diagnosis of the credential path, behind the `db-doctor` binary.
//!
//! Each stage is checked on its own so a failure points at one thing: configuration, AWS
//! credentials, the route to the AWS endpoint, reading the secret, its JSON, DNS, TCP, the TLS
//! handshake, authentication, a query. Every failure carries what is wrong and what to do. The
//! last stage only warns: a user with more rights than the API needs (design §11).
//! Credentials are resolved exactly as the items API resolves them (same [`CredentialProvider`]).
//! The checks themselves are in `checks`, one function per stage.

mod checks;

use crate::{
    config::{Config, ConfigError, SourceConfig, SourceKind},
    connect::{ConnectErrorKind, connect},
    source::{CredentialError, CredentialProvider},
    tls::SslMode,
};
use aws_config::SdkConfig;
use serde::{Serialize, Serializer};
use std::{fmt, time::Instant};
use tokio_postgres::error::SqlState;

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
    /// Works, but something should change (an over-privileged user). Not a failure: `ok` stays
    /// true and later stages run.
    Warning,
}

/// A stage of the diagnosis, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The variables parse and name a source.
    Configuration,
    /// The SDK finds AWS credentials.
    AwsCredentials,
    /// The AWS endpoint (Secrets Manager or SSM) is reachable.
    AwsEndpoint,
    /// The secret or parameters can be read.
    Secret,
    /// Their content is usable.
    SecretJson,
    /// The database host resolves.
    Dns,
    /// Its port accepts TCP.
    Tcp,
    /// The TLS handshake succeeds under the configured mode.
    Tls,
    /// The server accepts the credentials.
    Authentication,
    /// A query runs.
    Query,
    /// The user has no more rights than an application needs.
    Privileges,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 11] = [
        Self::Configuration,
        Self::AwsCredentials,
        Self::AwsEndpoint,
        Self::Secret,
        Self::SecretJson,
        Self::Dns,
        Self::Tcp,
        Self::Tls,
        Self::Authentication,
        Self::Query,
        Self::Privileges,
    ];

    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::AwsCredentials => "aws-credentials",
            Self::AwsEndpoint => "aws-endpoint",
            Self::Secret => "secret",
            Self::SecretJson => "secret-json",
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Authentication => "authentication",
            Self::Query => "query",
            Self::Privileges => "privileges",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Stage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A failed stage: what is wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was found.
    pub detail: String,
    /// What to do.
    pub fix: String,
}

impl Failure {
    fn new(detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// One stage's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The stage.
    pub stage: Stage,
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
    /// The check for a stage.
    pub fn stage(&self, stage: Stage) -> Option<&Check> {
        self.checks.iter().find(|c| c.stage == stage)
    }

    /// The first failed stage.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == Status::Failed)
    }

    /// The stages that passed with a warning.
    pub fn warnings(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Warning)
    }

    /// Human-readable text, one line per stage plus a `fix:` line under failures.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Failed => "FAIL",
                Status::Skipped => "skip",
                Status::Warning => "warn",
            };
            out.push_str(&format!("[{mark}] {:<16} {}\n", c.stage, c.detail));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
        out.push_str(match (self.ok, self.warnings().next().is_some()) {
            (true, false) => "database access OK\n",
            (true, true) => "database access OK, with warnings\n",
            (false, _) => "database access FAILED\n",
        });
        out
    }
}

struct Run {
    checks: Vec<Check>,
    failed: bool,
}

impl Run {
    fn record(&mut self, stage: Stage, started: Instant, result: Result<String, Failure>) -> bool {
        let millis = started.elapsed().as_millis() as u64;
        let check = match result {
            Ok(detail) => Check {
                stage,
                status: Status::Ok,
                detail,
                fix: None,
                millis,
            },
            Err(Failure { detail, fix }) => {
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

    fn warn(&mut self, stage: Stage, started: Instant, warning: Failure) {
        self.checks.push(Check {
            stage,
            status: Status::Warning,
            detail: warning.detail,
            fix: Some(warning.fix),
            millis: started.elapsed().as_millis() as u64,
        });
    }

    fn skip(&mut self, stage: Stage, why: &str) {
        self.checks.push(Check {
            stage,
            status: Status::Skipped,
            detail: why.to_owned(),
            fix: None,
            millis: 0,
        });
    }

    fn finish(mut self) -> Report {
        let done: Vec<Stage> = self.checks.iter().map(|c| c.stage).collect();
        for stage in Stage::ALL {
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
            run.record(Stage::Configuration, t, Err(Failure::new(e.to_string(), fix)));
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
    summary.push_str(&format!("; ENVIRONMENT={}", config.tls.environment.as_str()));
    run.record(Stage::Configuration, t, Ok(summary));

    let uses_aws = matches!(kind, SourceKind::SecretsManager | SourceKind::Ssm | SourceKind::Iam);
    let sdk = if uses_aws {
        Some(match sdk {
            Some(s) => s,
            None => crate::aws::load_sdk_config().await,
        })
    } else {
        run.skip(Stage::AwsCredentials, "source does not use AWS");
        run.skip(Stage::AwsEndpoint, "source does not use AWS");
        None
    };
    if let Some(sdk) = &sdk {
        let t = Instant::now();
        if !run.record(Stage::AwsCredentials, t, checks::aws_credentials(sdk).await) {
            return run.finish();
        }
        let t = Instant::now();
        if kind != SourceKind::Iam && !run.record(Stage::AwsEndpoint, t, checks::aws_endpoint(sdk, kind).await) {
            return run.finish();
        }
        if kind == SourceKind::Iam {
            run.skip(Stage::AwsEndpoint, "IAM tokens are signed locally");
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
            run.record(Stage::Secret, t, Ok(what));
            run.record(
                Stage::SecretJson,
                t,
                Ok(format!(
                    "user {}, host {}:{}, database {}",
                    c.user, c.host, c.port, c.dbname
                )),
            );
            c
        }
        Err(CredentialError::Secret(e)) => {
            run.record(Stage::Secret, t, Ok("read".into()));
            run.record(
                Stage::SecretJson,
                t,
                Err(Failure::new(
                    e.to_string(),
                    "store a JSON object in RDS's format: username, password, host, port, dbname, engine",
                )),
            );
            return run.finish();
        }
        Err(e) => {
            run.record(
                Stage::Secret,
                t,
                Err(Failure::new(e.to_string(), checks::credential_fix(&e, &config))),
            );
            return run.finish();
        }
    };

    let t = Instant::now();
    if !run.record(Stage::Dns, t, checks::dns(&creds).await) {
        return run.finish();
    }
    let t = Instant::now();
    if !run.record(Stage::Tcp, t, checks::tcp(&creds, config.connect_timeout).await) {
        return run.finish();
    }
    let t = Instant::now();
    if creds.tls.mode == SslMode::Disable {
        run.skip(Stage::Tls, "sslmode disable");
    } else {
        match checks::tls(&creds, config.connect_timeout).await {
            Ok(None) => run.skip(
                Stage::Tls,
                "the server offers no TLS; sslmode prefer goes on in plaintext (production refuses prefer)",
            ),
            result => {
                if !run.record(Stage::Tls, t, result.map(Option::unwrap_or_default)) {
                    return run.finish();
                }
            }
        }
    }
    let t = Instant::now();
    let conn = match connect(&creds, config.connect_timeout, "db-doctor").await {
        Ok(c) => {
            run.record(
                Stage::Authentication,
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
                ConnectErrorKind::Server if e.sqlstate == Some(SqlState::INVALID_CATALOG_NAME) => {
                    format!("database {} does not exist: fix dbname in the secret or DATABASE_NAME", creds.dbname)
                }
                _ => "check the server log for this connection".to_owned(),
            };
            run.record(Stage::Authentication, t, Err(Failure::new(e.to_string(), fix)));
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
        Err(e) => Err(Failure::new(
            e.to_string(),
            "the user may lack CONNECT or USAGE privileges; check grants",
        )),
    };
    if !run.record(Stage::Query, t, result) {
        return run.finish();
    }
    let t = Instant::now();
    match checks::privileges(&conn.client).await {
        Ok(detail) => {
            run.record(Stage::Privileges, t, Ok(detail));
        }
        Err(warning) => run.warn(Stage::Privileges, t, warning),
    }
    run.finish()
}
