//! testSecret: log in with the pending credentials and run `TEST_QUERY` (rolled back).

use super::{Ctx, Outcome, Slot, is_unreachable, record_user, statement_error, unreachable};
use crate::{
    db::{Logins, Session},
    error::{Error, Statement},
    secrets::SecretsApi,
};
use db_credentials::{
    rds::RdsEndpoints,
    secrets_manager::{SecretDescription, Stage},
};

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(super) async fn test_secret(&self, desc: &SecretDescription) -> Result<Outcome, Error> {
        let arn = &desc.arn;
        let pending = self.read(arn, Slot::Pending, Some(&self.event.token)).await?;
        let at = self
            .endpoint(arn, Slot::Pending, &pending.secret, Some(&desc.tags))
            .await?;
        record_user(pending.secret.username(), Some(&at));
        let tls = self.tls(arn, &pending.secret)?;
        let mut session = match self.login(&self.creds(&pending, &at, &tls, Some(Stage::Pending))).await {
            Ok(s) => s,
            Err(e) if is_unreachable(&e) => return Err(unreachable(arn, e)),
            Err(e) => {
                return Err(Error::PendingLoginFailed {
                    secret: arn.clone(),
                    source: Box::new(e),
                });
            }
        };
        self.doing("TEST_QUERY");
        let user = pending.secret.username();
        session
            .probe(&self.config.test_query)
            .await
            .map_err(|e| statement_error(e, Statement::Probe, user, user, &at))?;
        Ok(Outcome::Tested)
    }
}
