//! Where a secret's database is, decided the same way for both functions: the secret's `host` (and
//! `port`, default 5432); else the RDS instance or cluster its `dbInstanceIdentifier` /
//! `dbClusterIdentifier` keys name, or the tags RDS puts on a secret it manages (which holds only
//! `username` and `password`), through the RDS API. A `port` in the secret wins over the API's.

use crate::{
    aws::AwsError,
    rds::{RdsEndpoints, RdsTarget},
    secret::DbSecret,
    secrets_manager::ReadSecrets,
};
use std::fmt;

/// Host and port of a database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why no endpoint could be found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    /// Neither a host, RDS identifiers nor RDS tags.
    #[error(
        "secret {secret_id} names no host, and neither dbInstanceIdentifier/dbClusterIdentifier nor RDS tags to find one"
    )]
    NoHost {
        /// The secret.
        secret_id: String,
    },
    /// Reading the secret's tags or the RDS API failed.
    #[error("cannot read {what}: {error}")]
    Aws {
        /// What was being read.
        what: String,
        /// The classified SDK error.
        error: AwsError,
    },
}

/// The endpoint of `secret` (a version of `secret_id`). `tags` are the secret's tags when the
/// caller already has them (from a DescribeSecret it made anyway); with `None` they are read only
/// if the secret has neither a host nor RDS identifiers.
///
/// # Errors
/// [`EndpointError`].
pub async fn resolve<S: ReadSecrets, R: RdsEndpoints>(
    secrets: &S,
    rds: &R,
    secret_id: &str,
    secret: &DbSecret,
    tags: Option<&[(String, String)]>,
) -> Result<Endpoint, EndpointError> {
    if let Some(host) = secret.host() {
        return Ok(Endpoint {
            host: host.to_owned(),
            port: secret.port(),
        });
    }
    let target = match tags {
        Some(tags) => RdsTarget::find(secret, tags),
        None => match RdsTarget::find(secret, &[]) {
            Some(target) => Some(target),
            None => {
                let desc = secrets.describe(secret_id).await.map_err(|error| EndpointError::Aws {
                    what: format!("the tags of secret {secret_id} from Secrets Manager"),
                    error,
                })?;
                RdsTarget::find(secret, &desc.tags)
            }
        },
    };
    let target = target.ok_or_else(|| EndpointError::NoHost {
        secret_id: secret_id.to_owned(),
    })?;
    let (host, port) = rds.endpoint(&target).await.map_err(|error| EndpointError::Aws {
        what: format!("the endpoint of {target} from RDS"),
        error,
    })?;
    Ok(Endpoint {
        host,
        port: if secret.has_port() { secret.port() } else { port },
    })
}
