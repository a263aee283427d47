//! The four steps, one short function each, every one preceded by the stage checks of AWS's
//! templates ([`check_stages`]). They read like the protocol; the plumbing is in [`Ctx`].

use crate::{
    config::Config,
    db::{Database, DbError, RoleChange, Session},
    error::{Error, Statement},
    event::RotationEvent,
    failpoint::{Failpoint, Failpoints},
    rds::RdsEndpoints,
    secrets::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, SecretDescription, SecretsApi},
    strategy::Strategy,
};
use db_credentials::{
    ConnectError, ConnectErrorKind, Credentials, DbSecret, SourceKind, TlsSettings, aws::AwsError, aws::AwsErrorKind,
    cache::Stage, rds::RdsTarget, source::Origin,
};
use secrecy::SecretString;
use std::{
    fmt,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The token is already `AWSCURRENT`: nothing to do (any step).
    AlreadyCurrent,
    /// createSecret put a new pending version.
    Created,
    /// createSecret found the pending version already holds a value.
    PendingExists,
    /// setSecret found the pending credentials already log in.
    PendingAlreadyWorks,
    /// setSecret changed the password.
    PasswordSet,
    /// setSecret created the alternate user with the pending password.
    UserCreated,
    /// testSecret logged in with the pending credentials and ran the probe.
    Tested,
    /// finishSecret moved `AWSCURRENT` to the token.
    Finished,
    /// finishSecret found another invocation had just moved `AWSCURRENT`.
    FinishedConcurrently,
}

impl Outcome {
    /// A short name for logs and the function's response.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyCurrent => "already-current",
            Self::Created => "created",
            Self::PendingExists => "pending-exists",
            Self::PendingAlreadyWorks => "pending-already-works",
            Self::PasswordSet => "password-set",
            Self::UserCreated => "user-created",
            Self::Tested => "tested",
            Self::Finished => "finished",
            Self::FinishedConcurrently => "finished-concurrently",
        }
    }
}

#[cfg(test)]
mod tests;

/// Everything a step works with.
pub(crate) struct Ctx<'a, S, D, R> {
    pub config: &'a Config,
    pub secrets: &'a S,
    pub db: &'a D,
    pub rds: &'a R,
    pub failpoints: &'a Failpoints,
    pub event: &'a RotationEvent,
    pub deadline: Instant,
    /// What the step is waiting for, reported if the step runs out of time.
    pub progress: Mutex<&'static str>,
}

/// One version of a secret, parsed.
struct Version {
    id: String,
    secret: DbSecret,
}

/// Where a secret's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The stage checks every step makes first, with AWS's meaning. `Ok(None)` when the token is
/// already `AWSCURRENT` and the step has nothing to do.
pub(crate) async fn check_stages<S: SecretsApi, D, R>(
    cx: &Ctx<'_, S, D, R>,
) -> Result<Option<SecretDescription>, Error> {
    let (secret_id, token) = (&cx.event.secret_id, &cx.event.token);
    cx.doing("DescribeSecret");
    let mut desc = cx
        .secrets
        .describe(secret_id)
        .await
        .map_err(|e| aws_error("describe the versions", secret_id, e))?;
    if desc.arn.is_empty() {
        desc.arn.clone_from(secret_id);
    }
    let secret = || desc.arn.clone();
    if desc.rotation_enabled == Some(false) {
        return Err(Error::RotationDisabled { secret: secret() });
    }
    // AWSPENDING on a version that is neither ours nor the current one: a rotation under way or
    // abandoned, whose new password may already be in the database.
    let foreign = desc
        .version_with(AWSPENDING)
        .filter(|v| *v != token.as_str() && !desc.has_stage(v, AWSCURRENT));
    let refuse = |fallback: Error| match foreign {
        Some(other) => Error::ForeignPending {
            secret: secret(),
            token: token.clone(),
            pending: other.to_owned(),
        },
        None => fallback,
    };
    let Some(stages) = desc.versions.get(token) else {
        return Err(refuse(Error::TokenNotAVersion {
            secret: secret(),
            token: token.clone(),
        }));
    };
    if stages.iter().any(|s| s == AWSCURRENT) {
        tracing::info!("version is already AWSCURRENT; nothing to do");
        return Ok(None);
    }
    if !stages.iter().any(|s| s == AWSPENDING) {
        return Err(refuse(Error::TokenNotPending {
            secret: secret(),
            token: token.clone(),
        }));
    }
    if desc.arn != *secret_id {
        tracing::Span::current().record("secret_arn", desc.arn.as_str());
    }
    Ok(Some(desc))
}

