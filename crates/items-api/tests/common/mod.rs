//! Shared test set-up: an App over the shared devstack.

#![allow(dead_code)]

pub mod events;

use db_credentials::{Config, CredentialProvider, Database, config::Vars};
use devstack::{AppDatabase, Stack};
use http::Response;
use items_api::{App, Settings, db::RetryPolicy};
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
    app_with_retry(stack, vars, RetryPolicy::default()).await
}

/// An App over `vars` that waits for the database as `retry` says.
pub async fn app_with_retry(stack: &Stack, vars: &Vars, retry: RetryPolicy) -> App {
    let config = Config::from_vars(vars).expect("config");
    let provider = CredentialProvider::with_sdk(config, Some(&stack.moto.sdk_config().await));
    App::new(Database::new(provider, "items-api-test"), settings(vars, retry))
}

/// An App over `vars` that needs no AWS (a `DATABASE_URL`, discrete variables).
pub async fn app_for(vars: &Vars, retry: RetryPolicy) -> App {
    let config = Config::from_vars(vars).expect("config");
    App::new(
        Database::new(CredentialProvider::with_sdk(config, None), "items-api-test"),
        settings(vars, retry),
    )
}

fn settings(vars: &Vars, retry: RetryPolicy) -> Settings {
    Settings {
        retry,
        ..Settings::from_vars(vars).expect("settings")
    }
}

/// Variables for an App reaching `db` through a `DATABASE_URL` (no AWS calls: for tests about the
/// database, not the secret), on `port` (the shared server's when `None`).
pub fn url_vars(stack: &Stack, db: &AppDatabase, port: Option<u16>) -> Vars {
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
        db.role,
        db.password,
        port.unwrap_or_else(|| stack.postgres.port()),
        db.dbname,
        stack.postgres.ca_cert().display()
    );
    [("DATABASE_URL".to_owned(), url)].into_iter().collect()
}

/// A retry budget of one second, for tests that expect a 503 when it runs out.
pub fn short_retry() -> RetryPolicy {
    RetryPolicy {
        budget: std::time::Duration::from_secs(1),
        ..RetryPolicy::default()
    }
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

/// A loopback TCP forwarder to the shared database that, once armed, drops the next connection
/// whose server sends anything: the server has then answered (a statement it ran and committed),
/// and the client never hears it. What a client sees when a node fails right after a commit.
pub struct DropProxy {
    /// The port to connect to.
    pub port: u16,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DropProxy {
    /// Starts forwarding to `target_port` on 127.0.0.1.
    pub async fn start(target_port: u16) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, AtomicUsize, Ordering},
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (a, d) = (armed.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await else {
                    continue;
                };
                let (armed, dropped) = (a.clone(), d.clone());
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if armed.swap(false, Ordering::SeqCst) {
                            dropped.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    upstream.abort();
                });
            }
        });
        Self { port, armed, dropped }
    }

    /// Drops the next connection that hears from its server.
    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many connections it dropped.
    pub fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}
