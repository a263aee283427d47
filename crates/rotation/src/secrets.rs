//! The five Secrets Manager calls rotation makes, behind [`SecretsApi`]: the AWS SDK in production
//! ([`SdkSecretsApi`]) and an exact in-memory model in unit tests (`model::SecretsModel`).

use crate::password::PasswordPolicy;
use aws_sdk_secretsmanager::Client;
use db_credentials::aws::AwsError;
use secrecy::{ExposeSecret, SecretString};
use std::future::Future;

pub use db_credentials::secrets_manager::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, SecretDescription, SecretValue};

/// What rotation asks of Secrets Manager.
pub trait SecretsApi: Send + Sync {
    /// DescribeSecret: rotation flag, versions and their stages, tags.
    fn describe(&self, secret_id: &str) -> impl Future<Output = Result<SecretDescription, AwsError>> + Send;

    /// GetSecretValue with an explicit `VersionStage` (never unqualified: moto's default version
    /// can be stale) and, when given, the `VersionId` that must hold it.
    fn get_value(
        &self,
        secret_id: &str,
        stage: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<SecretValue, AwsError>> + Send;

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
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// GetRandomPassword with the configured knobs.
    fn random_password(&self, policy: &PasswordPolicy) -> impl Future<Output = Result<SecretString, AwsError>> + Send;
}

/// [`SecretsApi`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkSecretsApi {
    client: Client,
}

impl SdkSecretsApi {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl SecretsApi for SdkSecretsApi {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, AwsError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecret", &e))?;
        Ok(db_credentials::secrets_manager::description_from_sdk(&out))
    }

    async fn get_value(&self, secret_id: &str, stage: &str, version_id: Option<&str>) -> Result<SecretValue, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", &e))?;
        Ok(SecretValue {
            version_id: out.version_id().unwrap_or_default().to_owned(),
            secret_string: out.secret_string().map(|s| SecretString::from(s.to_owned())),
        })
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> Result<(), AwsError> {
        self.client
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
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(move_to.map(str::to_owned))
            .set_remove_from_version_id(remove_from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateSecretVersionStage", &e))?;
        Ok(())
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, AwsError> {
        let out = self
            .client
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
                    db_credentials::aws::AwsErrorKind::Other,
                    "GetRandomPassword",
                    "the response holds no password",
                )
            })
    }
}