/// createSecret: unless the pending version already has a value, copy `AWSCURRENT` with a new
/// password (and, alternating, the other user) and put it as `AWSPENDING` under the token.
pub(crate) async fn create_secret<S: SecretsApi, D, R: RdsEndpoints>(
    cx: &Ctx<'_, S, D, R>,
    desc: &SecretDescription,
) -> Result<Outcome, Error> {
    let arn = &desc.arn;
    let current = cx.read(arn, AWSCURRENT, None).await?;
    // A secret no step could ever reach: refuse before writing anything, as AWS's templates do.
    // An RDS identifier (keys, or the tags of an RDS-managed secret) stands in for the host.
    if current.secret.host().is_none() && RdsTarget::find(&current.secret, &desc.tags).is_none() {
        return Err(Error::Secret {
            stage: AWSCURRENT,
            source: db_credentials::SecretError::MissingKey {
                secret_id: arn.clone(),
                key: "host",
            },
        });
    }
    if cx.config.strategy == Strategy::AlternatingUsers && current.secret.masterarn().is_none() {
        return Err(Error::Secret {
            stage: AWSCURRENT,
            source: db_credentials::SecretError::MissingKey {
                secret_id: arn.clone(),
                key: "masterarn",
            },
        });
    }

    cx.doing("GetSecretValue AWSPENDING");

    match cx.secrets.get_value(arn, AWSPENDING, Some(&cx.event.token)).await {
        Ok(value) => {
            parse(arn, AWSPENDING, value.secret_string.as_ref(), true)?;
            tracing::info!("pending version already holds a value; keeping it");
            return Ok(Outcome::PendingExists);
        }
        // The placeholder RotateSecret made has no value yet: that, and only that, means "generate".
        Err(e) if e.kind == AwsErrorKind::NotFound => {}
        Err(e) => return Err(aws_error("read AWSPENDING", arn, e)),
    }
    let user = cx.config.strategy.pending_username(current.secret.username())?;
    cx.doing("GetRandomPassword");
    let password = cx
        .secrets
        .random_password(&cx.config.password)
        .await
        .map_err(|e| aws_error("generate a password", arn, e))?;
    let mut pending = current.secret.with_password(password);
    if user != current.secret.username() {
        pending = pending.with_username(&user);
    }
    cx.doing("PutSecretValue");
    cx.secrets
        .put_pending(
            arn,
            &cx.event.token,
            &pending.to_secret_string(),
            cx.event.rotation_token.as_ref(),
        )
        .await
        .map_err(|e| aws_error("put the pending version", arn, e))?;
    let host = current.secret.host().map(|h| Endpoint {
        host: h.to_owned(),
        port: current.secret.port(),
    });
    record_user(&user, host.as_ref());
    cx.failpoints.hit(Failpoint::AfterPutSecretValue)?;
    Ok(Outcome::Created)
}

