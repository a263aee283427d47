//! Host and port of an RDS instance or cluster, for secrets that do not name a host (an
//! RDS-managed master secret holds only `username` and `password`). Behind a trait so the steps
//! can be tested without the RDS API.

use db_credentials::{
    aws::AwsError,
    rds::{RdsApi, RdsTarget},
};
use std::future::Future;

/// Looks up an endpoint.
pub trait RdsEndpoints: Send + Sync {
    /// Writer endpoint (host, port) of `target`.
    fn endpoint(&self, target: &RdsTarget) -> impl Future<Output = Result<(String, u16), AwsError>> + Send;
}

impl RdsEndpoints for RdsApi {
    async fn endpoint(&self, target: &RdsTarget) -> Result<(String, u16), AwsError> {
        RdsApi::endpoint(self, target).await
    }
}
