//! Error responses as `application/problem+json` (RFC 9457).
//!
//! User-facing wording lives here, in one place. A `detail` says what was wrong with the request;
//! for server-side failures it says what failed without internal names (hosts, users, secret
//! ids), which go to the log with the request id instead.

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
    /// A condition of the database or of AWS: unreachable, refusing the credentials, read-only,
    /// out of connections… (503).
    #[error("{detail}")]
    Unavailable {
        /// What failed, without internal names.
        detail: String,
        /// Seconds the client should wait.
        retry_after: u32,
        /// The cause, a short name (`read-only`, `too-many-connections`, `credentials-refused`…):
        /// the problem document's `condition`, and the `cause` of the request's log line.
        cause: &'static str,
    },
    /// A bug: a statement that failed while the database was fine (500).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The cause of a 503, for the request's log line.
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable { cause, .. } => Some(cause),
            _ => None,
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
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "instance": instance,
            "request_id": request_id,
        });
        if let Self::Unavailable { cause, .. } = &self {
            // An RFC 9457 extension member: what the database did, for clients and dashboards.
            body["condition"] = json!(cause);
        }
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
