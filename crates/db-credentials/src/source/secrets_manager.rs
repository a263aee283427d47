//! Credentials from a Secrets Manager secret, through the cache; the endpoint from the secret or
//! the RDS API (kept per version); `DATABASE_HOST`/`PORT`/`NAME` over the secret's (never the user).

use super::{CredentialError, Credentials, Origin};
use crate::{
    cache::{CacheError, CacheStatus, CachedSecret, SecretCache},
    config::{Config, Overrides, SourceKind},
    endpoint::{self, Endpoint, EndpointError},
    pending::{self, Login},
    rds::RdsEndpoints,
    secrets_manager::ReadSecrets,
    tls::TlsEnv,
};
use std::sync::Mutex as StdMutex;

pub(super) struct SecretsManagerSource<S, R> {
    cache: SecretCache<S>,
    rds: R,
    overrides: Overrides,
    tls: TlsEnv,
    /// The endpoint the RDS API gave for a version that names no host.
    rds_endpoint: StdMutex<Option<(String, Endpoint)>>,
}

impl<S: ReadSecrets, R: RdsEndpoints> SecretsManagerSource<S, R> {
    pub(super) fn new(config: &Config, secret_id: &str, secrets: S, rds: R) -> Self {
        Self {
            cache: SecretCache::new(secrets, secret_id, config.secret_ttl),
            rds,
            overrides: config.overrides.clone(),
            tls: config.tls.clone(),
            rds_endpoint: StdMutex::new(None),
        }
    }

    pub(super) async fn current(&self) -> Result<Credentials, CredentialError> {
        let entry = self.cache.get().await.map_err(|e| self.cache_error(e))?;
        self.credentials(entry).await
    }

    pub(super) async fn after_auth_failure(&self, failed: &Credentials) -> Result<Credentials, CredentialError> {
        let failed_version = failed.origin.version_id.as_deref().unwrap_or_default();
        let entry = self
            .cache
            .refresh_after_auth_failure(failed_version)
            .await
            .map_err(|e| self.cache_error(e))?;
        self.credentials(entry).await
    }

    /// `AWSPENDING`, if it is not the version refused and it passes the guard against the current
    /// version whose credentials were refused (see [`crate::pending`]).
    pub(super) async fn pending(&self, failed: &Credentials) -> Result<Option<Credentials>, CredentialError> {
        let Some(entry) = self.cache.pending().await.map_err(|e| self.cache_error(e))? else {
            return Ok(None);
        };
        if Some(&entry.version_id) == failed.origin.version_id.as_ref() {
            return Ok(None);
        }
        let Some(current) = &failed.cached else {
            return Ok(None);
        };
        // The secrets' own endpoints, before DATABASE_HOST/PORT: an override sends both versions
        // to the same place, and must not hide a pending version that names another database.
        let here = self.endpoint(current).await?;
        let there = self.endpoint(&entry).await?;
        let (current_secret, pending_secret) = (&current.secret, &entry.secret);
        let checked = pending::check_pending(
            &Login {
                user: current_secret.username(),
                endpoint: &here,
                dbname: current_secret.dbname(),
            },
            &Login {
                user: pending_secret.username(),
                endpoint: &there,
                dbname: pending_secret.dbname(),
            },
            &pending::users_a_rotation_may_set(current_secret.username()),
        );
        if let Err(mismatch) = checked {
            tracing::warn!(
                secret_id = %self.cache.secret_id(),
                version_id = %entry.version_id,
                reason = %mismatch,
                "AWSPENDING is not a rotation of the refused credentials; not used"
            );
            return Ok(None);
        }
        Ok(Some(self.credentials(entry).await?))
    }

    /// Whether the cache took `creds` in place of `refused`.
    pub(super) async fn adopt(&self, creds: &Credentials, refused: &Credentials) -> bool {
        let Some(entry) = &creds.cached else { return false };
        let refused_version = refused.origin.version_id.as_deref().unwrap_or_default();
        self.cache.adopt(entry.clone(), refused_version).await
    }

    pub(super) fn status(&self) -> CacheStatus {
        self.cache.status()
    }

    /// The cache's state after revalidating it if its TTL has passed (one DescribeSecret per TTL).
    pub(super) async fn revalidated_status(&self) -> Result<CacheStatus, CredentialError> {
        self.cache.get().await.map_err(|e| self.cache_error(e))?;
        Ok(self.cache.status())
    }

    fn cache_error(&self, e: CacheError) -> CredentialError {
        match e {
            CacheError::Aws(error) => CredentialError::Aws {
                what: format!("secret {} from Secrets Manager", self.cache.secret_id()),
                error,
            },
            CacheError::Secret(s) => CredentialError::Secret(s),
        }
    }

    async fn credentials(&self, entry: CachedSecret) -> Result<Credentials, CredentialError> {
        let secret = &entry.secret;
        let o = &self.overrides;
        let at = match &o.host {
            Some(host) => Endpoint {
                host: host.clone(),
                port: secret.port(),
            },
            None => self.endpoint(&entry).await?,
        };
        let at = Endpoint {
            port: o.port.unwrap_or(at.port),
            ..at
        };
        let origin = Origin {
            source: SourceKind::SecretsManager,
            secret_id: Some(self.cache.secret_id().to_owned()),
            version_id: Some(entry.version_id.clone()),
            stage: Some(entry.stage),
            stale: entry.stale,
        };
        let mut creds = Credentials::from_secret(secret, &at, self.tls.settings(Some(secret))?, origin);
        if let Some(dbname) = &o.dbname {
            creds.dbname.clone_from(dbname);
        }
        creds.cached = Some(entry);
        Ok(creds)
    }

    async fn endpoint(&self, entry: &CachedSecret) -> Result<Endpoint, CredentialError> {
        if let Ok(guard) = self.rds_endpoint.lock()
            && let Some((version, at)) = guard.as_ref()
            && *version == entry.version_id
        {
            return Ok(at.clone());
        }
        let id = self.cache.secret_id();
        let at = endpoint::resolve(self.cache.backend(), &self.rds, id, &entry.secret, None)
            .await
            .map_err(|e| match e {
                EndpointError::NoHost { secret_id } => CredentialError::NoHost { secret_id },
                EndpointError::Aws { what, error } => CredentialError::Aws { what, error },
            })?;
        if entry.secret.host().is_none()
            && let Ok(mut guard) = self.rds_endpoint.lock()
        {
            *guard = Some((entry.version_id.clone(), at.clone()));
        }
        Ok(at)
    }
}
