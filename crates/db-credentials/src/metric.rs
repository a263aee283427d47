//! Metric names, emitted through the `metrics` facade. The items API installs a CloudWatch
//! Embedded Metric Format recorder; without a recorder they cost nothing.
//!
//! These are what operators alarm on: secret fetch failures and unrecovered authentication
//! failures mean requests are failing or about to.

/// GetSecretValue calls that succeeded.
pub const SECRET_FETCHES: &str = "SecretFetches";
/// Latency of GetSecretValue, in milliseconds.
pub const SECRET_FETCH_LATENCY_MS: &str = "SecretFetchLatencyMs";
/// Secrets Manager reads that failed (GetSecretValue, or the DescribeSecret revalidation).
pub const SECRET_FETCH_ERRORS: &str = "SecretFetchErrors";
/// DescribeSecret revalidations after the TTL.
pub const SECRET_REVALIDATIONS: &str = "SecretRevalidations";
/// Times a cached secret was served because Secrets Manager failed transiently.
pub const STALE_SECRET_SERVED: &str = "StaleSecretServed";
/// Connections refused by the database and then made with refreshed or pending credentials.
pub const AUTH_FAILURES_RECOVERED: &str = "AuthFailuresRecovered";
/// Connections refused by the database with no credentials left to try.
pub const AUTH_FAILURES_UNRECOVERED: &str = "AuthFailuresUnrecovered";
/// Database connections opened.
pub const DATABASE_CONNECTS: &str = "DatabaseConnects";
/// Database connections that failed for reasons other than authentication.
pub const DATABASE_CONNECT_ERRORS: &str = "DatabaseConnectErrors";
/// Requests items-api answered 503 (a condition of the database or of AWS), whatever the cause.
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
/// Connects the database refused for want of connection slots (SQLSTATE 53300). items-api makes at
/// most one per execution environment per backoff step.
pub const CONNECTIONS_EXHAUSTED: &str = "ConnectionsExhausted";
/// Times an execution environment lost its writer: its session turned read-only or was shut down,
/// or broke and the endpoint did not lead to a writer again at once. Once per loss, until a writer
/// is reached again through the endpoint.
pub const FAILOVERS_DETECTED: &str = "FailoversDetected";
/// Time from the first sign of a lost writer to the first session on the new writer, in
/// milliseconds.
pub const TIME_TO_WRITER_MS: &str = "TimeToWriterMs";
