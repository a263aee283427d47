//! The four steps, one file each, every one preceded by the stage checks of AWS's templates
//! ([`Ctx::check_stages`]). They read like the protocol; the plumbing shared by all of them —
//! reading a version, finding its database, deciding TLS, logging in within the step's budget — is
//! here, on [`Ctx`].

mod create_secret;
mod finish_secret;
mod set_secret;
mod test_secret;
#[cfg(test)]
mod tests;

use crate::{
    config::Config,
    db::{Logins, ServerMessage, StatementError},
    error::{Error, Statement},
    event::{RotationEvent, Step},
    failpoint::Failpoints,
    secrets::SecretsApi,
};
use db_credentials::{
    ConnectError, ConnectErrorKind, Credentials, DbSecret, Endpoint, EndpointError, Origin, SourceKind, TlsSettings,
    aws::{AwsError, AwsErrorKind},
    rds::RdsEndpoints,
    resolve_endpoint,
    secrets_manager::{SecretDescription, Stage},
};
use postgres_protocol::escape::escape_identifier;
use secrecy::SecretString;
use std::{
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

/// Which version a step reads: one of the rotated secret's stages, or the master secret's
/// `AWSCURRENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The rotated secret's `AWSCURRENT`.
    Current,
    /// The rotated secret's `AWSPENDING`.
    Pending,
    /// The rotated secret's `AWSPREVIOUS`.
    Previous,
    /// The `AWSCURRENT` of the secret `masterarn` names.
    Master,
}

impl Slot {
    /// The stage to ask Secrets Manager for.
    fn stage(self) -> Stage {
        match self {
            Self::Current | Self::Master => Stage::Current,
            Self::Pending => Stage::Pending,
            Self::Previous => Stage::Previous,
        }
    }

    /// How errors name it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Master => "master secret's AWSCURRENT",
            other => other.stage().label(),
        }
    }

    /// Versions the rotation writes from must name a Postgres engine; an old `AWSPREVIOUS` and a
    /// master secret (RDS-managed ones hold only a user and a password) need not.
    fn checks_engine(self) -> bool {
        matches!(self, Self::Current | Self::Pending)
    }
}

/// One version of a secret, parsed.
pub(crate) struct Version {
    pub(crate) id: String,
    pub(crate) secret: DbSecret,
}

/// Everything a step works with.
pub(crate) struct Ctx<'a, S, L, R> {
    pub config: &'a Config,
    pub secrets: &'a S,
    pub logins: &'a L,
    pub rds: &'a R,
    pub failpoints: &'a Failpoints,
    pub event: &'a RotationEvent,
    pub deadline: Instant,
    /// What the step is waiting for, reported if the step runs out of time.
    pub progress: Mutex<&'static str>,
}

