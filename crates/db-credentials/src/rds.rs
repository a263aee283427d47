//! The RDS API: host and port for RDS-managed secrets (which hold only a username and a
//! password), and IAM authentication tokens.

use crate::{aws::AwsError, secret::DbSecret};
use aws_config::SdkConfig;
use secrecy::SecretString;
use std::future::Future;

/// Looks up the writer endpoint of an instance or cluster: [`RdsApi`] in production, a fake in
/// unit tests.
pub trait RdsEndpoints: Send + Sync {
    /// Writer endpoint (host, port) of `target`.
    fn endpoint(&self, target: &RdsTarget) -> impl Future<Output = Result<(String, u16), AwsError>> + Send;
}

/// Tag RDS puts on the secret it manages for an instance's master user.
pub const TAG_INSTANCE_ARN: &str = "aws:rds:primarydbinstancearn";
/// Tag RDS puts on the secret it manages for a cluster's master user.
pub const TAG_CLUSTER_ARN: &str = "aws:rds:primarydbclusterarn";

/// What to ask the RDS API about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdsTarget {
    /// A DB instance identifier.
    Instance(String),
    /// A DB cluster identifier.
    Cluster(String),
}

impl RdsTarget {
    /// From the secret's `dbInstanceIdentifier` / `dbClusterIdentifier`, else from the tags RDS puts
    /// on secrets it manages (matched case-insensitively; the value is an ARN).
    pub fn find(secret: &DbSecret, tags: &[(String, String)]) -> Option<Self> {
        if let Some(id) = secret.db_instance_identifier() {
            return Some(Self::Instance(id.to_owned()));
        }
        if let Some(id) = secret.db_cluster_identifier() {
            return Some(Self::Cluster(id.to_owned()));
        }
        let tag = |name: &str| {
            tags.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, arn)| arn.rsplit(':').next())
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
        };
        tag(TAG_INSTANCE_ARN)
            .map(Self::Instance)
            .or_else(|| tag(TAG_CLUSTER_ARN).map(Self::Cluster))
    }
}

impl std::fmt::Display for RdsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instance(id) => write!(f, "DB instance {id}"),
            Self::Cluster(id) => write!(f, "DB cluster {id}"),
        }
    }
}

/// The RDS API client.
#[derive(Debug, Clone)]
pub struct RdsApi {
    client: aws_sdk_rds::Client,
}

impl RdsApi {
    /// A client from the shared SDK configuration.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            client: aws_sdk_rds::Client::new(sdk),
        }
    }
}

/// DescribeDBInstances / DescribeDBClusters; `NotFound` when the response carries no endpoint.
impl RdsEndpoints for RdsApi {
    async fn endpoint(&self, target: &RdsTarget) -> Result<(String, u16), AwsError> {
        let missing = |what: &str| {
            AwsError::new(
                crate::aws::AwsErrorKind::NotFound,
                "DescribeDBInstances",
                format!("{what} has no endpoint yet"),
            )
        };
        match target {
            RdsTarget::Instance(id) => {
                let out = self
                    .client
                    .describe_db_instances()
                    .db_instance_identifier(id)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("DescribeDBInstances", &e))?;
                let endpoint = out
                    .db_instances()
                    .first()
                    .and_then(|i| i.endpoint())
                    .ok_or_else(|| missing(id))?;
                let host = endpoint.address().ok_or_else(|| missing(id))?.to_owned();
                Ok((
                    host,
                    endpoint.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(5432),
                ))
            }
            RdsTarget::Cluster(id) => {
                let out = self
                    .client
                    .describe_db_clusters()
                    .db_cluster_identifier(id)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("DescribeDBClusters", &e))?;
                let cluster = out.db_clusters().first().ok_or_else(|| missing(id))?;
                let host = cluster.endpoint().ok_or_else(|| missing(id))?.to_owned();
                Ok((host, cluster.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(5432)))
            }
        }
    }
}

/// A fresh RDS IAM authentication token (valid 15 minutes, checked only at connect), signed
/// offline with the SDK's credentials.
///
/// # Errors
/// A message when no AWS credentials are available.
pub async fn iam_token(sdk: &SdkConfig, host: &str, port: u16, user: &str) -> Result<SecretString, String> {
    use aws_sdk_rds::auth_token::{AuthTokenGenerator, Config};
    let config = Config::builder()
        .hostname(host)
        .port(u64::from(port))
        .username(user)
        .build()
        .map_err(|e| e.to_string())?;
    let token = AuthTokenGenerator::new(config)
        .auth_token(sdk)
        .await
        .map_err(|e| e.to_string())?;
    Ok(SecretString::from(token.as_str().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_comes_from_keys_then_tags() {
        let s = DbSecret::parse("s", r#"{"username":"u","password":"p","dbClusterIdentifier":"c1"}"#).unwrap();
        assert_eq!(RdsTarget::find(&s, &[]), Some(RdsTarget::Cluster("c1".into())));
        let managed = DbSecret::parse("s", r#"{"username":"u","password":"p"}"#).unwrap();
        let tags = vec![(
            "aws:rds:primaryDBInstanceArn".to_owned(),
            "arn:aws:rds:us-east-1:123456789012:db:itemsdb".to_owned(),
        )];
        assert_eq!(
            RdsTarget::find(&managed, &tags),
            Some(RdsTarget::Instance("itemsdb".into()))
        );
        assert_eq!(RdsTarget::find(&managed, &[]), None);
    }
}
