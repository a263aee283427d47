//! setSecret: make the database accept the pending password, after checking the pending version
//! names the right user and host (before any connection to it). Single user: the user changes its
//! own password (or the master does, where it may not); alternating users: the master creates the
//! other user, or sets its password.

use super::{
    Ctx, Outcome, Slot, Version, is_not_found, is_unreachable, parse, record_user, statement_error, unreachable,
};
use crate::{
    db::{Logins, RoleChange, Session, StatementError},
    error::{Error, Statement},
    failpoint::Failpoint,
    secrets::SecretsApi,
    strategy::{CLONE_SUFFIX, Strategy},
};
use db_credentials::{
    Endpoint, PendingMismatch, TlsSettings,
    pending::{self, Login},
    rds::RdsEndpoints,
    secrets_manager::{SecretDescription, Stage},
};

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(super) async fn set_secret(&self, desc: &SecretDescription) -> Result<Outcome, Error> {
        let arn = &desc.arn;
        let current = self.read(arn, Slot::Current, None).await?;
        let pending = self.read(arn, Slot::Pending, Some(&self.event.token)).await?;
        // The guard is db-credentials' (the items API applies it to AWSPENDING too): the user this
        // strategy may change, checked before any endpoint is resolved, then the same host, port
        // and database.
        let expected = self.config.strategy.pending_username(current.secret.username())?;
        if let Err(PendingMismatch::User { pending: user, .. }) =
            pending::check_pending_user(pending.secret.username(), std::slice::from_ref(&expected))
        {
            return Err(Error::UserMismatch {
                secret: arn.clone(),
                pending: user,
                expected,
            });
        }
        let here = self
            .endpoint(arn, Slot::Current, &current.secret, Some(&desc.tags))
            .await?;
        let there = self
            .endpoint(arn, Slot::Pending, &pending.secret, Some(&desc.tags))
            .await?;
        if let Err(PendingMismatch::Database { pending, current }) =
            pending::check_pending_database(&login(&current, &here), &login(&pending, &there))
        {
            return Err(Error::HostMismatch {
                secret: arn.clone(),
                pending,
                current,
            });
        }
        record_user(pending.secret.username(), Some(&here));
        // Every login to this database uses current's TLS settings: a pending or previous version
        // cannot weaken them.
        let tls = self.tls(arn, &current.secret)?;
        let mut attempts = Vec::new();
        match self
            .login(&self.creds(&pending, &here, &tls, Some(Stage::Pending)))
            .await
        {
            Ok(_) => {
                tracing::info!("pending credentials already log in; password already set");
                return Ok(Outcome::PendingAlreadyWorks);
            }
            Err(e) => attempts.push(self.attempt(arn, "pending", e)?),
        }
        match self.config.strategy {
            Strategy::SingleUser => {
                self.set_own_password(arn, &current, &pending, &here, &tls, attempts)
                    .await
            }
            Strategy::AlternatingUsers => self.set_with_master(arn, &current, &pending, &here, &tls).await,
        }
    }

    /// Single user: log in as current, else previous, and change our own password.
    async fn set_own_password(
        &self,
        arn: &str,
        current: &Version,
        pending: &Version,
        here: &Endpoint,
        tls: &TlsSettings,
        mut attempts: Vec<String>,
    ) -> Result<Outcome, Error> {
        let mut session = match self.login(&self.creds(current, here, tls, Some(Stage::Current))).await {
            Ok(s) => s,
            Err(e) => {
                attempts.push(self.attempt(arn, "current", e)?);
                match self.previous(arn, pending, here).await {
                    Err(why) => {
                        attempts.push(format!("previous: {why}"));
                        return Err(cannot_log_in(arn, pending, here, &attempts));
                    }
                    Ok(previous) => match self.login(&self.creds(&previous, here, tls, None)).await {
                        Ok(s) => s,
                        Err(e) => {
                            attempts.push(self.attempt(arn, "previous", e)?);
                            return Err(cannot_log_in(arn, pending, here, &attempts));
                        }
                    },
                }
            }
        };
        let user = pending.secret.username();
        self.doing("ALTER ROLE");
        match session.set_password(user, pending.secret.password()).await {
            Ok(()) => {}
            // Under rds.restrict_password_commands a user may not change its own password; a secret
            // that names a master (AWS's #50, #64) lets the master do it.
            Err(StatementError::PermissionDenied { .. }) if current.secret.masterarn().is_some() => {
                drop(session);
                tracing::info!("may not change its own password; using the master secret");
                let (mut master_session, master_user) = self.master_session(arn, current, here, tls).await?;
                self.doing("ALTER ROLE (master)");
                master_session
                    .set_password(user, pending.secret.password())
                    .await
                    .map_err(|e| statement_error(e, Statement::MasterSetPassword, &master_user, user, here))?;
            }
            Err(e) => return Err(statement_error(e, Statement::SetOwnPassword, user, user, here)),
        }
        tracing::info!("password set");
        self.failpoints.hit(Failpoint::AfterSetPassword)?;
        Ok(Outcome::PasswordSet)
    }

    /// Alternating users: current must log in; then the master creates the other user, or sets
    /// its password.
    async fn set_with_master(
        &self,
        arn: &str,
        current: &Version,
        pending: &Version,
        here: &Endpoint,
        tls: &TlsSettings,
    ) -> Result<Outcome, Error> {
        match self.login(&self.creds(current, here, tls, Some(Stage::Current))).await {
            Ok(session) => drop(session),
            Err(e) if is_unreachable(&e) => return Err(unreachable(arn, e)),
            Err(e) => {
                return Err(Error::CurrentLoginFailed {
                    secret: arn.to_owned(),
                    source: Box::new(e),
                });
            }
        }
        let (mut session, master_user) = self.master_session(arn, current, here, tls).await?;
        let (user, base) = (pending.secret.username(), current.secret.username());
        let password = pending.secret.password();
        let change = if user.strip_suffix(CLONE_SUFFIX) == Some(base) {
            self.doing("CREATE/ALTER ROLE (clone)");
            session.ensure_clone(user, base, password).await
        } else {
            // Back to the user itself: the clone is what is current.
            self.doing("ALTER ROLE (master)");
            session
                .set_password(user, password)
                .await
                .map(|()| RoleChange::PasswordSet { repaired: Vec::new() })
        };
        let change = change.map_err(|e| match e {
            StatementError::Unsafe { reasons } => Error::UnsafeClone {
                secret: arn.to_owned(),
                clone: user.to_owned(),
                base: base.to_owned(),
                reasons: reasons.join("; "),
            },
            e => statement_error(e, Statement::CreateOrSetPassword, &master_user, user, here),
        })?;
        match &change {
            RoleChange::Created => {
                tracing::info!(member_of = base, "alternate user created");
                self.failpoints.hit(Failpoint::AfterCreateClone)?;
            }
            RoleChange::PasswordSet { repaired } if !repaired.is_empty() => {
                tracing::info!(
                    repaired = repaired.join(", "),
                    "password set; the alternate user lacked these, re-applied"
                );
            }
            RoleChange::PasswordSet { .. } => tracing::info!("password set"),
        }
        self.failpoints.hit(Failpoint::AfterSetPassword)?;
        Ok(match change {
            RoleChange::Created => Outcome::UserCreated,
            RoleChange::PasswordSet { .. } => Outcome::PasswordSet,
        })
    }

    /// A session as the user of the secret `masterarn` names, on the current version's host and
    /// in its database, with the current version's TLS settings (same host, so the same rules:
    /// neither the master secret nor a pending version can weaken them). Returns the session and
    /// the master's user name.
    pub(crate) async fn master_session(
        &self,
        arn: &str,
        current: &Version,
        here: &Endpoint,
        tls: &TlsSettings,
    ) -> Result<(L::Session, String), Error> {
        let master_arn = current
            .secret
            .masterarn()
            .ok_or_else(|| Error::NoMasterArn { secret: arn.to_owned() })?;
        let master = self.read(master_arn, Slot::Master, None).await?;
        let master_at = self.endpoint(master_arn, Slot::Master, &master.secret, None).await?;
        if master_at.host != here.host {
            return Err(Error::MasterHostMismatch {
                secret: arn.to_owned(),
                master: master_arn.to_owned(),
                current: here.host.clone(),
                master_host: master_at.host,
            });
        }
        // The master logs into the child's database (AWS's PR #122), where its grants are made.
        let mut creds = self.creds(&master, &master_at, tls, None);
        creds.dbname = current.secret.dbname().to_owned();
        match self.login(&creds).await {
            Ok(session) => Ok((session, master.secret.username().to_owned())),
            Err(e) if is_unreachable(&e) => Err(unreachable(arn, e)),
            Err(e) => Err(Error::MasterLoginFailed {
                master: master_arn.to_owned(),
                source: Box::new(e),
            }),
        }
    }

    /// AWSPREVIOUS, if it can be used: it must exist, parse, and name the pending user on the
    /// same host. `Err` says why not; it is reported with the other attempts and never hides them.
    async fn previous(&self, arn: &str, pending: &Version, here: &Endpoint) -> Result<Version, String> {
        self.doing("GetSecretValue AWSPREVIOUS");
        let value = match self.secrets.get_value(arn, Stage::Previous, None).await {
            Ok(v) => v,
            Err(e) if is_not_found(&e) => return Err("no AWSPREVIOUS version".into()),
            Err(e) => return Err(format!("AWSPREVIOUS could not be read ({e})")),
        };
        let secret = parse(arn, Slot::Previous, value.secret_string.as_ref())
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
}

fn login<'a>(version: &'a Version, at: &'a Endpoint) -> Login<'a> {
    Login {
        user: version.secret.username(),
        endpoint: at,
        dbname: version.secret.dbname(),
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
