//! The `rotation` Lambda: configuration and clients once, then one step per invocation.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use rotation::{AwsRotator, Config, RotationEvent, StepError};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing_subscriber::filter::Directive;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    for var in &config.unknown_vars {
        tracing::warn!(variable = %var, "unknown rotation setting ignored; check its spelling");
    }
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

/// lambda_runtime's default subscriber (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, level from
/// `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`), with two caps whatever the level: lambda_runtime logs the
/// raw event (with its `RotationToken`) at TRACE, and tokio-postgres logs statements (with the
/// password verifier) at DEBUG.
fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let mut filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
        .parse_lossy(level.to_ascii_lowercase());
    for cap in ["lambda_runtime=debug", "tokio_postgres=info"] {
        if let Ok(directive) = cap.parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The error the runtime reports: the step error's sentence, typed by what went wrong.
#[derive(Debug)]
struct Failure(StepError);

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: "RotationError".to_owned(),
            error_message: f.0.to_string(),
        }
    }
}
