//! Preflight: `{"Preflight": {"SecretId": "…"}}` runs every check a rotation would make, from
//! inside the deployed function (its role, subnets, CA bundle), and changes nothing: no secret
//! version or stage, no role, no password. Each check answers ok, warning, failed or skipped, with
//! what was seen and, when it is not ok, the fix. The password changes setSecret would make are
//! run in a transaction that is rolled back, with a password that is thrown away.
//!
//! The report is the invocation's result and is logged check by check; it never holds a password:
//! every detail is one of the function's own error messages, which carry none.

use crate::{
    Rotator,
    db::Logins,
    event::{self, EventError, RotationEvent, Step},
    secrets::SecretsApi,
    strategy::Strategy,
};
use db_credentials::rds::RdsEndpoints;
use serde::Serialize;
use std::{
    sync::Mutex,
    time::{Instant, SystemTime},
};
use tracing::Instrument;

mod checks;

/// `{"Preflight": {"SecretId": "…"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightRequest {
    /// The secret a rotation would rotate (ARN or name).
    pub secret_id: String,
}

impl PreflightRequest {
    /// Parses the event.
    ///
    /// # Errors
    /// [`EventError`] naming the missing or malformed key.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, EventError> {
        let (_, secret_id) = event::operator_request(value, "Preflight")?;
        Ok(Self { secret_id })
    }
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works as a rotation needs.
    Ok,
    /// Works, but worth knowing or fixing.
    Warning,
    /// A rotation would fail here.
    Failed,
    /// Not run: a check it depends on failed.
    Skipped,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Its name: `configuration`, `secret`, `random-password`, `endpoint`, `dns`, `tcp`, `tls`,
    /// `login`, `server`, `test-query`, then `password-change` (single user) or `master-login`
    /// and `alternate-user` (alternating users).
    pub check: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// What an operator can do, when the verdict is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What preflight found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    /// The secret, as asked for.
    pub secret: String,
    /// `ROTATION_STRATEGY`.
    pub strategy: &'static str,
    /// No check failed.
    pub ok: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl PreflightReport {
    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.check == name)
    }

    /// The names of the failed checks.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| c.check)
            .collect()
    }
}

/// The checks of each strategy, in order.
fn names(strategy: Strategy) -> Vec<&'static str> {
    let mut all = vec![
        "configuration",
        "secret",
        "random-password",
        "endpoint",
        "dns",
        "tcp",
        "tls",
        "login",
        "server",
        "test-query",
    ];
    match strategy {
        Strategy::SingleUser => all.push("password-change"),
        Strategy::AlternatingUsers => all.extend(["master-login", "alternate-user"]),
    }
    all
}

/// The checks made so far; what is left is skipped when one fails that the rest need.
pub(crate) struct Checks(Mutex<Vec<Check>>);

impl Checks {
    pub(crate) fn push(&self, check: &'static str, status: Status, detail: String, fix: Option<String>) {
        match status {
            Status::Failed => {
                tracing::warn!(check, status = ?status, %detail, fix = fix.as_deref().unwrap_or(""), "preflight check")
            }
            _ => tracing::info!(check, status = ?status, %detail, "preflight check"),
        }
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Check {
                check,
                status,
                detail,
                fix,
            });
    }
    pub(crate) fn ok(&self, check: &'static str, detail: String) {
        self.push(check, Status::Ok, detail, None);
    }
    pub(crate) fn warn(&self, check: &'static str, detail: String, fix: String) {
        self.push(check, Status::Warning, detail, Some(fix));
    }
    pub(crate) fn fail(&self, check: &'static str, detail: String, fix: impl Into<String>) {
        self.push(check, Status::Failed, detail, Some(fix.into()));
    }
    pub(crate) fn take(&self) -> Vec<Check> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Why preflight stopped early: the rest is skipped.
pub(crate) struct Stop(pub(crate) &'static str);

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Rotator<S, L, R> {
    /// Runs every check within `ROTATION_STEP_TIMEOUT_MS` (lowered to the Lambda `deadline`).
    /// Never fails: what went wrong is in the report.
    pub async fn preflight(&self, request: &PreflightRequest, deadline: Option<SystemTime>) -> PreflightReport {
        let budget = self.budget(deadline);
        let span =
            tracing::info_span!("preflight", secret = %request.secret_id, strategy = self.config.strategy.as_str());
        async {
            let started = Instant::now();
            let stand_in = RotationEvent::new(&request.secret_id, "preflight", Step::Set);
            let cx = self.ctx(&stand_in, budget);
            let checks = Checks(Mutex::new(Vec::new()));
            let stopped = match tokio::time::timeout(budget, cx.preflight(&checks)).await {
                Ok(Ok(())) => None,
                Ok(Err(Stop(after))) => Some(format!("needs the {after} check to pass")),
                Err(_) => {
                    let why = format!(
                        "preflight ran out of its {} ms while waiting for {}",
                        budget.as_millis(),
                        cx.progress()
                    );
                    checks.fail(
                        "time",
                        why.clone(),
                        "raise the function's timeout and ROTATION_STEP_TIMEOUT_MS, or fix what it waited for (usually the route to the database or to Secrets Manager)",
                    );
                    Some(why)
                }
            };
            let mut report = PreflightReport {
                secret: request.secret_id.clone(),
                strategy: self.config.strategy.as_str(),
                ok: false,
                checks: checks.take(),
            };
            if let Some(why) = stopped {
                for name in names(self.config.strategy) {
                    if report.check(name).is_none() {
                        report.checks.push(Check {
                            check: name,
                            status: Status::Skipped,
                            detail: why.clone(),
                            fix: None,
                        });
                    }
                }
            }
            report.ok = report.failed().is_empty();
            tracing::info!(
                ok = report.ok,
                failed = report.failed().join(", "),
                duration_ms = started.elapsed().as_millis() as u64,
                "preflight finished"
            );
            report
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_is_parsed_and_a_bad_one_names_the_key() {
        let r = PreflightRequest::from_json(&json!({"Preflight": {"SecretId": "app/db"}})).unwrap();
        assert_eq!(r.secret_id, "app/db");
        for (bad, says) in [
            (json!({"Preflight": {}}), "SecretId"),
            (json!({"Preflight": {"SecretId": ""}}), "SecretId"),
            (json!({"Preflight": {"SecretId": 7}}), "SecretId"),
            (json!({"Preflight": "app/db"}), "must be an object"),
            (json!({"Preflight": {"SecretId": "x".repeat(2049)}}), "at most 2048"),
        ] {
            let err = PreflightRequest::from_json(&bad).unwrap_err().to_string();
            assert!(err.contains("Preflight") && err.contains(says), "{err}");
            assert!(!err.contains("xxxx"), "{err}");
        }
    }

    #[test]
    fn a_report_fails_only_on_failed_checks() {
        let check = |check, status| Check {
            check,
            status,
            detail: String::new(),
            fix: None,
        };
        let mut report = PreflightReport {
            secret: "s".into(),
            strategy: "single-user",
            ok: true,
            checks: vec![check("secret", Status::Warning), check("tcp", Status::Skipped)],
        };
        assert!(report.failed().is_empty());
        report.checks.push(check("tls", Status::Failed));
        assert_eq!(report.failed(), ["tls"]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["checks"][2],
            json!({"check": "tls", "status": "failed", "detail": ""})
        );
    }
}
