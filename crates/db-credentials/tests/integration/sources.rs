//! Every credential source, end to end against the devstack.

use crate::common::*;
use db_credentials::{Database, SourceKind, SslMode, connect};
use devstack::Stack;
use secrecy::ExposeSecret;
use std::time::Duration;

#[tokio::test]
async fn secrets_manager_source_connects_with_verify_full() {
    let stack = Stack::shared();
    let (app, arn, _) = app_with_secret(stack, "sm").await;
    let provider = provider(stack, &vars(stack, Some(&arn), &[])).await;
    let creds = provider.current().await.expect("credentials");
    assert_eq!(creds.origin.source, SourceKind::SecretsManager);
    assert_eq!(
        creds.tls.mode,
        SslMode::VerifyFull,
        "a root certificate makes verify-full the default"
    );
    assert!(creds.origin.version_id.is_some());
    let db = Database::new(provider, "test");
    let conn = db.connect().await.expect("connect");
    assert_eq!(whoami(&conn).await, app.role);
    assert!(conn.info.tls_in_use);
}

#[tokio::test]
async fn overrides_replace_host_port_and_database_from_the_secret() {
    let stack = Stack::shared();
    let app = stack.create_app("ovr").await.unwrap();
    let mut json = stack.secret_json(&app);
    json["host"] = "db.invalid".into();
    json["port"] = 1.into();
    json["dbname"] = "nope".into();
    let arn = stack.create_secret(&Stack::secret_name("ovr"), &json).await.unwrap();
    let port = stack.postgres.port().to_string();
    let v = vars(
        stack,
        Some(&arn),
        &[
            ("DATABASE_HOST", "127.0.0.1"),
            ("DATABASE_PORT", &port),
            ("DATABASE_NAME", &app.dbname),
        ],
    );
    let conn = Database::new(provider(stack, &v).await, "test")
        .connect()
        .await
        .expect("overrides win");
    assert_eq!(whoami(&conn).await, app.role);
}

#[tokio::test]
async fn ssm_source_reads_secure_string_parameters_and_connects() {
    let stack = Stack::shared();
    let app = stack.create_app("ssm").await.unwrap();
    let ssm = aws_sdk_ssm::Client::new(&stack.moto.sdk_config().await);
    let prefix = format!("/{}/", Stack::secret_name("params"));
    let put = |name: &str, value: String, secure: bool| {
        let ssm = ssm.clone();
        let name = format!("{prefix}{name}");
        async move {
            let kind = if secure {
                aws_sdk_ssm::types::ParameterType::SecureString
            } else {
                aws_sdk_ssm::types::ParameterType::String
            };
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(kind)
                .send()
                .await
                .expect("put parameter");
        }
    };
    put("db-endpoint", format!("127.0.0.1:{}", stack.postgres.port()), false).await;
    put("db-username", app.role.clone(), false).await;
    put("db-password", app.password.clone(), true).await;
    put("db-name", app.dbname.clone(), false).await;
    let v = vars(stack, None, &[("DB_SSM_PREFIX", prefix.trim_end_matches('/'))]);
    let provider = provider(stack, &v).await;
    let creds = provider.current().await.expect("credentials from SSM");
    assert_eq!(creds.origin.source, SourceKind::Ssm);
    assert_eq!(
        (creds.host.as_str(), creds.port),
        ("127.0.0.1", stack.postgres.port()),
        "host:port endpoint is split"
    );
    assert_eq!(creds.origin.version_id.as_deref(), Some("ssm-v1"));
    let conn = Database::new(provider, "test").connect().await.expect("connect");
    assert_eq!(whoami(&conn).await, app.role);
}

#[tokio::test]
async fn ssm_source_names_missing_parameters() {
    let stack = Stack::shared();
    let v = vars(stack, None, &[("DB_SSM_PREFIX", "/nothing/here/")]);
    let err = provider(stack, &v).await.current().await.unwrap_err().to_string();
    assert!(
        err.contains("/nothing/here/db-endpoint") && err.contains("/nothing/here/db-password"),
        "{err}"
    );
}

