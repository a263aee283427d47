//! The floor of items-api's cold path, as a process of its own: what any function that answers
//! `GET /items?limit=50` from a Secrets Manager secret must do, with no application code around
//! it. Start the runtime, load the SDK configuration, one GetSecretValue, TCP, TLS (verify-full)
//! and SCRAM, the query; then print when each was done (ns since the Unix epoch, one JSON line)
//! so `make bench` can set them against the time it started the process.
//!
//! Environment: the same as the function's (`DB_SECRET_ARN`, `DB_SSL_ROOT_CERT`, `AWS_*`).

use serde_json::{Value, json};
use std::time::SystemTime;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let main_entered = now_ns();
    let secret_id = std::env::var("DB_SECRET_ARN")?;
    let ca = std::fs::read(std::env::var("DB_SSL_ROOT_CERT")?)?;

    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let sdk_loaded = now_ns();

    let out = sm
        .get_secret_value()
        .secret_id(&secret_id)
        .version_stage("AWSCURRENT")
        .send()
        .await?;
    let secret: Value = serde_json::from_str(out.secret_string().ok_or("the secret has no SecretString")?)?;
    let secret_fetched = now_ns();

    let field = |k: &str| secret[k].as_str().map(str::to_owned).ok_or(format!("secret lacks {k}"));
    let mut tls = native_tls::TlsConnector::builder();
    tls.disable_built_in_roots(true);
    for cert in native_tls::Certificate::stack_from_pem(&ca)? {
        tls.add_root_certificate(cert);
    }
    let tls = postgres_native_tls::MakeTlsConnector::new(tls.build()?);
    let (client, connection) = tokio_postgres::Config::new()
        .host(&field("host")?)
        .port(secret["port"].as_u64().ok_or("secret lacks port")?.try_into()?)
        .user(&field("username")?)
        .password(field("password")?)
        .dbname(&field("dbname")?)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect(tls)
        .await?;
    tokio::spawn(connection);
    let connected = now_ns();

    let limit: i64 = 50;
    let offset: i64 = 0;
    let rows = client
        .query(
            "SELECT id, name, description, created_at, updated_at FROM items ORDER BY id LIMIT $1 OFFSET $2",
            &[&limit, &offset],
        )
        .await?;
    let answered = now_ns();

    println!(
        "{}",
        json!({
            "rows": rows.len(),
            "main_entered": main_entered.to_string(),
            "sdk_loaded": sdk_loaded.to_string(),
            "secret_fetched": secret_fetched.to_string(),
            "connected": connected.to_string(),
            "answered": answered.to_string(),
        })
    );
    Ok(())
}
