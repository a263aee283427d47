//! The items API Lambda: a REST API over a Postgres `items` table, behind API Gateway (REST v1,
//! HTTP API v2) or a Function URL.
//!
//! Credentials come from db-credentials (Secrets Manager by default); the connection is opened
//! lazily, reused across warm invocations and rebuilt through a password rotation without a
//! failed request. Errors are RFC 9457 problem documents; bad input is never a 5xx.
//!
//! * [`app`]: the handler; [`routes`]: the route table; [`item`]: validation;
//! * [`store`]: all SQL; [`db`]: the connection holder; [`health`]: `/health` and `/health/db`;
//! * [`problem`]: error responses; [`emf`]: CloudWatch Embedded Metric Format.

#![warn(missing_docs)]

pub mod app;
pub mod db;
pub mod emf;
pub mod health;
pub mod item;
pub mod problem;
pub mod routes;
pub mod store;

pub use app::{App, Settings};

use db::DbError;
use db_credentials::ConnectErrorKind;
use http::{HeaderValue, Response, StatusCode, header};
use lambda_http::Body;
use problem::ApiError;

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The 503 for a database failure: what failed, without hosts, users or secret ids (those are
/// logged with the request id).
pub fn unavailable(e: &DbError) -> ApiError {
    let (detail, retry_after) = match e {
        DbError::Connect(c) => match c.kind {
            ConnectErrorKind::Authentication => ("the database refused the service's credentials", 2),
            ConnectErrorKind::Credentials => ("the database credentials could not be read", 2),
            ConnectErrorKind::Tls => ("the TLS connection to the database failed", 30),
            ConnectErrorKind::Timeout => ("the database did not answer in time", 2),
            ConnectErrorKind::Unreachable => ("the database is unreachable", 5),
            ConnectErrorKind::Server => ("the database refused the connection", 5),
        },
        DbError::Setup(_) => ("the database connection could not be prepared", 5),
        DbError::Lost => (
            "the database connection was lost; the request may not have been applied",
            1,
        ),
        DbError::Timeout => ("the database did not answer in time", 2),
        DbError::Query(_) => ("the database connection failed", 1),
    };
    ApiError::Unavailable {
        detail: detail.to_owned(),
        retry_after,
    }
}
