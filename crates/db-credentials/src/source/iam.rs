//! RDS IAM authentication: a token, signed offline with the function's AWS credentials, made
//! fresh for every connection. It stands in for the password, so TLS is mandatory.

use super::{CredentialError, Credentials, Origin};
use crate::{config::Config, tls::TlsEnv};
use aws_config::SdkConfig;

pub(super) struct IamSource {
    sdk: Box<SdkConfig>,
    host: String,
    port: u16,
    dbname: String,
    user: String,
    origin: Origin,
    tls: TlsEnv,
}

impl IamSource {
    pub(super) fn new(config: &Config, host: &str, port: u16, dbname: &str, user: &str, sdk: &SdkConfig) -> Self {
        Self {
            sdk: Box::new(sdk.clone()),
            host: host.to_owned(),
            port,
            dbname: dbname.to_owned(),
            user: user.to_owned(),
            origin: Origin::fixed(config.source.kind()),
            tls: config.tls.clone(),
        }
    }

    pub(super) async fn current(&self) -> Result<Credentials, CredentialError> {
        let tls = self.tls.settings(None)?;
        if !tls.requires_tls() {
            return Err(CredentialError::IamWithoutTls { mode: tls.mode });
        }
        let token = crate::rds::iam_token(&self.sdk, &self.host, self.port, &self.user)
            .await
            .map_err(|reason| CredentialError::IamToken {
                user: self.user.clone(),
                host: self.host.clone(),
                reason,
            })?;
        let mut creds = Credentials::new(&self.user, token, &self.host, self.port, &self.dbname, tls);
        creds.origin = self.origin.clone();
        Ok(creds)
    }
}
