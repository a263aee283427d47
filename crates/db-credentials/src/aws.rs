//! AWS SDK set-up and one classification of SDK errors for every caller.
//!
//! Whether an error is transient decides whether a cached secret may be served instead, so the
//! rule lives here once: timeouts, connection failures, throttling and 5xx are transient; "not
//! found", "access denied" and missing credentials are not.

use aws_config::{BehaviorVersion, SdkConfig, timeout::TimeoutConfig};
use aws_smithy_runtime_api::client::{orchestrator::HttpResponse, result::SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::{fmt, time::Duration};

/// Loads the SDK configuration from the default provider chain (the function's role in Lambda)
/// with timeouts that keep one slow call from eating the invocation: 1 s to connect, 3 s per
/// attempt, 8 s per operation including the SDK's retries. `AWS_ENDPOINT_URL` (and the
/// per-service `AWS_ENDPOINT_URL_SECRETS_MANAGER`…) points it at a local emulator.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .load()
        .await
}

/// What kind of failure an AWS call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The resource does not exist (`ResourceNotFoundException`, `ParameterNotFound`, …).
    NotFound,
    /// IAM refused the call.
    AccessDenied,
    /// No AWS credentials could be found.
    NoCredentials,
    /// The endpoint could not be reached (DNS, refused, reset).
    Unreachable,
    /// The call timed out.
    Timeout,
    /// The service throttled the call.
    Throttled,
    /// The service failed (5xx).
    ServerError,
    /// The request was refused as invalid (4xx other than the above).
    InvalidRequest,
    /// Anything else.
    Other,
}

impl AwsErrorKind {
    /// Transient failures may be ridden out with a cached value.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Unreachable | Self::Timeout | Self::Throttled | Self::ServerError
        )
    }
}

/// A failed AWS call, classified. The message is the SDK's, which never carries secret values.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// Classification.
    pub kind: AwsErrorKind,
    /// Service error code, e.g. `ResourceNotFoundException`.
    pub code: Option<String>,
    /// Operation, e.g. `GetSecretValue`.
    pub operation: &'static str,
    /// Human-readable description.
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.operation, self.message)
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// Classifies an SDK error.
    pub fn from_sdk<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = sdk_message(err);
        let code = err.code().map(str::to_owned);
        let kind = match err {
            SdkError::TimeoutError(_) => AwsErrorKind::Timeout,
            SdkError::DispatchFailure(d) if d.is_timeout() => AwsErrorKind::Timeout,
            SdkError::DispatchFailure(d) if d.is_io() => AwsErrorKind::Unreachable,
            // An error body the SDK cannot parse (moto answers IAM denials in XML): go by status.
            SdkError::ResponseError(r) => classify_service(None, r.raw().status().as_u16()),
            SdkError::ServiceError(s) => classify_service(code.as_deref(), s.raw().status().as_u16()),
            // Identity resolution fails before dispatch; the SDK reports it as a dispatch or
            // construction failure whose text names the credentials.
            _ if message.contains("credential") => AwsErrorKind::NoCredentials,
            SdkError::DispatchFailure(_) => AwsErrorKind::Unreachable,
            _ => AwsErrorKind::Other,
        };
        Self {
            kind,
            code,
            operation,
            message,
        }
    }

    /// A plain error for callers that build one themselves (tests, in-memory models).
    pub fn new(kind: AwsErrorKind, operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            operation,
            message: message.into(),
        }
    }

    /// Whether a cached value may be served instead.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

/// The service's code and message, or the `Display` chain of a transport failure. Never the
/// SDK's `Debug`: that includes the raw HTTP response, which for an unparseable GetSecretValue
/// answer would be the secret itself.
fn sdk_message<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(s) = err {
        let status = s.raw().status().as_u16();
        return match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => format!("{code} (HTTP {status})"),
            _ => format!("service error (HTTP {status})"),
        };
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn classify_service(code: Option<&str>, status: u16) -> AwsErrorKind {
    match code.unwrap_or_default() {
        "ResourceNotFoundException"
        | "ParameterNotFound"
        | "DBInstanceNotFound"
        | "DBInstanceNotFoundFault"
        | "DBClusterNotFoundFault"
        | "ParametersNotFound" => AwsErrorKind::NotFound,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId" => AwsErrorKind::AccessDenied,
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            AwsErrorKind::Throttled
        }
        _ if status >= 500 => AwsErrorKind::ServerError,
        _ if status == 403 => AwsErrorKind::AccessDenied,
        _ if status == 429 => AwsErrorKind::Throttled,
        _ if status >= 400 => AwsErrorKind::InvalidRequest,
        _ => AwsErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_map_to_kinds() {
        assert_eq!(
            classify_service(Some("ResourceNotFoundException"), 400),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            classify_service(Some("AccessDeniedException"), 400),
            AwsErrorKind::AccessDenied
        );
        assert_eq!(
            classify_service(Some("ThrottlingException"), 400),
            AwsErrorKind::Throttled
        );
        assert_eq!(
            classify_service(Some("InternalServiceError"), 500),
            AwsErrorKind::ServerError
        );
        assert_eq!(
            classify_service(Some("InvalidParameterException"), 400),
            AwsErrorKind::InvalidRequest
        );
        assert!(AwsErrorKind::Throttled.is_transient() && AwsErrorKind::Timeout.is_transient());
        assert!(!AwsErrorKind::NotFound.is_transient() && !AwsErrorKind::AccessDenied.is_transient());
    }
}
