//! finishSecret: move `AWSCURRENT` to the token; the old version becomes `AWSPREVIOUS`.
//! `AWSPENDING` stays only on the new current version, which the service accepts as finished.

use super::{Ctx, Outcome, aws_error};
use crate::{db::Logins, error::Error, failpoint::Failpoint, secrets::SecretsApi};
use db_credentials::{
    rds::RdsEndpoints,
    secrets_manager::{SecretDescription, Stage},
};

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(super) async fn finish_secret(&self, desc: &SecretDescription) -> Result<Outcome, Error> {
        let (arn, token) = (&desc.arn, &self.event.token);
        let current = desc.version_with(Stage::Current);
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
}
