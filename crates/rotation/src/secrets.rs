//! What rotation asks of Secrets Manager: the reads both functions make ([`ReadSecrets`], from
//! db-credentials) and the three writes only rotation makes, behind [`SecretsApi`]. The AWS SDK in
//! production ([`SdkSecrets`]); the exact in-memory model of db-credentials (`SecretsModel`) in
//! unit tests.

use db_credentials::{
    aws::{AwsError, AwsErrorKind},
    secrets_manager::{AWSPENDING, PasswordPolicy, ReadSecrets, SdkSecrets, Stage},
};
use secrecy::{ExposeSecret, SecretString};
use std::{future::Future, time::SystemTime};

/// The reads plus rotation's writes.
pub trait SecretsApi: ReadSecrets {
    /// PutSecretValue of `value` as version `token` with stage `AWSPENDING`, passing the
    /// event's `RotationToken` through.
    fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// UpdateSecretVersionStage: attach `stage` to `move_to` and/or detach it from `remove_from`.
    fn update_stage(
        &self,
        secret_id: &str,
        stage: Stage,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// GetRandomPassword with the configured knobs.
    fn random_password(&self, policy: &PasswordPolicy) -> impl Future<Output = Result<SecretString, AwsError>> + Send;

    /// ListSecretVersionIds: when version `version_id` was created (`None` when the service
    /// does not list it, or gives no date). Revoke takes the moment a password changed from it.
    fn version_created(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> impl Future<Output = Result<Option<SystemTime>, AwsError>> + Send;
}

impl SecretsApi for SdkSecrets {
    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> Result<(), AwsError> {
        self.client()
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value.expose_secret())
            .version_stages(AWSPENDING)
            .set_rotation_token(rotation_token.map(|t| t.expose_secret().to_owned()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutSecretValue", &e))?;
        Ok(())
    }

    async fn update_stage(
        &self,
        secret_id: &str,
        stage: Stage,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client()
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage.label())
            .set_move_to_version_id(move_to.map(str::to_owned))
            .set_remove_from_version_id(remove_from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateSecretVersionStage", &e))?;
        Ok(())
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, AwsError> {
        let out = self
            .client()
            .get_random_password()
            .password_length(i64::from(policy.length))
            .set_exclude_characters(Some(policy.exclude_characters.clone()).filter(|c| !c.is_empty()))
            .exclude_numbers(policy.exclude_numbers)
            .exclude_punctuation(policy.exclude_punctuation)
            .exclude_uppercase(policy.exclude_uppercase)
            .exclude_lowercase(policy.exclude_lowercase)
            .require_each_included_type(policy.require_each_included_type)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetRandomPassword", &e))?;
        out.random_password()
            .filter(|p| !p.is_empty())
            .map(|p| SecretString::from(p.to_owned()))
            .ok_or_else(|| {
                AwsError::new(
                    AwsErrorKind::Other,
                    "GetRandomPassword",
                    "the response holds no password",
                )
            })
    }

    async fn version_created(&self, secret_id: &str, version_id: &str) -> Result<Option<SystemTime>, AwsError> {
        let mut next = None;
        loop {
            let out = self
                .client()
                .list_secret_version_ids()
                .secret_id(secret_id)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListSecretVersionIds", &e))?;
            if let Some(v) = out.versions().iter().find(|v| v.version_id() == Some(version_id)) {
                return Ok(v.created_date().and_then(|d| SystemTime::try_from(*d).ok()));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
impl SecretsApi for db_credentials::secrets_manager::model::SecretsModel {
    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> Result<(), AwsError> {
        Self::put_pending(self, secret_id, token, value, rotation_token).await
    }

    async fn update_stage(
        &self,
        secret_id: &str,
        stage: Stage,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), AwsError> {
        Self::update_stage(self, secret_id, stage, move_to, remove_from).await
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, AwsError> {
        Self::random_password(self, policy).await
    }

    async fn version_created(&self, _secret_id: &str, _version_id: &str) -> Result<Option<SystemTime>, AwsError> {
        Ok(None)
    }
}
