//! Revoke: `{"Revoke": {"SecretId": "…", "GraceSeconds": 0}}`, run right after an immediate
//! rotation (`aws secretsmanager rotate-secret --rotate-immediately`), makes the superseded
//! credential useless now. Postgres keeps a session open whatever happens to the password that
//! opened it, and alternating users leave the previous user valid until the next rotation, so:
//!
//! * single user: every session of the user that began before the password changed is ended.
//!   That moment is taken from Secrets Manager: the creation date of the `AWSCURRENT` version
//!   (ListSecretVersionIds), which createSecret made just before setSecret changed the password,
//!   plus [`CHANGE_MARGIN`] for the gap between the two steps (and for services that date versions
//!   to the whole second). Before anything is ended, `AWSPREVIOUS`'s password must be refused by
//!   the database: otherwise the rotation did not happen and there is nothing to revoke;
//! * alternating users: the previous user (`AWSPREVIOUS`'s, the other one of the pair) gets a new
//!   random password that nobody holds (sent as a verifier, like every password the function
//!   sets) and all of its sessions are ended, through the master. `AWSCURRENT` must log in first:
//!   revoking the previous user while the current one does not work would leave the API with
//!   neither.
//!
//! Only the secret's own users are touched (the user, or the other user of the pair); never the
//! master, never the function's own session, never another role's. Repeating a revoke is safe: it
//! finds nothing more to end (alternating users: the previous user's password is replaced again).
//! `GraceSeconds` waits that long before ending sessions, so work in flight can finish.

use crate::{
    Error, Rotator,
    db::{Logins, Session},
    error::Statement,
    event::{self, EventError, RotationEvent, Step},
    secrets::SecretsApi,
    sessions::EndedSession,
    steps::{Ctx, Slot, is_unreachable, record_user, statement_error, unreachable},
    strategy::{Strategy, alternate_username},
};
use db_credentials::{rds::RdsEndpoints, secrets_manager::Stage};
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// Added to the `AWSCURRENT` version's creation date to get the moment the password changed.
pub const CHANGE_MARGIN: Duration = Duration::from_secs(1);

/// Time kept for the work after the grace period.
const AFTER_GRACE: Duration = Duration::from_secs(5);

/// `{"Revoke": {"SecretId": "…", "GraceSeconds": 0}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// The secret (ARN or name).
    pub secret_id: String,
    /// `GraceSeconds` (default 0): how long to wait before ending sessions.
    pub grace: Duration,
}

impl RevokeRequest {
    /// Parses the event.
    ///
    /// # Errors
    /// [`EventError`] naming the missing or malformed key.
    pub fn from_json(value: &Value) -> Result<Self, EventError> {
        let (body, secret_id) = event::operator_request(value, "Revoke")?;
        let grace = match body.get("GraceSeconds") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().filter(|g| *g <= 900).ok_or_else(|| EventError::Request {
                request: "Revoke",
                problem: "needs \"GraceSeconds\" to be a whole number of seconds from 0 to 900".to_owned(),
            })?,
        };
        Ok(Self {
            secret_id,
            grace: Duration::from_secs(grace),
        })
    }
}