/// setSecret: make the database accept the pending password, after checking the pending
/// version names the right user and host (before any connection to it).
pub(crate) async fn set_secret<S: SecretsApi, D: Database, R: RdsEndpoints>(
    cx: &Ctx<'_, S, D, R>,
    desc: &SecretDescription,
) -> Result<Outcome, Error> {
    let arn = &desc.arn;
    let current = cx.read(arn, AWSCURRENT, None).await?;
    let pending = cx.read(arn, AWSPENDING, Some(&cx.event.token)).await?;
    let expected = cx.config.strategy.pending_username(current.secret.username())?;
    if pending.secret.username() != expected {
        return Err(Error::UserMismatch {
            secret: arn.clone(),
            pending: pending.secret.username().to_owned(),
            expected,
        });
    }
    let here = cx.endpoint(arn, AWSCURRENT, &current.secret, &desc.tags).await?;
    let there = cx.endpoint(arn, AWSPENDING, &pending.secret, &desc.tags).await?;
    if here != there {
        return Err(Error::HostMismatch {
            secret: arn.clone(),
            pending: there.to_string(),
            current: here.to_string(),
        });
    }
    record_user(pending.secret.username(), Some(&here));
    // Every login to this database uses current's TLS settings: a pending or previous version
    // cannot weaken them.
    let tls = cx.tls(arn, &current.secret)?;
    let mut attempts = Vec::new();
    match cx.login(&cx.creds(&pending, &here, &tls, Some(Stage::Pending))).await {
        Ok(_) => {
            tracing::info!("pending credentials already log in; password already set");
            return Ok(Outcome::PendingAlreadyWorks);
        }
        Err(e) => attempts.push(cx.attempt(arn, "pending", e)?),
    }
    match cx.config.strategy {
        Strategy::SingleUser => set_own_password(cx, arn, &current, &pending, &here, &tls, attempts).await,
        Strategy::AlternatingUsers => set_with_master(cx, arn, &current, &pending, &here, &tls).await,
    }
}

/// Single user: log in as current, else previous, and change our own password.
async fn set_own_password<S: SecretsApi, D: Database, R: RdsEndpoints>(
    cx: &Ctx<'_, S, D, R>,
    arn: &str,
    current: &Version,
    pending: &Version,
    here: &Endpoint,
    tls: &TlsSettings,
    mut attempts: Vec<String>,
) -> Result<Outcome, Error> {
    let mut session = match cx.login(&cx.creds(current, here, tls, Some(Stage::Current))).await {
        Ok(s) => s,
        Err(e) => {
            attempts.push(cx.attempt(arn, "current", e)?);
            match cx.previous(arn, pending, here).await {
                Err(why) => {
                    attempts.push(format!("previous: {why}"));
                    return Err(cannot_log_in(arn, pending, here, &attempts));
                }
                Ok(previous) => match cx.login(&cx.creds(&previous, here, tls, None)).await {
                    Ok(s) => s,
                    Err(e) => {
                        attempts.push(cx.attempt(arn, "previous", e)?);
                        return Err(cannot_log_in(arn, pending, here, &attempts));
                    }
                },
            }
        }
    };
    let user = pending.secret.username();
    cx.doing("ALTER ROLE");
    match session.set_password(user, pending.secret.password()).await {
        Ok(()) => {}
        // Under rds.restrict_password_commands a user may not change its own password; a secret
        // that names a master (AWS's #50, #64) lets the master do it.
        Err(DbError::PermissionDenied(_)) if current.secret.masterarn().is_some() => {
            drop(session);
            tracing::info!("may not change its own password; using the master secret");
            let (mut master_session, master_user) = master_session(cx, arn, current, here, tls).await?;
            cx.doing("ALTER ROLE (master)");
            master_session
                .set_password(user, pending.secret.password())
                .await
                .map_err(|e| db_error(e, Statement::MasterSetPassword, &master_user, user, here))?;
        }
        Err(e) => return Err(db_error(e, Statement::SetOwnPassword, user, user, here)),
    }
    tracing::info!("password set");
    cx.failpoints.hit(Failpoint::AfterSetPassword)?;
    Ok(Outcome::PasswordSet)
}

/// Alternating users: current must log in; then the master creates the other user, or sets its
/// password.
async fn set_with_master<S: SecretsApi, D: Database, R: RdsEndpoints>(
    cx: &Ctx<'_, S, D, R>,
    arn: &str,
    current: &Version,
    pending: &Version,
    here: &Endpoint,
    tls: &TlsSettings,
) -> Result<Outcome, Error> {
    match cx.login(&cx.creds(current, here, tls, Some(Stage::Current))).await {
        Ok(session) => drop(session),
        Err(e) if is_unreachable(&e) => return Err(unreachable(arn, e)),
        Err(e) => {
            return Err(Error::CurrentLoginFailed {
                secret: arn.to_owned(),
                source: Box::new(e),
            });
        }
    }
    let (mut session, master_user) = master_session(cx, arn, current, here, tls).await?;
    let (user, member_of) = (pending.secret.username(), current.secret.username());
    cx.doing("CREATE/ALTER ROLE");
    let change = session
        .create_or_set_password(user, member_of, pending.secret.password())
        .await
        .map_err(|e| db_error(e, Statement::CreateOrSetPassword, &master_user, user, here))?;
    if change == RoleChange::Created {
        tracing::info!(member_of, "alternate user created");
        cx.failpoints.hit(Failpoint::AfterCreateClone)?;
    } else {
        tracing::info!("password set");
    }
    cx.failpoints.hit(Failpoint::AfterSetPassword)?;
    Ok(match change {
        RoleChange::Created => Outcome::UserCreated,
        RoleChange::PasswordSet => Outcome::PasswordSet,
    })
}

