//! HTTP API (payload 2.0) events, as API Gateway sends them to items-api in production (the SAM
//! template's `HttpApi` events), built from the real payload in items-api's test fixtures.

use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../../../crates/items-api/tests/fixtures/apigw_v2_proxy_request.json");

/// One request of the benchmark's mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /items?limit=50` (a page of 50 rows).
    List,
    /// `GET /items/{id}`.
    Get(i64),
    /// `POST /items`.
    Create,
}

impl Op {
    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::List => "GET /items?limit=50",
            Self::Get(_) => "GET /items/{id}",
            Self::Create => "POST /items",
        }
    }
}

/// The event JSON for `op`, with `request_id` as API Gateway's request id.
pub fn event(op: Op, request_id: &str) -> Value {
    let (method, path, query, body) = match op {
        Op::List => ("GET", "/items".to_owned(), "limit=50", None),
        Op::Get(id) => ("GET", format!("/items/{id}"), "", None),
        Op::Create => (
            "POST",
            "/items".to_owned(),
            "",
            Some(r#"{"name":"benchmark item","description":"written by make bench"}"#),
        ),
    };
    let mut ev: Value = serde_json::from_str(FIXTURE).unwrap_or_else(|_| json!({}));
    let mut headers = json!({
        "accept": "application/json",
        "accept-encoding": "gzip, deflate, br",
        "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "user-agent": "curl/8.5.0",
        "x-amzn-trace-id": "Root=1-5e6a3a4e-0123456789abcdef01234567",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    });
    if let Some(b) = body {
        headers["content-type"] = json!("application/json");
        headers["content-length"] = json!(b.len().to_string());
    }
    ev["rawPath"] = json!(path);
    ev["rawQueryString"] = json!(query);
    ev["cookies"] = Value::Null;
    ev["headers"] = headers;
    ev["queryStringParameters"] = if query.is_empty() {
        Value::Null
    } else {
        json!({"limit": "50"})
    };
    ev["pathParameters"] = Value::Null;
    ev["stageVariables"] = Value::Null;
    ev["requestContext"]["http"]["method"] = json!(method);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["requestContext"]["requestId"] = json!(request_id);
    ev["requestContext"]["authorizer"] = Value::Null;
    ev["body"] = body.map_or(Value::Null, |b| json!(b));
    ev["isBase64Encoded"] = json!(false);
    ev
}

/// The event as bytes, as the Runtime API hands it out.
pub fn event_bytes(op: Op, request_id: &str) -> Vec<u8> {
    event(op, request_id).to_string().into_bytes()
}
