//! Connecting through a rotation (design §5): when the database refuses the cached credentials,
//! refresh them and retry; if `AWSCURRENT` has not moved yet, try `AWSPENDING` (single-user
//! rotation changes the password in the database before it moves the label). Capped in count
//! and in time, so a genuinely wrong password fails fast with a useful error.

use crate::{
    connect::{ConnectError, Connection, connect},
    metric,
    source::{CredentialProvider, Credentials},
};
use std::time::{Duration, Instant};

/// Limits on recovering from a refused login.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryPolicy {
    /// Connection attempts in all, the first included.
    pub max_attempts: u32,
    /// Wall time after which no new attempt starts.
    pub budget: Duration,
    /// Pause before re-reading `AWSCURRENT` when nothing newer was found (doubles each time).
    pub backoff: Duration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            budget: Duration::from_secs(10),
            backoff: Duration::from_millis(200),
        }
    }
}

/// The credential provider plus the rules for turning credentials into a connection.
pub struct Database {
    provider: CredentialProvider,
    application_name: String,
    policy: RecoveryPolicy,
}

impl Database {
    /// A database reached through `provider`; `application_name` shows in `pg_stat_activity`.
    pub fn new(provider: CredentialProvider, application_name: &str) -> Self {
        Self {
            provider,
            application_name: application_name.to_owned(),
            policy: RecoveryPolicy::default(),
        }
    }

    /// Replaces the recovery limits.
    pub fn with_policy(mut self, policy: RecoveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The credential provider.
    pub fn provider(&self) -> &CredentialProvider {
        &self.provider
    }

    /// Opens a connection with the current credentials, recovering from a rotated password.
    ///
    /// # Errors
    /// The last [`ConnectError`]; it names user, host and credential source.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let started = Instant::now();
        let kind = self.provider.kind();
        let mut creds = self
            .provider
            .current()
            .await
            .map_err(|e| ConnectError::credentials(kind, e))?;
        let mut attempts = 0;
        let mut tried_pending = false;
        let mut backoff = self.policy.backoff;
        loop {
            attempts += 1;
            let err = match self.try_connect(&creds).await {
                Ok(conn) => {
                    if attempts > 1 {
                        metrics::counter!(metric::AUTH_FAILURES_RECOVERED).increment(1);
                        tracing::info!(attempts, user = %creds.user, version_id = creds.origin.version_id.as_deref().unwrap_or("-"), "recovered from refused credentials");
                    }
                    return Ok(conn);
                }
                Err(e) => e,
            };
            let out_of_budget = attempts >= self.policy.max_attempts || started.elapsed() >= self.policy.budget;
            if !err.is_auth() || !self.provider.can_refresh() || out_of_budget {
                if err.is_auth() {
                    metrics::counter!(metric::AUTH_FAILURES_UNRECOVERED).increment(1);
                }
                return Err(err);
            }
            tracing::warn!(
                user = %err.user,
                host = %err.host,
                version_id = creds.origin.version_id.as_deref().unwrap_or("-"),
                sqlstate = err.sqlstate.as_deref().unwrap_or("-"),
                "database refused the credentials; refreshing"
            );
            let as_connect_error = |e| ConnectError::credentials(kind, e);
            if let Some(fresh) = self
                .provider
                .after_auth_failure(&creds)
                .await
                .map_err(as_connect_error)?
            {
                creds = fresh;
                continue;
            }
            if !tried_pending {
                tried_pending = true;
                if let Some(pending) = self.provider.pending(&creds).await.map_err(as_connect_error)? {
                    attempts += 1;
                    match self.try_connect(&pending).await {
                        Ok(conn) => {
                            self.provider.adopt(&pending).await;
                            metrics::counter!(metric::AUTH_FAILURES_RECOVERED).increment(1);
                            tracing::info!(user = %pending.user, version_id = pending.origin.version_id.as_deref().unwrap_or("-"), "connected with AWSPENDING credentials (rotation in progress)");
                            return Ok(conn);
                        }
                        Err(e) if e.is_auth() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            // Nothing newer yet: the rotation may be moving AWSCURRENT right now.
            let remaining = self.policy.budget.saturating_sub(started.elapsed());
            tokio::time::sleep(backoff.min(remaining)).await;
            backoff *= 2;
        }
    }

    async fn try_connect(&self, creds: &Credentials) -> Result<Connection, ConnectError> {
        let timeout = self.provider.config().connect_timeout;
        match connect(creds, timeout, &self.application_name).await {
            Ok(conn) => {
                metrics::counter!(metric::DATABASE_CONNECTS).increment(1);
                Ok(conn)
            }
            Err(e) => {
                if !e.is_auth() {
                    metrics::counter!(metric::DATABASE_CONNECT_ERRORS).increment(1);
                }
                Err(e)
            }
        }
    }
}
