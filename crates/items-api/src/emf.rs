//! CloudWatch Embedded Metric Format: the credential metrics db-credentials emits through the
//! `metrics` facade become structured log lines CloudWatch turns into metrics, with no API call.

use metrics_cloudwatch_embedded::{Builder, Collector};

/// Metric namespace (the SAM template's alarms use it).
pub const NAMESPACE: &str = "ItemsApi";

/// Installs the process-wide recorder with the `FunctionName` dimension. `None` if a recorder
/// is already installed.
pub fn install(function_name: &str) -> Option<&'static Collector> {
    Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("FunctionName", function_name.to_owned())
        .init()
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok()
}

/// Writes what was recorded since the last flush as one EMF document to `out`.
pub fn flush(collector: &Collector, out: impl std::io::Write) {
    if let Err(e) = collector.flush(out) {
        tracing::warn!(error = %e, "cannot write metrics");
    }
}