/// What a revoke did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeReport {
    /// The secret's ARN.
    pub secret: String,
    /// `ROTATION_STRATEGY`.
    pub strategy: &'static str,
    /// The user whose sessions were ended.
    pub user: String,
    /// Alternating users: the previous user's password was replaced by one nobody holds.
    pub password_replaced: bool,
    /// Single user: sessions that began before this moment (UTC, RFC 3339) were ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
    /// The sessions ended.
    pub sessions_ended: Vec<EndedSession>,
}

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Rotator<S, L, R> {
    /// Revokes the superseded credential of `request.secret_id` (see the module documentation),
    /// within `ROTATION_STEP_TIMEOUT_MS` (lowered to the Lambda `deadline`).
    ///
    /// # Errors
    /// [`Error::RevokeRefused`] when it would be unsafe or there is nothing superseded; any
    /// error of the rotation's own calls otherwise.
    pub async fn revoke(&self, request: &RevokeRequest, deadline: Option<SystemTime>) -> Result<RevokeReport, Error> {
        let budget = self.budget(deadline);
        let span = tracing::info_span!(
            "revoke",
            secret = %request.secret_id,
            strategy = self.config.strategy.as_str(),
            grace_s = request.grace.as_secs(),
            user = tracing::field::Empty,
            host = tracing::field::Empty,
        );
        async {
            if request.grace + AFTER_GRACE > budget {
                return Err(Error::RevokeRefused {
                    secret: request.secret_id.clone(),
                    reason: format!(
                        "GraceSeconds {} leaves no time for the work within {} ms (ROTATION_STEP_TIMEOUT_MS, or the function's timeout); ask for less",
                        request.grace.as_secs(),
                        budget.as_millis()
                    ),
                });
            }
            let started = Instant::now();
            let stand_in = RotationEvent::new(&request.secret_id, "revoke", Step::Set);
            let cx = self.ctx(&stand_in, budget);
            let result = match tokio::time::timeout(budget, cx.revoke(request.grace)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    budget_ms: budget.as_millis(),
                    doing: cx.progress(),
                }),
            };
            let duration_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(r) => tracing::info!(
                    ended = r.sessions_ended.len(),
                    password_replaced = r.password_replaced,
                    changed_at = r.changed_at.as_deref().unwrap_or(""),
                    duration_ms,
                    "revoke finished"
                ),
                Err(e) => tracing::error!(error = %e, duration_ms, "revoke failed"),
            }
            result
        }
        .instrument(span)
        .await
    }
}

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    async fn revoke(&self, grace: Duration) -> Result<RevokeReport, Error> {
        let secret_id = &self.event.secret_id;
        self.doing("DescribeSecret");
        let desc = self.secrets.describe(secret_id).await.map_err(|e| Error::Aws {
            action: "describe the versions".to_owned(),
            secret: secret_id.clone(),
            source: e,
        })?;
        let arn = if desc.arn.is_empty() {
            secret_id.clone()
        } else {
            desc.arn.clone()
        };
        let refuse = |reason: String| Error::RevokeRefused {
            secret: arn.clone(),
            reason,
        };
        if let Some(pending) = desc
            .version_with(Stage::Pending)
            .filter(|v| !desc.has_stage(v, Stage::Current))
        {
            return Err(refuse(format!(
                "AWSPENDING is on version {pending}: a rotation is under way or unfinished; let it finish (or cancel it), then revoke"
            )));
        }
        if desc.version_with(Stage::Previous).is_none() {
            return Err(refuse(
                "the secret has no AWSPREVIOUS version, so no credential has been superseded: rotate it first (aws secretsmanager rotate-secret --rotate-immediately)".to_owned(),
            ));
        }
        let current = self.read(&arn, Slot::Current, None).await?;
        let previous = self.read(&arn, Slot::Previous, None).await?;
        let here = self
            .endpoint(&arn, Slot::Current, &current.secret, Some(&desc.tags))
            .await?;
        let tls = self.tls(&arn, &current.secret)?;
        let (user, old_user) = (current.secret.username(), previous.secret.username());
        // The only roles a revoke may touch: the secret's user, or the other user of its pair.
        let expected = match self.config.strategy {
            Strategy::SingleUser => user.to_owned(),
            Strategy::AlternatingUsers => alternate_username(user)?,
        };
        if old_user != expected {
            return Err(refuse(format!(
                "AWSPREVIOUS names user {old_user}, which is not {expected}, the only user a {} revoke of this secret may touch",
                self.config.strategy
            )));
        }
        if let Some(host) = previous.secret.host()
            && (host != here.host || previous.secret.port() != here.port)
        {
            return Err(refuse(format!(
                "AWSPREVIOUS is for {host}:{}, not {here}",
                previous.secret.port()
            )));
        }
        record_user(old_user, Some(&here));
        let session = match self
            .login(&self.creds(&current, &here, &tls, Some(Stage::Current)))
            .await
        {
            Ok(s) => s,
            Err(e) if is_unreachable(&e) => return Err(unreachable(&arn, e)),
            Err(e) => {
                return Err(Error::CurrentLoginFailed {
                    secret: arn.clone(),
                    source: Box::new(e),
                });
            }
        };
        let mut report = RevokeReport {
            secret: arn.clone(),
            strategy: self.config.strategy.as_str(),
            user: old_user.to_owned(),
            password_replaced: false,
            changed_at: None,
            sessions_ended: Vec::new(),
        };
        let (mut acting, acting_user, cutoff) = match self.config.strategy {
            Strategy::SingleUser => {
                if let Some(master_arn) = current.secret.masterarn() {
                    let master = self.read(master_arn, Slot::Master, None).await?;
                    if master.secret.username() == user {
                        return Err(refuse(format!(
                            "{user} is the master secret's user; a revoke never ends the master's sessions"
                        )));
                    }
                }
                // The old password must already be refused: otherwise nothing was rotated.
                match self
                    .login(&self.creds(&previous, &here, &tls, Some(Stage::Previous)))
                    .await
                {
                    Ok(_) => {
                        return Err(refuse(format!(
                            "AWSPREVIOUS's password still logs in as {user}: the password has not changed since; rotate first (aws secretsmanager rotate-secret --rotate-immediately), then revoke"
                        )));
                    }
                    Err(e) if e.is_auth() => {}
                    Err(e) if is_unreachable(&e) => return Err(unreachable(&arn, e)),
                    Err(e) => {
                        return Err(refuse(format!(
                            "cannot tell whether AWSPREVIOUS's password is refused: {e}"
                        )));
                    }
                }
                self.doing("ListSecretVersionIds");
                let created = self
                    .secrets
                    .version_created(&arn, &current.id)
                    .await
                    .map_err(|e| Error::Aws {
                        action: "list the versions".to_owned(),
                        secret: arn.clone(),
                        source: e,
                    })?
                    .ok_or_else(|| {
                        refuse(format!(
                            "ListSecretVersionIds gives no creation date for AWSCURRENT version {}, so the moment the password changed is unknown",
                            current.id
                        ))
                    })?;
                let cutoff = created + CHANGE_MARGIN;
                report.changed_at = Some(rfc3339(cutoff));
                (session, user.to_owned(), Some(cutoff))
            }
            Strategy::AlternatingUsers => {
                drop(session);
                let (mut master, master_user) = self.master_session(&arn, &current, &here, &tls).await?;
                if master_user == old_user {
                    return Err(refuse(format!(
                        "{old_user} is the master secret's user; a revoke never touches the master"
                    )));
                }
                self.doing("GetRandomPassword");
                let password = self
                    .secrets
                    .random_password(&self.config.password)
                    .await
                    .map_err(|e| Error::Aws {
                        action: "generate a password".to_owned(),
                        secret: arn.clone(),
                        source: e,
                    })?;
                self.doing("ALTER ROLE (revoke)");
                master
                    .set_password(old_user, &password)
                    .await
                    .map_err(|e| statement_error(e, Statement::MasterSetPassword, &master_user, old_user, &here))?;
                drop(password);
                report.password_replaced = true;
                tracing::info!("previous user's password replaced by one nobody holds");
                (master, master_user, None)
            }
        };
        if !grace.is_zero() {
            self.doing("GraceSeconds");
            tokio::time::sleep(grace).await;
        }
        self.doing("pg_terminate_backend");
        report.sessions_ended = acting
            .end_sessions(old_user, cutoff)
            .await
            .map_err(|e| statement_error(e, Statement::EndSessions, &acting_user, old_user, &here))?;
        Ok(report)
    }
}

