//! Connecting through a rotation (design §5): when the database refuses the cached credentials,
//! refresh them and retry; if `AWSCURRENT` has not moved yet, try `AWSPENDING` (single-user
//! rotation changes the password in the database before it moves the label). Capped in count
//! and in time, so a genuinely wrong password fails fast with a useful error.

use crate::{
    config::SessionTarget,
    connect::{ConnectError, Connection, connect_to},
    metric,
    rds::{RdsApi, RdsEndpoints},
    secrets_manager::{ReadSecrets, SdkSecrets},
    source::{CredentialProvider, Credentials},
};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;

/// Limits on recovering from a refused login.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryPolicy {
    /// Attempts in all: logins (the first included) and rounds that found nothing newer to try.
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
pub struct Database<S = SdkSecrets, R = RdsApi> {
    provider: CredentialProvider<S, R>,
    application_name: String,
    target: SessionTarget,
    policy: RecoveryPolicy,
}

impl<S: ReadSecrets, R: RdsEndpoints> Database<S, R> {
    /// A database reached through `provider`; `application_name` shows in `pg_stat_activity`
    /// (a `DATABASE_URL`'s `application_name` wins over it).
    pub fn new(provider: CredentialProvider<S, R>, application_name: &str) -> Self {
        let config = provider.config();
        Self {
            application_name: config
                .application_name
                .clone()
                .unwrap_or_else(|| application_name.to_owned()),
            target: config.target_session_attrs,
            provider,
            policy: RecoveryPolicy::default(),
        }
    }

    /// Asks every new session to be at least `target` (a function that writes asks for
    /// [`SessionTarget::ReadWrite`]; configuration may ask for it too, never for less).
    pub fn with_target(mut self, target: SessionTarget) -> Self {
        self.target = self.target.max(target);
        self
    }

    /// What every new session must be.
    pub fn target(&self) -> SessionTarget {
        self.target
    }

    /// Replaces the recovery limits.
    pub fn with_policy(mut self, policy: RecoveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The credential provider.
    pub fn provider(&self) -> &CredentialProvider<S, R> {
        &self.provider
    }

    /// Opens a connection with the current credentials, recovering from a rotated password.
    ///
    /// # Errors
    /// The last [`ConnectError`]; it names user, host and credential source.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let started = Instant::now();
        let kind = self.provider.kind();
        let creds = self
            .provider
            .current()
            .await
            .map_err(|e| ConnectError::credentials(kind, e))?;
        match self.try_connect(&creds).await {
            Ok(conn) => Ok(conn),
            Err(e) if e.is_auth() && self.provider.can_refresh() => self.recover(creds, e, started).await,
            Err(e) => {
                if e.is_auth() {
                    metrics::counter!(metric::AUTH_FAILURES_UNRECOVERED).increment(1);
                }
                Err(e)
            }
        }
    }

    /// After a refused login: connect only with credentials not refused yet — a re-read
    /// `AWSCURRENT` that moved, else (once) `AWSPENDING` — and wait between re-reads while nothing
    /// newer exists. Every Secrets Manager call is bounded by what is left of the budget.
    async fn recover(
        &self,
        first: Credentials,
        first_error: ConnectError,
        started: Instant,
    ) -> Result<Connection, ConnectError> {
        let kind = self.provider.kind();
        let unrecovered = |e: ConnectError| {
            metrics::counter!(metric::AUTH_FAILURES_UNRECOVERED).increment(1);
            Err(e)
        };
        let mut refused_versions = vec![first.origin.version_id.clone()];
        let mut current = first;
        let mut last = first_error;
        let mut attempts = 1;
        let mut tried_pending = false;
        let mut backoff = self.policy.backoff;
        loop {
            tracing::warn!(
                user = %last.user,
                host = %last.host,
                version_id = refused_versions.last().cloned().flatten().as_deref().unwrap_or("-"),
                sqlstate = last.sqlstate.as_ref().map_or("-", SqlState::code),
                "database refused the credentials; refreshing"
            );
            // Find credentials not tried yet.
            let (next, is_pending) = loop {
                let remaining = self.policy.budget.saturating_sub(started.elapsed());
                if remaining.is_zero() || attempts >= self.policy.max_attempts {
                    return unrecovered(last);
                }
                let refreshed = tokio::time::timeout(remaining, self.provider.after_auth_failure(&current)).await;
                match refreshed {
                    Err(_) => return unrecovered(last),
                    Ok(Err(e)) => return Err(ConnectError::credentials(kind, e)),
                    Ok(Ok(Some(fresh))) if !refused_versions.contains(&fresh.origin.version_id) => {
                        break (fresh, false);
                    }
                    Ok(Ok(_)) => {}
                }
                if !tried_pending {
                    tried_pending = true;
                    match tokio::time::timeout(remaining, self.provider.pending(&current)).await {
                        Err(_) => return unrecovered(last),
                        Ok(Err(e)) => return Err(ConnectError::credentials(kind, e)),
                        Ok(Ok(Some(p))) if !refused_versions.contains(&p.origin.version_id) => break (p, true),
                        Ok(Ok(_)) => {}
                    }
                }
                // Nothing newer yet: the rotation may be moving AWSCURRENT right now. An empty round
                // counts as an attempt, so a password that is simply wrong fails in seconds.
                attempts += 1;
                let remaining = self.policy.budget.saturating_sub(started.elapsed());
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff *= 2;
            };
            attempts += 1;
            match self.try_connect(&next).await {
                Ok(conn) => {
                    if is_pending {
                        self.provider.adopt(&next, &current).await;
                        tracing::info!(user = %next.user, version_id = next.origin.version_id.as_deref().unwrap_or("-"), "connected with AWSPENDING credentials (rotation in progress)");
                    } else {
                        tracing::info!(attempts, user = %next.user, version_id = next.origin.version_id.as_deref().unwrap_or("-"), "recovered from refused credentials");
                    }
                    metrics::counter!(metric::AUTH_FAILURES_RECOVERED).increment(1);
                    return Ok(conn);
                }
                Err(e) if e.is_auth() => {
                    refused_versions.push(next.origin.version_id.clone());
                    if !is_pending {
                        current = next;
                    }
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_connect(&self, creds: &Credentials) -> Result<Connection, ConnectError> {
        let timeout = self.provider.config().connect_timeout;
        match connect_to(creds, timeout, &self.application_name, self.target).await {
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
