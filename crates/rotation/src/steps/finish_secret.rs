//! finishSecret: move `AWSCURRENT` to the token, once its credentials are seen to log in; the old
//! version becomes `AWSPREVIOUS`. `AWSPENDING` stays only on the new current version, which the
//! service accepts as finished.

use super::{Ctx, Outcome, Slot, aws_error, record_user};
use crate::{db::Logins, error::Error, failpoint::Failpoint, secrets::SecretsApi};
use db_credentials::{
    rds::RdsEndpoints,
    secrets_manager::{SecretDescription, Stage},
};

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(super) async fn finish_secret(&self, desc: &SecretDescription) -> Result<Outcome, Error> {
        let (arn, token) = (&desc.arn, &self.event.token);
        let current = desc.version_with(Stage::Current);
        self.check_pending_logs_in(desc, current).await?;
        self.failpoints.hit(Failpoint::BeforeUpdateStage)?;
        self.doing("UpdateSecretVersionStage");
        if let Err(e) = self
            .secrets
            .update_stage(arn, Stage::Current, Some(token), current)
            .await
        {
            // A concurrent finishSecret may have moved it between our DescribeSecret and this call.
            let now = self.secrets.describe(arn).await;
            if now.is_ok_and(|d| d.has_stage(token, Stage::Current)) {
                tracing::info!("AWSCURRENT was moved by a concurrent finishSecret");
                return Ok(Outcome::FinishedConcurrently);
            }
            return Err(aws_error("move AWSCURRENT", arn, e));
        }
        tracing::info!(previous = current.unwrap_or_default(), "AWSCURRENT moved");
        self.failpoints.hit(Failpoint::AfterUpdateStage)?;
        Ok(Outcome::Finished)
    }

    /// One login with the pending credentials: every client reads AWSCURRENT, so moving it to
    /// credentials the database refuses would be an outage (a setSecret undone, a password changed
    /// by hand since testSecret, or steps run out of order). In the single-user window this is the
    /// login testSecret just proved; nothing else is run.
    async fn check_pending_logs_in(&self, desc: &SecretDescription, current: Option<&str>) -> Result<(), Error> {
        let (arn, token) = (&desc.arn, &self.event.token);
        let pending = self.read(arn, Slot::Pending, Some(token)).await?;
        let at = self
            .endpoint(arn, Slot::Pending, &pending.secret, Some(&desc.tags))
            .await?;
        record_user(pending.secret.username(), Some(&at));
        let tls = self.tls(arn, &pending.secret)?;
        match self.login(&self.creds(&pending, &at, &tls, Some(Stage::Pending))).await {
            Ok(session) => {
                drop(session);
                Ok(())
            }
            Err(e) => Err(Error::FinishRefused {
                secret: arn.clone(),
                token: token.clone(),
                current: current.unwrap_or("none").to_owned(),
                source: Box::new(e),
            }),
        }
    }
}