#[tokio::test]
async fn url_source_decodes_special_characters_and_connects() {
    let stack = Stack::shared();
    let role = format!("url_{}", &devstack::random_token()[..8]);
    let password = "p@ss:w/rd %?#&=+ é";
    stack.postgres.create_role(&role, password).await.unwrap();
    let encoded: String =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC).to_string();
    let url = format!(
        "postgres://{role}:{encoded}@localhost:{}/postgres?sslmode=verify-full",
        stack.postgres.port()
    );
    let v = vars(stack, None, &[("DATABASE_URL", &url)]);
    let conn = Database::new(provider(stack, &v).await, "test")
        .connect()
        .await
        .expect("connect with URL");
    assert_eq!(whoami(&conn).await, role);
    assert_eq!(
        conn.info.tls_mode,
        SslMode::VerifyFull,
        "verify-full against localhost (a SAN of the test cert)"
    );
}

#[tokio::test]
async fn url_parameters_reach_the_session_as_libpq_would_send_them() {
    let stack = Stack::shared();
    let app = stack.create_app("urlparams").await.unwrap();
    let encoded: String =
        percent_encoding::utf8_percent_encode(&app.password, percent_encoding::NON_ALPHANUMERIC).to_string();
    // No path: libpq's database is the user's name, which does not exist here.
    let url = format!(
        "postgres://{}:{encoded}@127.0.0.1:{}?connect_timeout=3",
        app.role,
        stack.postgres.port()
    );
    let err = Database::new(
        provider(stack, &vars(stack, None, &[("DATABASE_URL", &url)])).await,
        "test",
    )
    .connect()
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("database \"{}\" does not exist", app.role)),
        "{err}"
    );
    let url = format!(
        "postgres://{}:{encoded}@127.0.0.1:{}/{}?application_name=nightly+batch&target_session_attrs=read-write",
        app.role,
        stack.postgres.port(),
        app.dbname
    );
    let db = Database::new(
        provider(stack, &vars(stack, None, &[("DATABASE_URL", &url)])).await,
        "test",
    );
    assert_eq!(db.target(), db_credentials::SessionTarget::ReadWrite);
    let conn = db.connect().await.expect("a writer");
    let name: String = conn
        .client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        name, "nightly+batch",
        "+ is a plus, and the URL's name wins over the function's"
    );
    assert!(!conn.is_read_only());
}

#[tokio::test]
async fn env_source_accepts_the_older_db_password_name() {
    let stack = Stack::shared();
    let app = stack.create_app("envsrc").await.unwrap();
    let port = stack.postgres.port().to_string();
    let v = vars(
        stack,
        None,
        &[
            ("DATABASE_HOST", "127.0.0.1"),
            ("DATABASE_PORT", &port),
            ("DATABASE_USER", &app.role),
            ("DATABASE_NAME", &app.dbname),
            ("DB_PASSWORD", &app.password),
        ],
    );
    let provider = provider(stack, &v).await;
    assert_eq!(provider.kind(), SourceKind::Env);
    let conn = Database::new(provider, "test").connect().await.expect("connect");
    assert_eq!(whoami(&conn).await, app.role);
}

