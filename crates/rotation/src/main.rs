//! The `rotation` Lambda: configuration and clients once, then one step per invocation.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use rotation::{AwsRotator, Config, RotationEvent, StepError};
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
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RotationEvent>| {
        let rotator = Arc::clone(&rotator);
        async move {
            let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline);
            // Boxed: the step's future type is deep enough to exceed the compiler's layout limit
            // once nested inside the runtime's.
            let outcome = Box::pin(rotator.handle(&event.payload, Some(deadline)))
                .await
                .map_err(Failure)?;
            Ok::<_, Failure>(serde_json::json!({"step": event.payload.step.as_str(), "outcome": outcome.as_str()}))
        }
    }))
    .await
}

/// The error the runtime reports (and logs with `Debug`): the step error's sentence.
struct Failure(StepError);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: "RotationError".to_owned(),
            error_message: f.0.to_string(),
        }
    }
}
