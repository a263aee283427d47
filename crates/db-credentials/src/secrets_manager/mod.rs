//! Secrets Manager as both functions see it: the stages of a secret's versions ([`Stage`]), what
//! DescribeSecret and GetSecretValue say, and [`ReadSecrets`], the reads behind a trait so the
//! rules built on them (the credential cache, the rotation steps) can be unit-tested against an
//! exact in-memory model (`model`, behind the `test-util` feature) instead of an emulator.
//! The rotation function extends the trait with the writes it makes.

#[cfg(any(test, feature = "test-util"))]
pub mod model;

use crate::aws::AwsError;
use secrecy::SecretString;
use std::{collections::HashMap, fmt, future::Future};

/// `AWSCURRENT`, for code that reads raw stage lists (DescribeSecret's).
pub const AWSCURRENT: &str = Stage::Current.label();
/// `AWSPENDING`, likewise.
pub const AWSPENDING: &str = Stage::Pending.label();
/// `AWSPREVIOUS`, likewise.
pub const AWSPREVIOUS: &str = Stage::Previous.label();

/// A staging label of the rotation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `AWSCURRENT`: what every reader uses.
    Current,
    /// `AWSPENDING`: the version a rotation is making. Readers use it only after the database
    /// refused the current value, which is what single-user rotation looks like between setSecret
    /// and finishSecret.
    Pending,
    /// `AWSPREVIOUS`: the version before the current one.
    Previous,
}

impl Stage {
    /// The label as Secrets Manager spells it.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Pending => "AWSPENDING",
            Self::Previous => "AWSPREVIOUS",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

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
    pub fn version_with(&self, stage: Stage) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage.label()))
            .map(|(v, _)| v.as_str())
    }

    /// Whether `version` holds `stage`.
    pub fn has_stage(&self, version: &str, stage: Stage) -> bool {
        self.versions
            .get(version)
            .is_some_and(|stages| stages.iter().any(|s| s == stage.label()))
    }
}

/// GetRandomPassword's parameters, with the defaults of AWS's rotation templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// `PasswordLength` (1–4096; default 32).
    pub length: u32,
    /// `ExcludeCharacters` (default `:/@"'\`).
    pub exclude_characters: String,
    /// `ExcludeNumbers`.
    pub exclude_numbers: bool,
    /// `ExcludePunctuation`.
    pub exclude_punctuation: bool,
    /// `ExcludeUppercase`.
    pub exclude_uppercase: bool,
    /// `ExcludeLowercase`.
    pub exclude_lowercase: bool,
    /// `RequireEachIncludedType` (default true).
    pub require_each_included_type: bool,
}

impl PasswordPolicy {
    /// Default length.
    pub const DEFAULT_LENGTH: u32 = 32;
    /// Default excluded characters: `:` breaks `.pgpass`, `/ @` break URLs, quotes and backslash
    /// break naive quoting in clients.
    pub const DEFAULT_EXCLUDE_CHARACTERS: &str = ":/@\"'\\";
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: Self::DEFAULT_LENGTH,
            exclude_characters: Self::DEFAULT_EXCLUDE_CHARACTERS.to_owned(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            require_each_included_type: true,
        }
    }
}

/// The reads both functions make.
pub trait ReadSecrets: Send + Sync {
    /// DescribeSecret: rotation flag, versions and their stages, tags.
    fn describe(&self, secret_id: &str) -> impl Future<Output = Result<SecretDescription, AwsError>> + Send;

    /// GetSecretValue with an explicit `VersionStage` (never unqualified: moto's default version
    /// can be stale) and, when given, the `VersionId` that must hold it.
    fn get_value(
        &self,
        secret_id: &str,
        stage: Stage,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<SecretValue, AwsError>> + Send;
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

    /// The underlying client (the rotation function's writes use it).
    pub fn client(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }
}

impl ReadSecrets for SdkSecrets {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, AwsError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecret", &e))?;
        Ok(SecretDescription {
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
        })
    }

    async fn get_value(
        &self,
        secret_id: &str,
        stage: Stage,
        version_id: Option<&str>,
    ) -> Result<SecretValue, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage.label())
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", &e))?;
        Ok(SecretValue {
            version_id: out.version_id().unwrap_or_default().to_owned(),
            secret_string: out.secret_string().map(|s| SecretString::from(s.to_owned())),
        })
    }
}