/// A session as the user of the secret `masterarn` names, on the current version's host and in
/// its database, with the current version's TLS settings (same host, so the same rules: neither
/// the master secret nor a pending version can weaken them). Returns the session and the master's
/// user name.
async fn master_session<S: SecretsApi, D: Database, R: RdsEndpoints>(
    cx: &Ctx<'_, S, D, R>,
    arn: &str,
    current: &Version,
    here: &Endpoint,
    tls: &TlsSettings,
) -> Result<(D::Session, String), Error> {
    let master_arn = current
        .secret
        .masterarn()
        .ok_or_else(|| Error::NoMasterArn { secret: arn.to_owned() })?;
    let master = cx.read(master_arn, "master secret's AWSCURRENT", None).await?;
    let tags = match master.secret.host() {
        Some(_) => Vec::new(),
        None => {
            cx.doing("DescribeSecret (master)");
            let d = cx.secrets.describe(master_arn).await;
            d.map_err(|e| aws_error("read the tags", master_arn, e))?.tags
        }
    };
    let master_at = cx
        .endpoint(master_arn, "master secret's AWSCURRENT", &master.secret, &tags)
        .await?;
    if master_at.host != here.host {
        return Err(Error::MasterHostMismatch {
            secret: arn.to_owned(),
            master: master_arn.to_owned(),
            current: here.host.clone(),
            master_host: master_at.host,
        });
    }
    // The master logs into the child's database (AWS's PR #122), where its grants are made.
    let mut creds = cx.creds(&master, &master_at, tls, None);
    creds.dbname = current.secret.dbname().to_owned();
    match cx.login(&creds).await {
        Ok(session) => Ok((session, master.secret.username().to_owned())),
        Err(e) if is_unreachable(&e) => Err(unreachable(arn, e)),
        Err(e) => Err(Error::MasterLoginFailed {
            master: master_arn.to_owned(),
            source: Box::new(e),
        }),
    }
}

/// testSecret: log in with the pending credentials and run `TEST_QUERY` (rolled back).
pub(crate) async fn test_secret<S: SecretsApi, D: Database, R: RdsEndpoints>(
    cx: &Ctx<'_, S, D, R>,
    desc: &SecretDescription,
) -> Result<Outcome, Error> {
    let arn = &desc.arn;
    let pending = cx.read(arn, AWSPENDING, Some(&cx.event.token)).await?;
    let at = cx.endpoint(arn, AWSPENDING, &pending.secret, &desc.tags).await?;
    record_user(pending.secret.username(), Some(&at));
    let tls = cx.tls(arn, &pending.secret)?;
    let mut session = match cx.login(&cx.creds(&pending, &at, &tls, Some(Stage::Pending))).await {
        Ok(s) => s,
        Err(e) if is_unreachable(&e) => return Err(unreachable(arn, e)),
        Err(e) => {
            return Err(Error::PendingLoginFailed {
                secret: arn.clone(),
                source: Box::new(e),
            });
        }
    };
    cx.doing("TEST_QUERY");
    let user = pending.secret.username();
    session
        .probe(&cx.config.test_query)
        .await
        .map_err(|e| db_error(e, Statement::Probe, user, user, &at))?;
    Ok(Outcome::Tested)
}

