//! The items API Lambda: a REST API over a Postgres `items` table, behind API Gateway (REST v1,
//! HTTP API v2) or a Function URL.
//!
//! Credentials come from db-credentials (Secrets Manager by default); connections (a bounded
//! pool per environment, one on classic Lambda) are opened lazily, reused across warm
//! invocations, rebuilt through a password rotation without a failed request, and closed cleanly
//! on SIGTERM. Every session is on a writer; through a failover or a full database, requests
//! wait within a budget and are answered 503 with `Retry-After` when it runs out, never 500, and an
//! acknowledged write is never lost. Errors are RFC 9457 problem documents; bad input is never a
//! 5xx.
//!
//! * [`app`]: the handler; [`routes`]: the route table; [`item`]: validation;
//! * [`store`]: all SQL ([`store::ItemStore`]); [`db`]: the environment's connection pool
//!   ([`db::ConnectionPool`]); [`health`]: `/health` and `/health/db`;
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

use http::{HeaderValue, Response, StatusCode, header};
use lambda_http::Body;

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
