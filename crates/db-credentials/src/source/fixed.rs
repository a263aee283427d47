//! Credentials fixed by configuration: a `DATABASE_URL` or discrete variables.

use super::{CredentialError, Credentials, Origin};
use crate::{
    config::{Config, StaticCredentials},
    tls::TlsEnv,
};

pub(super) struct FixedSource {
    creds: StaticCredentials,
    origin: Origin,
    tls: TlsEnv,
}

impl FixedSource {
    pub(super) fn new(config: &Config, creds: &StaticCredentials) -> Self {
        Self {
            creds: creds.clone(),
            origin: Origin::fixed(config.source.kind()),
            tls: config.tls.clone(),
        }
    }

    pub(super) fn current(&self) -> Result<Credentials, CredentialError> {
        let c = &self.creds;
        let mut creds = Credentials::new(
            &c.user,
            c.password.clone(),
            &c.host,
            c.port,
            &c.dbname,
            self.tls.settings(None)?,
        );
        creds.origin = self.origin.clone();
        Ok(creds)
    }
}
