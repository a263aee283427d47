//! `Create` and `Update`: the application role, through the master's session.

use crate::{
    db::{Logins, Session, StatementError},
    error::{Error, Statement},
    secrets::SecretsApi,
    steps::{Ctx, Slot, is_unreachable, record_user, statement_error, unreachable},
    strategy::{CLONE_SUFFIX, Strategy},
};
use db_credentials::{rds::RdsEndpoints, secrets_manager::Stage};

/// What `Create`/`Update` did.
pub(crate) struct RoleReport {
    /// The role (the resource's physical id).
    pub role: String,
    /// The answer's `Reason`.
    pub reason: String,
}

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(crate) async fn ensure_app_role(&self, secret_id: &str) -> Result<RoleReport, Error> {
        let current = self.read(secret_id, Slot::Current, None).await?;
        let user = current.secret.username();
        // After an alternating-users rotation AWSCURRENT may name the clone; the resource is the
        // user it stands in for.
        let role = match self.config.strategy {
            Strategy::AlternatingUsers => user
                .strip_suffix(CLONE_SUFFIX)
                .filter(|b| !b.is_empty())
                .unwrap_or(user),
            Strategy::SingleUser => user,
        };
        let here = self.endpoint(secret_id, Slot::Current, &current.secret, None).await?;
        record_user(role, Some(&here));
        let tls = self.tls(secret_id, &current.secret)?;
        // AWSCURRENT's password is the role's only when the secret names the role itself. One
        // login tells whether it already works (then it is left alone).
        let names_role = user == role;
        let works = if names_role {
            match self
                .login(&self.creds(&current, &here, &tls, Some(Stage::Current)))
                .await
            {
                Ok(session) => {
                    drop(session);
                    true
                }
                Err(e) if is_unreachable(&e) => return Err(unreachable(secret_id, e)),
                Err(_) => false,
            }
        } else {
            true
        };
        let (mut session, master_user) = self.master_session(secret_id, &current, &here, &tls).await?;
        self.doing("CREATE ROLE / GRANT (Custom::DatabaseRole)");
        let change = session
            .ensure_app_role(role, names_role.then(|| current.secret.password()), !works)
            .await
            .map_err(|e| match e {
                StatementError::Unsafe { reasons } => Error::AppRoleUnsafe {
                    secret: secret_id.to_owned(),
                    role: role.to_owned(),
                    reasons: reasons.join("; "),
                },
                e => statement_error(e, Statement::AppRole, &master_user, role, &here),
            })?;
        let dbname = current.secret.dbname();
        let reason = if change.changes.is_empty() {
            format!(
                "role {role} already has LOGIN, CONNECT on database {dbname} and its own schema {role}; nothing changed"
            )
        } else {
            format!(
                "role {role} in database {dbname} on {here}: {}",
                change.changes.join("; ")
            )
        };
        tracing::info!(
            created = change.created,
            changed = !change.changes.is_empty(),
            "application role in place"
        );
        Ok(RoleReport {
            role: role.to_owned(),
            reason,
        })
    }
}
