//! Error responses as `application/problem+json` (RFC 9457).
//!
//! User-facing wording lives here, in one place. A `detail` says what was wrong with the request;
//! for server-side failures it says what failed without internal names (hosts, users, secret
//! ids), which go to the log with the request id instead.

use crate::db::{DbError, connection_lost};
use db_credentials::ConnectErrorKind;
use http::{HeaderValue, Response, StatusCode, header};
use lambda_http::Body;
use serde_json::json;

/// Content type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such route or item (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method (405).
    #[error("method {method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The route template.
        path: &'static str,
        /// Allowed methods, comma-separated.
        allow: &'static str,
    },
    /// Body over the limit (413).
    #[error("the request body is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Body without a JSON content type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The database is unreachable or refused the credentials (503).
    #[error("{detail}")]
    Unavailable {
        /// What failed, without internal names.
        detail: String,
        /// Seconds the client should wait.
        retry_after: u32,
    },
    /// A bug or an unexpected database error (500).
    #[error("internal error")]
    Internal,
}

/// The 503 for a database failure: what failed, without hosts, users or secret ids (those are
/// logged with the request id).
impl From<&DbError> for ApiError {
    fn from(e: &DbError) -> Self {
        let (detail, retry_after) = match e {
            DbError::Connect(c) => match c.kind {
                ConnectErrorKind::Authentication => ("the database refused the service's credentials", 2),
                ConnectErrorKind::Credentials => ("the database credentials could not be read", 2),
                ConnectErrorKind::Tls => ("the TLS connection to the database failed", 30),
                ConnectErrorKind::Timeout => ("the database did not answer in time", 2),
                ConnectErrorKind::Unreachable => ("the database is unreachable", 5),
                ConnectErrorKind::Server => ("the database refused the connection", 5),
                ConnectErrorKind::ReadOnly => ("the database does not accept writes (a failover is in progress)", 1),
            },
            DbError::Setup(_) => ("the database connection could not be prepared", 5),
            DbError::Lost => (
                "the database connection was lost; the request may not have been applied",
                1,
            ),
            DbError::Timeout => ("the database did not answer in time", 2),
            DbError::Query(_) => ("the database connection failed", 1),
        };
        Self::Unavailable {
            detail: detail.to_owned(),
            retry_after,
        }
    }
}

impl ApiError {
    /// The answer to a failed database operation, logged: a 503 for a condition of the database,
    /// a 500 for a statement that failed on a live connection (our own defect).
    pub fn from_db(e: DbError) -> Self {
        match &e {
            DbError::Query(q) if !connection_lost(q) => {
                tracing::error!(error = %e, "unexpected database error");
                Self::Internal
            }
            _ => {
                tracing::error!(error = %e, "database unavailable");
                Self::from(&e)
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document and headers.
    pub fn into_response(self, instance: &str, request_id: &str) -> Response<Body> {
        let status = self.status();
        let detail = match &self {
            Self::Internal => format!("an unexpected error occurred; quote request id {request_id} when reporting it"),
            other => other.to_string(),
        };
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "instance": instance,
            "request_id": request_id,
        });
        let mut response = Response::new(Body::Text(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Self::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        response
    }
}
