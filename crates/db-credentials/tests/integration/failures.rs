//! Each failure mode gives an error that names what is wrong and never a password.

use crate::common::*;
use db_credentials::{ConnectErrorKind, Database, aws::AwsErrorKind};
use devstack::{Moto, MotoOptions, Postgres, PostgresOptions, Stack, evidence::secret};
use serde_json::json;

#[tokio::test]
async fn missing_secret_is_named_and_reported_as_not_found() {
    let stack = Stack::shared();
    let err = provider(stack, &vars(stack, Some("app/does-not-exist"), &[]))
        .await
        .current()
        .await
        .unwrap_err();
    assert_eq!(err.aws().map(|e| e.kind), Some(AwsErrorKind::NotFound));
    assert!(err.to_string().contains("app/does-not-exist"), "{err}");
}

#[tokio::test]
async fn access_denied_is_reported_as_access_denied() {
    let moto = Moto::start(&MotoOptions {
        enforce_iam_after: Some(4),
    })
    .unwrap();
    let sdk = moto.sdk_config().await;
    let name = "app/guarded";
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(name)
        .secret_string(secret(r#"{"username":"u","password":"hunter2-guarded"}"#))
        .send()
        .await
        .unwrap();
    let policy = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:DescribeSecret","Resource":"*"}]});
    secret("hunter2-guarded");
    let (key, secret_key) = moto.create_iam_user("reader", &policy).unwrap();
    let secret_key = secret(secret_key);
    let mut v = moto.env().into_iter().collect::<db_credentials::config::Vars>();
    v.insert("DB_SECRET_ARN".into(), name.into());
    let config = db_credentials::Config::from_vars(&v).unwrap();
    let provider =
        db_credentials::CredentialProvider::with_sdk(config, Some(&moto.sdk_config_as(&key, &secret_key).await));
    let err = provider.current().await.unwrap_err();
    assert_eq!(err.aws().map(|e| e.kind), Some(AwsErrorKind::AccessDenied), "{err}");
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn malformed_json_and_missing_keys_name_the_secret_and_key() {
    let stack = Stack::shared();
    let sm = sm(stack).await;
    secret("hunter2-x");
    for (body, needle) in [
        (r#"{"username":"u","password":"hunter2-x""#.to_owned(), "not valid JSON"),
        (r#"{"username":"u","host":"h"}"#.to_owned(), "\"password\""),
        (r#"{"password":"hunter2-x","host":"h"}"#.to_owned(), "\"username\""),
        (
            r#"{"username":"u","password":"hunter2-x","port":"fivefour"}"#.to_owned(),
            "\"port\"",
        ),
    ] {
        let name = Stack::secret_name("malformed");
        sm.create_secret()
            .name(&name)
            .secret_string(secret(&body))
            .send()
            .await
            .unwrap();
        let msg = provider(stack, &vars(stack, Some(&name), &[]))
            .await
            .current()
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&name) && msg.contains(needle), "{msg}");
        assert!(!msg.contains("hunter2"), "value leaked: {msg}");
    }
}

#[tokio::test]
async fn wrong_password_with_nothing_newer_fails_naming_user_host_and_source() {
    let stack = Stack::shared();
    let app = stack.create_app("wrongpw").await.unwrap();
    let arn = stack
        .create_secret(
            &Stack::secret_name("wrongpw"),
            &with_password(stack, &app, "hunter2-wrong"),
        )
        .await
        .unwrap();
    let err = Database::new(provider(stack, &vars(stack, Some(&arn), &[])).await, "test")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ConnectErrorKind::Authentication);
    assert_eq!(err.sqlstate, Some(tokio_postgres::error::SqlState::INVALID_PASSWORD));
    let msg = err.to_string();
    assert!(
        msg.contains(&app.role) && msg.contains("127.0.0.1") && msg.contains("secretsmanager"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"));
}

#[tokio::test]
async fn tls_required_by_the_secret_is_never_downgraded() {
    let stack = Stack::shared();
    let plain = Postgres::start(&PostgresOptions {
        tls: false,
        log_statements: false,
        ..Default::default()
    })
    .unwrap();
    let password = secret("Pw-tls-only-1");
    plain.create_role("tlsonly", password).await.unwrap();
    let value = json!({"username":"tlsonly","password":password,"host":"127.0.0.1","port":plain.port(),"ssl":true});
    let arn = stack
        .create_secret(&Stack::secret_name("tlsreq"), &value)
        .await
        .unwrap();
    for sslmode in ["prefer", "require"] {
        let mut v = vars(stack, Some(&arn), &[("DB_SSLMODE", sslmode)]);
        v.remove("DB_SSL_ROOT_CERT");
        let err = Database::new(provider(stack, &v).await, "test")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind, ConnectErrorKind::Tls, "{sslmode}: {err}");
    }
    // Without the secret's ssl flag, prefer would fall back to plaintext; production forbids that.
    let v: db_credentials::config::Vars = [
        (
            "DATABASE_URL",
            secret(format!(
                "postgres://tlsonly:{password}@127.0.0.1:{}/postgres?sslmode=prefer",
                plain.port()
            )),
        ),
        ("ENVIRONMENT", "production".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let msg = db_credentials::Config::from_vars(&v)
        .map(|_| ())
        .err()
        .map(|e| e.to_string());
    let msg = match msg {
        Some(m) => m,
        None => provider(stack, &v).await.current().await.unwrap_err().to_string(),
    };
    assert!(msg.contains("production"), "{msg}");
}

#[tokio::test]
async fn ca_mismatch_fails_the_handshake_with_a_tls_error() {
    let stack = Stack::shared();
    let (_, arn, _) = app_with_secret(stack, "camismatch").await;
    let dir = std::env::temp_dir().join(format!("ca-mismatch-{}", devstack::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = devstack::postgres::unrelated_ca(&dir, "other-ca.pem").unwrap();
    let v = vars(stack, Some(&arn), &[("DB_SSL_ROOT_CERT", other.to_str().unwrap())]);
    let err = Database::new(provider(stack, &v).await, "test")
        .connect()
        .await
        .unwrap_err();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(err.kind, ConnectErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn stopped_postgres_is_reported_unreachable() {
    let pg = Postgres::start(&PostgresOptions::default()).unwrap();
    let password = secret("Pw-gone-1");
    pg.create_role("gone", password).await.unwrap();
    pg.stop_server().unwrap();
    let port = pg.port().to_string();
    let ca = pg.ca_cert().display().to_string();
    let v: db_credentials::config::Vars = [
        ("DATABASE_HOST", "127.0.0.1"),
        ("DATABASE_PORT", port.as_str()),
        ("DATABASE_USER", "gone"),
        ("DATABASE_PASSWORD", password),
        ("DB_SSL_ROOT_CERT", ca.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = db_credentials::Config::from_vars(&v).unwrap();
    let err = Database::new(db_credentials::CredentialProvider::with_sdk(config, None), "test")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ConnectErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn system_roots_verify_full_and_never_trust_an_unknown_ca() {
    let stack = Stack::shared();
    let (app, arn, _) = app_with_secret(stack, "systemroots").await;
    // The devstack's self-signed CA is in no operating system's store: with `system`, the
    // certificate must be refused (and with the devstack's CA file, accepted).
    let v = vars(
        stack,
        Some(&arn),
        &[("DB_SSL_ROOT_CERT", "system"), ("DB_SSLMODE", "verify-full")],
    );
    let err = Database::new(provider(stack, &v).await, "test")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ConnectErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    let ok = vars(stack, Some(&arn), &[("DB_SSLMODE", "verify-full")]);
    let conn = Database::new(provider(stack, &ok).await, "test")
        .connect()
        .await
        .unwrap();
    assert_eq!(whoami(&conn).await, app.role);
}

#[test]
fn verify_ca_without_a_root_stops_a_source_without_a_secret_at_start() {
    for (mode, root) in [
        ("verify-ca", None),
        ("verify-full", None),
        ("verify-ca", Some("system")),
    ] {
        let mut v: db_credentials::config::Vars = [
            ("DATABASE_URL", "postgres://u:topsecret@db.example.com/app"),
            ("DB_SSLMODE", mode),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(root) = root {
            v.insert("DB_SSL_ROOT_CERT".into(), root.into());
        }
        let msg = db_credentials::Config::from_vars(&v).unwrap_err().to_string();
        assert!(msg.contains("DB_SSL") && msg.contains(mode), "{mode} {root:?}: {msg}");
        assert!(!msg.contains("topsecret"));
    }
}