/// `2026-12-02T01:23:45.678Z`.
fn rfc3339(t: SystemTime) -> String {
    use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
    let dt = DateTime::from(t);
    dt.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| format!("{} s after 1970", dt.secs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_is_parsed_and_bad_grace_is_refused() {
        let r = RevokeRequest::from_json(&json!({"Revoke": {"SecretId": "app/db"}})).unwrap();
        assert_eq!((r.secret_id.as_str(), r.grace), ("app/db", Duration::ZERO));
        let r = RevokeRequest::from_json(&json!({"Revoke": {"SecretId": "s", "GraceSeconds": 3}})).unwrap();
        assert_eq!(r.grace, Duration::from_secs(3));
        for bad in [json!(-1), json!(1.5), json!("3"), json!(901)] {
            let err = RevokeRequest::from_json(&json!({"Revoke": {"SecretId": "s", "GraceSeconds": bad}})).unwrap_err();
            assert!(err.to_string().contains("GraceSeconds"), "{err}");
        }
        let err = RevokeRequest::from_json(&json!({"Revoke": {"SecretID": "s"}})).unwrap_err();
        assert!(err.to_string().contains("SecretId"), "{err}");
        let err = RevokeRequest::from_json(&json!({"Revoke": "s"})).unwrap_err();
        assert!(err.to_string().contains("must be an object"), "{err}");
    }

    #[test]
    fn times_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_640_000_250);
        assert_eq!(rfc3339(t), "2025-12-02T01:46:40.25Z");
    }
}
