//! The two Secrets Manager reads the credential cache makes, behind a trait so the cache's
//! rules can be unit-tested against a plain in-memory fake.

use crate::aws::AwsError;
use secrecy::SecretString;
use std::{collections::HashMap, fmt, future::Future};

/// The stage every reader uses.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The stage of a rotation's new version.
pub const AWSPENDING: &str = "AWSPENDING";
/// The stage of the version before the current one.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// One version of a secret.
#[derive(Clone)]
pub struct SecretValue {
    /// Its version id.
    pub version_id: String,
    /// Its string, which is secret as a whole.
    pub secret_string: Option<SecretString>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("version_id", &self.version_id)
            .finish_non_exhaustive()
    }
}

/// What DescribeSecret says.
#[derive(Debug, Clone, Default)]
pub struct SecretDescription {
    /// Full ARN.
    pub arn: String,
    /// `RotationEnabled`, when the service reports it.
    pub rotation_enabled: Option<bool>,
    /// Version id to its stages.
    pub versions: HashMap<String, Vec<String>>,
    /// Tags (RDS-managed secrets carry `aws:rds:primaryDBInstanceArn` and friends).
    pub tags: Vec<(String, String)>,
}

impl SecretDescription {
    /// The version holding `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(v, _)| v.as_str())
    }

    /// Whether `version` holds `stage`.
    pub fn has_stage(&self, version: &str, stage: &str) -> bool {
        self.versions
            .get(version)
            .is_some_and(|stages| stages.iter().any(|s| s == stage))
    }
}

/// The reads the credential cache needs.
pub trait SecretsBackend: Send + Sync {
    /// DescribeSecret.
    fn describe(&self, secret_id: &str) -> impl Future<Output = Result<SecretDescription, AwsError>> + Send;
    /// GetSecretValue with an explicit `VersionStage` (never unqualified: moto's default can be stale).
    fn get_by_stage(&self, secret_id: &str, stage: &str) -> impl Future<Output = Result<SecretValue, AwsError>> + Send;
}

/// The AWS SDK client.
#[derive(Debug, Clone)]
pub struct SdkSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl SdkSecrets {
    /// Wraps a client.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }
}

/// Converts the SDK's DescribeSecret output.
pub fn description_from_sdk(
    out: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
) -> SecretDescription {
    SecretDescription {
        arn: out.arn().unwrap_or_default().to_owned(),
        rotation_enabled: out.rotation_enabled(),
        versions: out
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        tags: out
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    }
}

impl SecretsBackend for SdkSecrets {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, AwsError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecret", &e))?;
        Ok(description_from_sdk(&out))
    }

    async fn get_by_stage(&self, secret_id: &str, stage: &str) -> Result<SecretValue, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", &e))?;
        Ok(SecretValue {
            version_id: out.version_id().unwrap_or_default().to_owned(),
            secret_string: out.secret_string().map(|s| SecretString::from(s.to_owned())),
        })
    }
}
