//! API Gateway and Function URL events built from the real payloads in `tests/fixtures`
//! (copied from ../shared/fixtures/aws-events), with method, path, query, headers and body set.

use base64::Engine as _;
use lambda_http::{Context, Request, RequestExt};
use serde_json::{Map, Value, json};

/// The event shapes the function is invoked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// API Gateway REST API (payload 1.0), stage `test`: the path gains a `/test` prefix.
    RestV1,
    /// HTTP API (payload 2.0), `$default` stage.
    HttpV2,
    /// HTTP API with a named stage in the path (`/Prod/...`).
    HttpV2Stage,
    /// Lambda Function URL.
    FunctionUrl,
}

impl Flavor {
    /// All four.
    pub const ALL: [Flavor; 4] = [Flavor::RestV1, Flavor::HttpV2, Flavor::HttpV2Stage, Flavor::FunctionUrl];

    /// The stage prefix the API sees in paths and Location headers.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::RestV1 => "/test",
            Self::HttpV2Stage => "/Prod",
            _ => "",
        }
    }
}

/// One request to build.
#[derive(Debug, Clone)]
pub struct Req<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path without stage, e.g. `/items/1`.
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    /// Headers.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Body bytes; sent base64-encoded when not UTF-8 (or when `binary`).
    pub body: Option<Vec<u8>>,
    /// Force base64 encoding of the body.
    pub binary: bool,
}

impl<'a> Req<'a> {
    /// A request without query, headers or body.
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            query: "",
            headers: Vec::new(),
            body: None,
            binary: false,
        }
    }
    /// With a query string.
    pub fn query(mut self, q: &'a str) -> Self {
        self.query = q;
        self
    }
    /// With a JSON body and content type.
    pub fn json(mut self, body: &str) -> Self {
        self.headers.push(("content-type", "application/json"));
        self.body = Some(body.as_bytes().to_vec());
        self
    }
    /// With a raw body (no content type added).
    pub fn raw(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }
    /// With a header.
    pub fn header(mut self, k: &'a str, v: &'a str) -> Self {
        self.headers.push((k, v));
        self
    }
}

fn fixture(flavor: Flavor) -> Value {
    let text = match flavor {
        Flavor::RestV1 => include_str!("../fixtures/apigw_proxy_request.json"),
        Flavor::HttpV2 => include_str!("../fixtures/apigw_v2_proxy_request.json"),
        Flavor::HttpV2Stage => include_str!("../fixtures/apigw_v2_proxy_request_with_stage_in_path.json"),
        Flavor::FunctionUrl => include_str!("../fixtures/lambda_function_url_request.json"),
    };
    serde_json::from_str(text).expect("fixture is JSON")
}

/// The event JSON for `req` in `flavor`.
pub fn event_json(flavor: Flavor, req: &Req<'_>) -> Value {
    let mut ev = fixture(flavor);
    let (body, encoded) = match &req.body {
        None => (Value::Null, false),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if !req.binary => (json!(s), false),
            _ => (json!(base64::engine::general_purpose::STANDARD.encode(b)), true),
        },
    };
    let mut headers = Map::new();
    for (k, v) in &req.headers {
        headers.insert((*k).to_owned(), json!(v));
    }
    match flavor {
        Flavor::RestV1 => {
            ev["httpMethod"] = json!(req.method);
            ev["path"] = json!(req.path);
            ev["requestContext"]["httpMethod"] = json!(req.method);
            ev["requestContext"]["path"] = json!(format!("/test{}", req.path));
            ev["headers"] = Value::Object(headers.clone());
            ev["multiValueHeaders"] = Value::Object(headers.into_iter().map(|(k, v)| (k, json!([v]))).collect());
            let mut single = Map::new();
            let mut multi: Map<String, Value> = Map::new();
            for (k, v) in url::form_urlencoded::parse(req.query.as_bytes()) {
                single.insert(k.to_string(), json!(v));
                if let Some(values) = multi.entry(k.to_string()).or_insert_with(|| json!([])).as_array_mut() {
                    values.push(json!(v));
                }
            }
            ev["queryStringParameters"] = if single.is_empty() {
                Value::Null
            } else {
                Value::Object(single)
            };
            ev["multiValueQueryStringParameters"] = if multi.is_empty() {
                Value::Null
            } else {
                Value::Object(multi)
            };
            ev["pathParameters"] = Value::Null;
        }
        _ => {
            let path = format!("{}{}", flavor.prefix(), req.path);
            ev["rawPath"] = json!(path);
            ev["requestContext"]["http"]["method"] = json!(req.method);
            ev["requestContext"]["http"]["path"] = json!(path);
            ev["rawQueryString"] = json!(req.query);
            ev["queryStringParameters"] = Value::Null;
            ev["pathParameters"] = Value::Null;
            ev["headers"] = Value::Object(headers);
        }
    }
    ev["body"] = body;
    ev["isBase64Encoded"] = json!(encoded);
    ev
}

/// The `lambda_http::Request` for `req` in `flavor`, with a Lambda request id.
pub fn request(flavor: Flavor, req: &Req<'_>, request_id: &str) -> Request {
    let json = event_json(flavor, req).to_string();
    let mut ctx = Context::default();
    ctx.request_id = request_id.to_owned();
    lambda_http::request::from_str(&json)
        .expect("lambda_http accepts the event")
        .with_lambda_context(ctx)
}
