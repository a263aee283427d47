//! The two ways the load reaches the items-api binary:
//!
//! * [`Target::Watch`]: HTTP to `cargo lambda watch --concurrency N`, N execution environments
//!   (processes), each serving one invocation at a time, as on classic Lambda;
//! * [`Target::Runtime`]: one process with `AWS_LAMBDA_MAX_CONCURRENCY` > 1 serving that many
//!   invocations at once (Lambda Managed Instances). `cargo lambda watch` sets that variable to 1
//!   in every function it runs (over the environment and `--env-var`, seen in
//!   `/proc/<pid>/environ`) and hands one event at a time to a process, so this environment gets
//!   its events from devstack's Lambda Runtime API instead, as the Lambda service hands them out.

use devstack::runtime_api::{Function, RuntimeApi};
use serde_json::{Value, json};
use std::{path::Path, sync::Arc, time::Duration};

const FIXTURE: &str = include_str!("../../../crates/items-api/tests/fixtures/apigw_v2_proxy_request.json");
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A response, whichever way it came.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// Where requests go.
#[derive(Clone)]
pub enum Target {
    /// `cargo lambda watch`'s Function URL.
    Watch {
        /// Client.
        http: reqwest::Client,
        /// `http://127.0.0.1:<port>/lambda-url/items-api`.
        base: String,
    },
    /// One environment fed by the Runtime API.
    Runtime(Arc<RuntimeApi>),
}

impl Target {
    /// A short name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Watch { .. } => "watch",
            Self::Runtime(_) => "max-concurrency",
        }
    }

    /// Sends one request.
    pub async fn send(&self, method: &str, path: &str, body: Option<&str>) -> Result<Answer, String> {
        match self {
            Self::Watch { http, base } => {
                let mut req = http.request(method.parse().map_err(|e| format!("{e}"))?, format!("{base}{path}"));
                if let Some(b) = body {
                    req = req.header("content-type", "application/json").body(b.to_owned());
                }
                let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = resp.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
                Ok(Answer {
                    status,
                    retry_after,
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                })
            }
            Self::Runtime(api) => {
                let invocation = api
                    .invoke(event(method, path, body).to_string().into_bytes(), INVOKE_TIMEOUT)
                    .await
                    .map_err(|e| format!("{method} {path}: {e}"))?;
                let response: Value = serde_json::from_slice(&invocation.body)
                    .map_err(|e| format!("{method} {path}: not a Lambda response: {e}"))?;
                if invocation.is_error {
                    return Err(format!("{method} {path}: the function reported an error: {response}"));
                }
                let header = |name: &str| {
                    response["headers"]
                        .as_object()
                        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::to_owned)
                };
                Ok(Answer {
                    status: response["statusCode"].as_u64().unwrap_or(0) as u16,
                    retry_after: header("retry-after"),
                    body: response["body"]
                        .as_str()
                        .and_then(|b| serde_json::from_str(b).ok())
                        .unwrap_or(Value::Null),
                })
            }
        }
    }
}

/// An HTTP API (payload 2.0) event, from the real payload in items-api's fixtures.
fn event(method: &str, path: &str, body: Option<&str>) -> Value {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut ev: Value = serde_json::from_str(FIXTURE).unwrap_or_else(|_| json!({}));
    let mut headers = json!({"accept": "application/json", "host": "api.example.com", "user-agent": "e2e-failover"});
    if body.is_some() {
        headers["content-type"] = json!("application/json");
    }
    let params: serde_json::Map<String, Value> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    ev["rawPath"] = json!(path);
    ev["rawQueryString"] = json!(query);
    ev["cookies"] = Value::Null;
    ev["headers"] = headers;
    ev["queryStringParameters"] = if params.is_empty() {
        Value::Null
    } else {
        Value::Object(params)
    };
    ev["pathParameters"] = Value::Null;
    ev["stageVariables"] = Value::Null;
    ev["requestContext"]["http"]["method"] = json!(method);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["requestContext"]["requestId"] = json!(uuid::Uuid::new_v4().to_string());
    ev["requestContext"]["authorizer"] = Value::Null;
    ev["body"] = body.map_or(Value::Null, |b| json!(b));
    ev["isBase64Encoded"] = json!(false);
    ev
}

/// The items-api binary in one process serving `concurrency` invocations at once.
pub struct ConcurrentEnvironment {
    /// Its Runtime API.
    pub api: Arc<RuntimeApi>,
    process: Option<Function>,
    log: std::path::PathBuf,
}

impl ConcurrentEnvironment {
    /// Starts `binary` with `env` and `AWS_LAMBDA_MAX_CONCURRENCY=concurrency`; waits for its first
    /// poll.
    pub async fn start(binary: &Path, env: &[(String, String)], concurrency: usize) -> Self {
        let api = Arc::new(RuntimeApi::start("items-api").await.expect("runtime API"));
        let log = std::env::temp_dir().join(format!("e2e-failover-{}.log", devstack::random_token()));
        let mut env = env.to_vec();
        env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), concurrency.to_string()));
        let process = api
            .spawn(binary, "items-api", &env, &log)
            .expect("the items-api binary starts");
        api.wait_for_first_poll(Duration::from_secs(60))
            .await
            .expect("items-api polls for events");
        Self {
            api,
            process: Some(process),
            log,
        }
    }

    /// Everything the process printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ConcurrentEnvironment {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop();
        }
        devstack::evidence::save_log("failover-max-concurrency-environment", &self.output());
        let _ = std::fs::remove_file(&self.log);
    }
}