/// finishSecret: move `AWSCURRENT` to the token; the old version becomes `AWSPREVIOUS`.
/// `AWSPENDING` stays only on the new current version, which the service accepts as finished.
pub(crate) async fn finish_secret<S: SecretsApi, D, R>(
    cx: &Ctx<'_, S, D, R>,
    desc: &SecretDescription,
) -> Result<Outcome, Error> {
    let (arn, token) = (&desc.arn, &cx.event.token);
    let current = desc.version_with(AWSCURRENT);
    cx.failpoints.hit(Failpoint::BeforeUpdateStage)?;
    cx.doing("UpdateSecretVersionStage");
    if let Err(e) = cx.secrets.update_stage(arn, AWSCURRENT, Some(token), current).await {
        // A concurrent finishSecret may have moved it between our DescribeSecret and this call.
        let now = cx.secrets.describe(arn).await;
        if now.is_ok_and(|d| d.has_stage(token, AWSCURRENT)) {
            tracing::info!("AWSCURRENT was moved by a concurrent finishSecret");
            return Ok(Outcome::FinishedConcurrently);
        }
        return Err(aws_error("move AWSCURRENT", arn, e));
    }
    tracing::info!(previous = current.unwrap_or_default(), "AWSCURRENT moved");
    cx.failpoints.hit(Failpoint::AfterUpdateStage)?;
    Ok(Outcome::Finished)
}

impl<S, D, R> Ctx<'_, S, D, R> {
    fn doing(&self, what: &'static str) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = what;
    }
}

impl<S: SecretsApi, D, R: RdsEndpoints> Ctx<'_, S, D, R> {
    /// Reads and parses a version (child secrets must name a Postgres engine).
    async fn read(&self, secret_id: &str, stage: &'static str, version: Option<&str>) -> Result<Version, Error> {
        let (label, child) = match stage {
            AWSCURRENT | AWSPENDING | AWSPREVIOUS => (stage, true),
            _ => (AWSCURRENT, false),
        };
        self.doing(stage);
        let value = self
            .secrets
            .get_value(secret_id, label, version)
            .await
            .map_err(|e| aws_error(&format!("read {stage}"), secret_id, e))?;
        let secret = parse(secret_id, stage, value.secret_string.as_ref(), child)?;
        Ok(Version {
            id: value.version_id,
            secret,
        })
    }

    /// Host and port: from the secret, else from the RDS API for the instance or cluster the
    /// secret's keys or tags name.
    async fn endpoint(
        &self,
        secret_id: &str,
        stage: &'static str,
        secret: &DbSecret,
        tags: &[(String, String)],
    ) -> Result<Endpoint, Error> {
        if let Some(host) = secret.host() {
            return Ok(Endpoint {
                host: host.to_owned(),
                port: secret.port(),
            });
        }
        let target = RdsTarget::find(secret, tags).ok_or_else(|| Error::NoHost {
            secret: secret_id.to_owned(),
            stage,
        })?;
        self.doing("RDS endpoint lookup");
        let (host, port) = self
            .rds
            .endpoint(&target)
            .await
            .map_err(|e| aws_error("look up the RDS endpoint", secret_id, e))?;
        let port = if secret.has_port() { secret.port() } else { port };
        Ok(Endpoint { host, port })
    }

    /// AWSPREVIOUS, if it can be used: it must exist, parse, and name the pending user on the
    /// same host. `Err` says why not; it is reported with the other attempts and never hides them.
    async fn previous(&self, arn: &str, pending: &Version, here: &Endpoint) -> Result<Version, String> {
        self.doing("GetSecretValue AWSPREVIOUS");
        let value = match self.secrets.get_value(arn, AWSPREVIOUS, None).await {
            Ok(v) => v,
            Err(e) if e.kind == AwsErrorKind::NotFound => return Err("no AWSPREVIOUS version".into()),
            Err(e) => return Err(format!("AWSPREVIOUS could not be read ({e})")),
        };
        let secret = parse(arn, AWSPREVIOUS, value.secret_string.as_ref(), false)
            .map_err(|e| format!("AWSPREVIOUS is unusable ({e})"))?;
        if secret.username() != pending.secret.username() {
            return Err(format!("AWSPREVIOUS names user {}, not tried", secret.username()));
        }
        // An old version may lack host (AWS's #13); it then means this same database.
        if let Some(host) = secret.host()
            && (host != here.host || secret.port() != here.port)
        {
            return Err(format!("AWSPREVIOUS names host {host}:{}, not tried", secret.port()));
        }
        Ok(Version {
            id: value.version_id,
            secret,
        })
    }

    fn tls(&self, secret_id: &str, secret: &DbSecret) -> Result<TlsSettings, Error> {
        TlsSettings::resolve(
            self.config.ssl_mode,
            self.config.ssl_root_cert.as_ref(),
            secret.ssl(),
            secret.ssl_cert_path(),
            self.config.environment,
        )
        .map_err(|source| Error::Tls {
            secret: secret_id.to_owned(),
            source,
        })
    }

    fn creds(&self, version: &Version, at: &Endpoint, tls: &TlsSettings, stage: Option<Stage>) -> Credentials {
        let s = &version.secret;
        let mut creds = Credentials::new(
            s.username(),
            s.password().clone(),
            &at.host,
            at.port,
            s.dbname(),
            tls.clone(),
        );
        creds.origin = Origin {
            source: SourceKind::SecretsManager,
            secret_id: Some(self.event.secret_id.clone()),
            version_id: Some(version.id.clone()),
            stage,
            stale: false,
        };
        creds
    }

    /// A failed login to remember, or the error that ends the step when the database itself
    /// cannot be reached: another password against the same host would only spend the budget.
    fn attempt(&self, arn: &str, which: &str, e: ConnectError) -> Result<String, Error> {
        if is_unreachable(&e) {
            return Err(unreachable(arn, e));
        }
        tracing::info!(attempt = which, error = %e.detail, "login failed");
        Ok(format!("{which}: {}", e.detail))
    }
}

