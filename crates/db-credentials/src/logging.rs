//! The functions' log set-up: lambda_runtime's default (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`,
//! level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO), with caps that hold whatever
//! level is asked for, because some dependencies log at TRACE or DEBUG what a function handling
//! database credentials must never log. Both Lambdas install it first thing in `main`.

use tracing_subscriber::{EnvFilter, filter::Directive};

/// Targets kept at or below a level, whatever the configured level:
/// * lambda_runtime logs the raw event (a `RotationToken`, request headers) at TRACE;
/// * the AWS SDK's orchestrator logs each HTTP request with `Debug` at TRACE; the body shows as
///   an opaque handle today, but a PutSecretValue body would be the secret and its token;
/// * tokio-postgres logs each statement, the password verifier included, at DEBUG (through the
///   `log` crate, which reaches these logs only if a log bridge is ever installed).
pub const CAPS: [&str; 4] = [
    "lambda_runtime=debug",
    "aws_smithy_runtime=debug",
    "aws_smithy_runtime_api=debug",
    "tokio_postgres=info",
];

/// The filter for `level` (an `EnvFilter` directive string such as `info` or `debug,hyper=warn`),
/// with [`CAPS`] added last so they win.
pub fn filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
        .parse_lossy(level.to_ascii_lowercase());
    for cap in CAPS {
        if let Ok(directive) = cap.parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(&level));
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn caps_hold_even_at_trace() {
        // See steps::tests: a second registered dispatcher keeps callsite interest honest.
        let _second = tracing::Dispatch::new(tracing_subscriber::registry());
        for level in ["trace", "TRACE", "lambda_runtime=trace,trace"] {
            let out = Captured::default();
            let writer = out.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(filter(level))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::trace!(target: "lambda_runtime::layers::api_response", body = "rt-secret", "raw JSON event");
                tracing::debug!(target: "tokio_postgres::simple_query", "executing statement batch: verifier");
                tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", request = "sdk-secret", "send");
                tracing::trace!(target: "rotation::steps", "ours-at-trace");
                tracing::debug!(target: "lambda_runtime::runtime", "runtime-at-debug");
            });
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert!(
                !text.contains("rt-secret") && !text.contains("verifier") && !text.contains("sdk-secret"),
                "{level}: {text}"
            );
            assert!(
                text.contains("ours-at-trace") && text.contains("runtime-at-debug"),
                "{level}: {text}"
            );
        }
    }

    #[test]
    fn default_level_is_info() {
        let _second = tracing::Dispatch::new(tracing_subscriber::registry());
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(""))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("shown");
            tracing::debug!("hidden");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("shown") && !text.contains("hidden"), "{text}");
    }
}
