//! Helpers shared by the integration tests.

use db_credentials::{Config, CredentialProvider, config::Vars};
use devstack::{AppDatabase, Stack};
use serde_json::{Value, json};

/// Variables for a Lambda using `secret_arn` on `stack`, plus `extra`.
pub fn vars(stack: &Stack, secret_arn: Option<&str>, extra: &[(&str, &str)]) -> Vars {
    let mut v: Vars = stack.moto.env().into_iter().collect();
    if let Some(arn) = secret_arn {
        v.insert("DB_SECRET_ARN".into(), arn.into());
    }
    v.insert(
        "DB_SSL_ROOT_CERT".into(),
        stack.postgres.ca_cert().display().to_string(),
    );
    for (k, val) in extra {
        // A password or a URL carrying one must never reach a log: the leak check looks for it.
        if k.contains("PASSWORD") || *k == "DATABASE_URL" {
            devstack::evidence::record_secret(val);
        }
        v.insert((*k).into(), (*val).into());
    }
    v
}

/// A provider for `vars`, talking to this stack's moto.
pub async fn provider(stack: &Stack, vars: &Vars) -> CredentialProvider {
    let config = Config::from_vars(vars).expect("valid configuration");
    CredentialProvider::with_sdk(config, Some(&stack.moto.sdk_config().await))
}

/// An app role and a secret for it; returns (app, secret ARN, secret name).
pub async fn app_with_secret(stack: &Stack, prefix: &str) -> (AppDatabase, String, String) {
    let app = stack.create_app(prefix).await.expect("create app role");
    let name = Stack::secret_name(prefix);
    let arn = stack
        .create_secret(&name, &stack.secret_json(&app))
        .await
        .expect("create secret");
    (app, arn, name)
}

/// The standard secret JSON with `password` replaced.
pub fn with_password(stack: &Stack, app: &AppDatabase, password: &str) -> Value {
    devstack::evidence::record_secret(password);
    let mut v = stack.secret_json(app);
    v["password"] = json!(password);
    v
}

/// Secrets Manager client on the stack.
pub async fn sm(stack: &Stack) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await)
}

/// A query proving the connection works and who we are.
pub async fn whoami(conn: &db_credentials::Connection) -> String {
    let row = conn
        .client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    row.get(0)
}
