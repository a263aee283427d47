//! createSecret: unless the pending version already has a value, copy `AWSCURRENT` with a new
//! password (and, alternating users, the other user) and put it as `AWSPENDING` under the token.

use super::{Ctx, Outcome, Slot, aws_error, is_not_found, parse, record_user};
use crate::{db::Logins, error::Error, failpoint::Failpoint, secrets::SecretsApi, strategy::Strategy};
use db_credentials::{
    Endpoint, SecretError,
    rds::{RdsEndpoints, RdsTarget},
    secrets_manager::{SecretDescription, Stage},
};

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(super) async fn create_secret(&self, desc: &SecretDescription) -> Result<Outcome, Error> {
        let arn = &desc.arn;
        let current = self.read(arn, Slot::Current, None).await?;
        let missing = |key| Error::Secret {
            stage: Slot::Current.label(),
            source: SecretError::MissingKey {
                secret_id: arn.clone(),
                key,
            },
        };
        // A secret no step could ever reach: refuse before writing anything, as AWS's templates do.
        // An RDS identifier (keys, or the tags of an RDS-managed secret) stands in for the host.
        if current.secret.host().is_none() && RdsTarget::find(&current.secret, &desc.tags).is_none() {
            return Err(missing("host"));
        }
        if self.config.strategy == Strategy::AlternatingUsers && current.secret.masterarn().is_none() {
            return Err(missing("masterarn"));
        }

        self.doing("GetSecretValue AWSPENDING");
        match self
            .secrets
            .get_value(arn, Stage::Pending, Some(&self.event.token))
            .await
        {
            Ok(value) => {
                parse(arn, Slot::Pending, value.secret_string.as_ref())?;
                tracing::info!("pending version already holds a value; keeping it");
                return Ok(Outcome::PendingExists);
            }
            // The placeholder RotateSecret made has no value yet: that, and only that, means "generate".
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(aws_error("read AWSPENDING", arn, e)),
        }
        let user = self.config.strategy.pending_username(current.secret.username())?;
        self.doing("GetRandomPassword");
        let password = self
            .secrets
            .random_password(&self.config.password)
            .await
            .map_err(|e| aws_error("generate a password", arn, e))?;
        let mut pending = current.secret.with_password(password);
        if user != current.secret.username() {
            pending = pending.with_username(&user);
        }
        self.doing("PutSecretValue");
        self.secrets
            .put_pending(
                arn,
                &self.event.token,
                &pending.to_secret_string(),
                self.event.rotation_token.as_ref(),
            )
            .await
            .map_err(|e| aws_error("put the pending version", arn, e))?;
        let host = current.secret.host().map(|h| Endpoint {
            host: h.to_owned(),
            port: current.secret.port(),
        });
        record_user(&user, host.as_ref());
        self.failpoints.hit(Failpoint::AfterPutSecretValue)?;
        Ok(Outcome::Created)
    }
}
