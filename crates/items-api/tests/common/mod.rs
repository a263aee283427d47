//! Shared test set-up: an App over the shared devstack.

#![allow(dead_code)]

pub mod events;

use db_credentials::{Config, CredentialProvider, Database, config::Vars};
use devstack::{AppDatabase, Stack};
use http::Response;
use items_api::{App, Settings};
use lambda_http::Body;
use serde_json::Value;

/// An app role, its secret, and the App using it.
pub struct Fixture {
    pub app: App,
    pub db: AppDatabase,
    pub secret_arn: String,
    pub secret_name: String,
}

/// Variables for an App using `secret_arn` on the shared stack.
pub fn vars(stack: &Stack, secret_arn: &str, extra: &[(&str, &str)]) -> Vars {
    let mut v: Vars = stack.lambda_env(secret_arn).into_iter().collect();
    for (k, val) in extra {
        v.insert((*k).into(), (*val).into());
    }
    v
}

/// An App over `vars`.
pub async fn app_with(stack: &Stack, vars: &Vars) -> App {
    let config = Config::from_vars(vars).expect("config");
    let provider = CredentialProvider::with_sdk(config, Some(&stack.moto.sdk_config().await));
    App::new(
        Database::new(provider, "items-api-test"),
        Settings::from_vars(vars).expect("settings"),
    )
}

/// A fresh role, database, secret and App.
pub async fn fixture(prefix: &str, extra: &[(&str, &str)]) -> Fixture {
    let stack = Stack::shared();
    let db = stack.create_app(prefix).await.expect("app role");
    let secret_name = Stack::secret_name(prefix);
    let secret_arn = stack
        .create_secret(&secret_name, &stack.secret_json(&db))
        .await
        .expect("secret");
    let app = app_with(stack, &vars(stack, &secret_arn, extra)).await;
    Fixture {
        app,
        db,
        secret_arn,
        secret_name,
    }
}

/// The body as JSON (panics on a non-JSON body: every response we send is JSON or empty).
pub fn body_json(resp: &Response<Body>) -> Value {
    match resp.body() {
        Body::Text(t) => serde_json::from_str(t).expect("JSON body"),
        Body::Binary(b) => serde_json::from_slice(b).expect("JSON body"),
        _ => Value::Null,
    }
}

/// A header value.
pub fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}
