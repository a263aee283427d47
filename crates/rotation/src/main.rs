//! The `rotation` Lambda: configuration and clients once, then, per invocation, one rotation step
//! (Secrets Manager), one `Custom::DatabaseRole` request (CloudFormation), or an operator's
//! `Preflight` or `Revoke`, told apart by the event's keys ([`rotation::event::kind`]).

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use rotation::{
    AwsRotator, Config, RotationEvent,
    custom_resource::HttpsResponder,
    event::{self, EventKind},
};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation::logging::init();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    db_credentials::config::warn_unknown(&config.unknown_vars);
    tracing::info!(
        strategy = config.strategy.as_str(),
        connect_timeout_ms = config.connect_timeout.as_millis() as u64,
        step_timeout_ms = config.step_timeout.as_millis() as u64,
        "rotation function ready"
    );
    let sdk = db_credentials::aws::load_sdk_config().await;
    let rotator = Arc::new(AwsRotator::from_sdk(config, &sdk));
    let responder =
        Arc::new(HttpsResponder::new().inspect_err(|e| tracing::error!(error = %e, "cannot set up HTTPS"))?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (rotator, responder) = (Arc::clone(&rotator), Arc::clone(&responder));
        async move {
            let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline);
            let payload = event.payload;
            match event::kind(&payload).map_err(|e| Failure::new("InvalidEvent", e.to_string()))? {
                EventKind::CustomResource => {
                    let answered = Box::pin(rotator.handle_custom_resource(&payload, Some(deadline), &*responder))
                        .await
                        .map_err(|e| Failure::new("CustomResourceError", e.to_string()))?;
                    Ok::<_, Failure>(serde_json::json!({
                        "customResource": answered.request_type.map(|t| t.as_str()),
                        "status": answered.status,
                        "physicalResourceId": answered.physical_resource_id,
                    }))
                }
                EventKind::Preflight => {
                    let request = rotation::preflight::PreflightRequest::from_json(&payload)
                        .map_err(|e| Failure::new("InvalidEvent", e.to_string()))?;
                    let report = Box::pin(rotator.preflight(&request, Some(deadline))).await;
                    serde_json::to_value(&report).map_err(|e| Failure::new("PreflightError", e.to_string()))
                }
                EventKind::Revoke => {
                    let request = rotation::revoke::RevokeRequest::from_json(&payload)
                        .map_err(|e| Failure::new("InvalidEvent", e.to_string()))?;
                    let report = Box::pin(rotator.revoke(&request, Some(deadline)))
                        .await
                        .map_err(|e| Failure::new("RevokeError", e.to_string()))?;
                    serde_json::to_value(&report).map_err(|e| Failure::new("RevokeError", e.to_string()))
                }
                EventKind::RotationStep => {
                    let step =
                        RotationEvent::from_json(&payload).map_err(|e| Failure::new("RotationError", e.to_string()))?;
                    // Boxed: the step's future type is deep enough to exceed the compiler's layout
                    // limit once nested inside the runtime's.
                    let outcome = Box::pin(rotator.handle(&step, Some(deadline)))
                        .await
                        .map_err(|e| Failure::new("RotationError", e.to_string()))?;
                    Ok(serde_json::json!({"step": step.step.as_str(), "outcome": outcome.as_str()}))
                }
            }
        }
    }))
    .await
}

/// The error the runtime reports (and logs with `Debug`): a type and the error's sentence.
struct Failure {
    error_type: &'static str,
    message: String,
}

impl Failure {
    fn new(error_type: &'static str, message: String) -> Self {
        Self { error_type, message }
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.error_type.to_owned(),
            error_message: f.message,
        }
    }
}