impl<S, L, R> Ctx<'_, S, L, R> {
    pub(crate) fn doing(&self, what: &'static str) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = what;
    }

    /// What the step was waiting for when it ran out of time.
    pub(crate) fn progress(&self) -> &'static str {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    /// The event's step, after the stage checks.
    pub(crate) async fn run(&self) -> Result<Outcome, Error> {
        let Some(desc) = self.check_stages().await? else {
            return Ok(Outcome::AlreadyCurrent);
        };
        match self.event.step {
            Step::Create => self.create_secret(&desc).await,
            Step::Set => self.set_secret(&desc).await,
            Step::Test => self.test_secret(&desc).await,
            Step::Finish => self.finish_secret(&desc).await,
        }
    }

    /// The stage checks every step makes first, with AWS's meaning. `Ok(None)` when the token is
    /// already `AWSCURRENT` and the step has nothing to do.
    pub(crate) async fn check_stages(&self) -> Result<Option<SecretDescription>, Error> {
        let (secret_id, token) = (&self.event.secret_id, &self.event.token);
        self.doing("DescribeSecret");
        let mut desc = self
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
            .version_with(Stage::Pending)
            .filter(|v| *v != token.as_str() && !desc.has_stage(v, Stage::Current));
        let refuse = |fallback: Error| match foreign {
            Some(other) => Error::ForeignPending {
                secret: secret(),
                token: token.clone(),
                pending: other.to_owned(),
            },
            None => fallback,
        };
        if !desc.versions.contains_key(token) {
            return Err(refuse(Error::TokenNotAVersion {
                secret: secret(),
                token: token.clone(),
            }));
        }
        if desc.has_stage(token, Stage::Current) {
            tracing::info!("version is already AWSCURRENT; nothing to do");
            return Ok(None);
        }
        if !desc.has_stage(token, Stage::Pending) {
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

    /// Reads and parses a version.
    pub(crate) async fn read(&self, secret_id: &str, slot: Slot, version: Option<&str>) -> Result<Version, Error> {
        self.doing(slot.label());
        let value = self
            .secrets
            .get_value(secret_id, slot.stage(), version)
            .await
            .map_err(|e| aws_error(&format!("read {}", slot.label()), secret_id, e))?;
        let secret = parse(secret_id, slot, value.secret_string.as_ref())?;
        Ok(Version {
            id: value.version_id,
            secret,
        })
    }

    /// Where a version's database is (db-credentials' one rule: the secret's host, else the RDS
    /// API). `tags` from a DescribeSecret already made, or `None` to read them when needed.
    pub(crate) async fn endpoint(
        &self,
        secret_id: &str,
        slot: Slot,
        secret: &DbSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<Endpoint, Error> {
        if secret.host().is_none() {
            self.doing("RDS endpoint lookup");
        }
        resolve_endpoint(self.secrets, self.rds, secret_id, secret, tags)
            .await
            .map_err(|e| match e {
                EndpointError::NoHost { .. } => Error::NoHost {
                    secret: secret_id.to_owned(),
                    stage: slot.label(),
                },
                EndpointError::Aws { error, .. } => aws_error("look up the RDS endpoint", secret_id, error),
            })
    }

    /// TLS for every login to this database: decided from the current version (a pending or
    /// previous version, or the master secret, cannot weaken it).
    pub(crate) fn tls(&self, secret_id: &str, secret: &DbSecret) -> Result<TlsSettings, Error> {
        self.config.tls.settings(Some(secret)).map_err(|source| Error::Tls {
            secret: secret_id.to_owned(),
            source,
        })
    }

    pub(crate) fn creds(
        &self,
        version: &Version,
        at: &Endpoint,
        tls: &TlsSettings,
        stage: Option<Stage>,
    ) -> Credentials {
        let origin = Origin {
            source: SourceKind::SecretsManager,
            secret_id: Some(self.event.secret_id.clone()),
            version_id: Some(version.id.clone()),
            stage,
            stale: false,
        };
        Credentials::from_secret(&version.secret, at, tls.clone(), origin)
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

    /// Logs in within what is left of the step's budget.
    pub(crate) async fn login(&self, creds: &Credentials) -> Result<L::Session, ConnectError> {
        self.doing("database login");
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = self.config.connect_timeout.min(left).max(Duration::from_millis(1));
        let started = Instant::now();
        let result = self.logins.connect(creds, timeout).await;
        tracing::debug!(
            login_user = %creds.user,
            ok = result.is_ok(),
            duration_ms = started.elapsed().as_millis() as u64,
            "login attempt"
        );
        result
    }
}

fn parse(secret_id: &str, slot: Slot, value: Option<&SecretString>) -> Result<DbSecret, Error> {
    use secrecy::ExposeSecret;
    let secret_error = |source| Error::Secret {
        stage: slot.label(),
        source,
    };
    let Some(value) = value else {
        return Err(secret_error(db_credentials::SecretError::Binary {
            secret_id: secret_id.to_owned(),
        }));
    };
    let secret = DbSecret::parse(secret_id, value.expose_secret()).map_err(secret_error)?;
    if slot.checks_engine() {
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

fn is_not_found(e: &AwsError) -> bool {
    e.kind == AwsErrorKind::NotFound
}

pub(crate) fn is_unreachable(e: &ConnectError) -> bool {
    matches!(
        e.kind,
        ConnectErrorKind::Timeout | ConnectErrorKind::Unreachable | ConnectErrorKind::Tls
    )
}

pub(crate) fn unreachable(arn: &str, source: ConnectError) -> Error {
    Error::Unreachable {
        secret: arn.to_owned(),
        source: Box::new(source),
    }
}

pub(crate) fn statement_error(
    e: StatementError,
    statement: Statement,
    session_user: &str,
    role: &str,
    at: &Endpoint,
) -> Error {
    match e {
        StatementError::PermissionDenied { on_role, server } => Error::PermissionDenied {
            user: session_user.to_owned(),
            statement,
            role: role.to_owned(),
            host: at.to_string(),
            fix: permission_fix(statement, session_user, &on_role, &server),
            detail: server.to_string(),
        },
        e @ StatementError::Unsafe { .. } => Error::Database {
            statement,
            user: session_user.to_owned(),
            host: at.to_string(),
            detail: e.to_string(),
        },
        StatementError::Failed(detail) => Error::Database {
            statement,
            user: session_user.to_owned(),
            host: at.to_string(),
            detail,
        },
    }
}

/// What to do about a refused statement. Postgres 16+ lets `CREATEROLE` act only on roles the
/// acting role holds ADMIN OPTION on (it gets it for roles it creates): a role someone else
/// created (restored from a dump, made by another administrator) needs it granted, and the
/// statement that does it is the most useful thing the message can carry.
fn permission_fix(statement: Statement, session_user: &str, on_role: &str, server: &ServerMessage) -> String {
    if server.wants_admin_option() && !on_role.is_empty() {
        let (role, user) = (escape_identifier(on_role), escape_identifier(session_user));
        return format!(
            "{session_user} lacks ADMIN OPTION on role {on_role} (since Postgres 16 CREATEROLE reaches only roles it created or holds ADMIN OPTION on): as a role that has ADMIN OPTION on {on_role} (whoever created it, or a superuser), run GRANT {role} TO {user} WITH ADMIN OPTION, then retry the rotation"
        );
    }
    statement.hint().to_owned()
}

pub(crate) fn record_user(user: &str, at: Option<&Endpoint>) {
    let span = tracing::Span::current();
    span.record("user", user);
    if let Some(at) = at {
        span.record("host", at.to_string().as_str());
    }
}