impl<S, D: Database, R> Ctx<'_, S, D, R> {
    /// Logs in within what is left of the step's budget.
    async fn login(&self, creds: &Credentials) -> Result<D::Session, ConnectError> {
        self.doing("database login");
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = self.config.connect_timeout.min(left).max(Duration::from_millis(1));
        let started = Instant::now();
        let result = self.db.connect(creds, timeout).await;
        tracing::debug!(
            login_user = %creds.user,
            ok = result.is_ok(),
            duration_ms = started.elapsed().as_millis() as u64,
            "login attempt"
        );
        result
    }
}

fn parse(secret_id: &str, stage: &'static str, value: Option<&SecretString>, child: bool) -> Result<DbSecret, Error> {
    use secrecy::ExposeSecret;
    let secret_error = |source| Error::Secret { stage, source };
    let Some(value) = value else {
        return Err(secret_error(db_credentials::SecretError::Binary {
            secret_id: secret_id.to_owned(),
        }));
    };
    let secret = DbSecret::parse(secret_id, value.expose_secret()).map_err(secret_error)?;
    if child && stage != AWSPREVIOUS {
        secret.check_engine(secret_id).map_err(secret_error)?;
    }
    Ok(secret)
}

fn aws_error(action: &str, secret: &str, source: AwsError) -> Error {
    Error::Aws {
        action: action.to_owned(),
        secret: secret.to_owned(),
        source,
    }
}

fn is_unreachable(e: &ConnectError) -> bool {
    matches!(
        e.kind,
        ConnectErrorKind::Timeout | ConnectErrorKind::Unreachable | ConnectErrorKind::Tls
    )
}

fn unreachable(arn: &str, source: ConnectError) -> Error {
    Error::Unreachable {
        secret: arn.to_owned(),
        source: Box::new(source),
    }
}

fn cannot_log_in(arn: &str, pending: &Version, at: &Endpoint, attempts: &[String]) -> Error {
    Error::CannotLogIn {
        secret: arn.to_owned(),
        user: pending.secret.username().to_owned(),
        host: at.to_string(),
        attempts: attempts.join("; "),
    }
}

fn db_error(e: DbError, statement: Statement, session_user: &str, role: &str, at: &Endpoint) -> Error {
    match e {
        DbError::PermissionDenied(detail) => Error::PermissionDenied {
            user: session_user.to_owned(),
            statement,
            role: role.to_owned(),
            host: at.to_string(),
            detail,
        },
        DbError::Failed(detail) => Error::Database {
            statement,
            user: session_user.to_owned(),
            host: at.to_string(),
            detail,
        },
    }
}

fn record_user(user: &str, at: Option<&Endpoint>) {
    let span = tracing::Span::current();
    span.record("user", user);
    if let Some(at) = at {
        span.record("host", at.to_string().as_str());
    }
}