#[tokio::test]
async fn iam_source_makes_a_signed_token_per_connection_and_requires_tls() {
    let stack = Stack::shared();
    let port = stack.postgres.port().to_string();
    let v = vars(
        stack,
        None,
        &[
            ("DB_IAM_AUTH", "true"),
            ("DATABASE_HOST", "127.0.0.1"),
            ("DATABASE_PORT", &port),
            ("DATABASE_USER", "iam_user"),
        ],
    );
    let provider = provider(stack, &v).await;
    let first = provider.current().await.expect("token");
    let token = record_iam_token(first.password.expose_secret());
    assert!(
        token.starts_with(&format!("127.0.0.1:{port}/?Action=connect&DBUser=iam_user")),
        "token shape"
    );
    assert!(token.contains("X-Amz-Signature="));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = provider.current().await.unwrap();
    record_iam_token(second.password.expose_secret());
    assert_ne!(
        second.password.expose_secret(),
        token,
        "a new token per connection (signed at a new time)"
    );
    // The local server cannot check IAM tokens: the login is refused, and the error says so plainly.
    let err = connect(&first, Duration::from_secs(5), "test").await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("iam_user") && msg.contains("127.0.0.1") && msg.contains("credentials from iam"),
        "{msg}"
    );
    assert!(!msg.contains("X-Amz-Signature"), "token leaked: {msg}");

    let plaintext = vars(
        stack,
        None,
        &[
            ("DB_IAM_AUTH", "true"),
            ("DATABASE_HOST", "h"),
            ("DATABASE_USER", "u"),
            ("DB_SSLMODE", "disable"),
        ],
    );
    let err = crate::common::provider(stack, &plaintext)
        .await
        .current()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("requires TLS"), "{err}");
}

#[tokio::test]
async fn rds_managed_master_secret_gets_host_and_port_from_the_rds_api() {
    let stack = Stack::shared();
    // Arranged without retries: a retried CreateDBInstance answers DBInstanceAlreadyExists.
    let rds = aws_sdk_rds::Client::new(&stack.moto.setup_sdk_config().await);
    let id = format!("items{}", &devstack::random_token()[..8]);
    let created = rds
        .create_db_instance()
        .db_instance_identifier(&id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("postgres")
        .master_user_password(devstack::evidence::secret("Unused-In-This-Test-1"))
        .allocated_storage(20)
        .send()
        .await
        .expect("create instance in moto");
    let endpoint = created
        .db_instance()
        .and_then(|i| i.endpoint())
        .and_then(|e| e.address())
        .unwrap()
        .to_owned();
    let name = Stack::secret_name("rdsmanaged");
    let sm = sm(stack).await;
    for password in ["Pw-rds-managed-unused", "Pw-rds-keyed-unused", "Pw-rds-bare-unused"] {
        devstack::evidence::record_secret(password);
    }
    sm.create_secret()
        .name(&name)
        .secret_string(devstack::evidence::secret(
            r#"{"username":"postgres","password":"Pw-rds-managed-unused"}"#,
        ))
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("aws:rds:primaryDBInstanceArn")
                .value(format!("arn:aws:rds:us-east-1:123456789012:db:{id}"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let creds = provider(stack, &vars(stack, Some(&name), &[]))
        .await
        .current()
        .await
        .expect("resolved through RDS");
    assert_eq!(creds.host, endpoint);
    assert_eq!(creds.port, 5432);

    let keyed = Stack::secret_name("rdskeyed");
    sm.create_secret()
        .name(&keyed)
        .secret_string(format!(
            r#"{{"username":"u","password":"Pw-rds-keyed-unused","dbInstanceIdentifier":"{id}"}}"#
        ))
        .send()
        .await
        .unwrap();
    let creds = provider(stack, &vars(stack, Some(&keyed), &[]))
        .await
        .current()
        .await
        .unwrap();
    assert_eq!(creds.host, endpoint, "dbInstanceIdentifier key works too");

    let bare = Stack::secret_name("rdsbare");
    sm.create_secret()
        .name(&bare)
        .secret_string(devstack::evidence::secret(
            r#"{"username":"u","password":"Pw-rds-bare-unused"}"#,
        ))
        .send()
        .await
        .unwrap();
    let err = provider(stack, &vars(stack, Some(&bare), &[]))
        .await
        .current()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no host") && err.contains("DATABASE_HOST"), "{err}");
}

/// Records an IAM auth token the provider handed out, and its signature on its own (the part that
/// would let someone log in), for the leak check.
fn record_iam_token(token: &str) -> String {
    devstack::evidence::record_secret(token);
    if let Some(signature) = token.split("X-Amz-Signature=").nth(1) {
        devstack::evidence::record_secret(signature.split('&').next().unwrap_or(signature));
    }
    token.to_owned()
}
