//! Two full rotations in a row for each strategy through the built rotation binary, invoked with
//! `cargo lambda invoke` against `cargo lambda watch`; after each, the new AWSCURRENT logs in and
//! (single user) the old password no longer does.

use db_credentials::{Credentials, SslMode, TlsSettings, connect};
use devstack::{
    RotationDriver, Stack, Watch,
    rotation_driver::{CargoLambdaInvoke, InvokeApi},
    watch::workspace_root,
};
use serde_json::{Value, json};
use std::time::Duration;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn current(sm: &aws_sdk_secretsmanager::Client, arn: &str) -> Value {
    let out = sm
        .get_secret_value()
        .secret_id(arn)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    serde_json::from_str(out.secret_string().unwrap()).unwrap()
}

async fn login(stack: &Stack, secret: &Value) -> Result<(), db_credentials::ConnectError> {
    let creds = Credentials::new(
        secret["username"].as_str().unwrap(),
        secrecy::SecretString::from(secret["password"].as_str().unwrap().to_owned()),
        "127.0.0.1",
        stack.postgres.port(),
        secret["dbname"].as_str().unwrap(),
        TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(stack.postgres.ca_cert()),
        },
    );
    connect(&creds, Duration::from_secs(5), "rotation-binary-test")
        .await
        .map(drop)
}

async fn logs_in(stack: &Stack, secret: &Value) -> bool {
    login(stack, secret).await.is_ok()
}

async fn rotate_twice(strategy: &str) {
    let _serial = SERIAL.lock().await;
    let stack = Stack::shared();
    let app = stack.create_app(&format!("bin_{}", &strategy[..3])).await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["note"] = "kept by rotation".into();
    if strategy == "alternating-users" {
        let master = json!({"engine": "postgres", "host": "127.0.0.1", "port": stack.postgres.port(),
            "username": "postgres", "password": stack.postgres.superuser_password()});
        secret["masterarn"] = stack
            .create_secret(&Stack::secret_name("bin-master"), &master)
            .await
            .unwrap()
            .into();
    }
    let arn = stack.create_secret(&Stack::secret_name("bin"), &secret).await.unwrap();
    let mut env = stack.moto.env();
    env.extend([
        ("ROTATION_STRATEGY".to_owned(), strategy.to_owned()),
        ("DB_SSLMODE".to_owned(), "verify-full".to_owned()),
        (
            "DB_SSL_ROOT_CERT".to_owned(),
            stack.postgres.ca_cert().display().to_string(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned()),
    ]);
    let mut watch = Watch::start(&workspace_root(env!("CARGO_MANIFEST_DIR")), &env, &[]).expect("watch starts");
    watch
        .wait_listening(Duration::from_secs(60))
        .await
        .expect("watch listens");

    let driver = RotationDriver::new(&stack.moto).await.unwrap();
    let runner = CargoLambdaInvoke {
        port: watch.port(),
        function: "rotation".to_owned(),
    };
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let invoke = InvokeApi::new(&watch.base_url(), "rotation");

    // The operator's events go through the same binary: a preflight that passes before the first
    // rotation, and (below) a revoke after the last.
    let preflight = invoke
        .invoke(&json!({"Preflight": {"SecretId": arn}}))
        .await
        .unwrap_or_else(|e| panic!("{strategy} preflight: {e}\n{}", watch.output()));
    assert_eq!(preflight["ok"], true, "{preflight:#}");
    assert!(preflight["checks"].as_array().unwrap().len() >= 11, "{preflight:#}");

    let mut previous = current(&sm, &arn).await;
    for round in 1..=2 {
        let report = driver
            .rotate(&arn, &runner)
            .await
            .unwrap_or_else(|e| panic!("{strategy} rotation {round}: {e}\n{}", watch.output()));
        let now = current(&sm, &arn).await;
        assert_ne!(
            now["password"], previous["password"],
            "{strategy} rotation {round}: the password changed"
        );
        assert!(
            logs_in(stack, &now).await,
            "{strategy} rotation {round}: the new AWSCURRENT logs in"
        );
        assert_eq!(now["note"], secret["note"], "unknown keys are kept");
        match strategy {
            "single-user" => {
                assert_eq!(now["username"], previous["username"]);
                match login(stack, &previous).await {
                    Err(e) if e.is_auth() => {}
                    other => panic!("single user: the old password must be refused as wrong, got {other:?}"),
                }
            }
            _ => {
                assert_ne!(now["username"], previous["username"], "alternating: the other user");
                assert!(
                    logs_in(stack, &previous).await,
                    "alternating: the previous user still logs in"
                );
            }
        }
        let desc = sm.describe_secret().secret_id(&arn).send().await.unwrap();
        let stages = desc.version_ids_to_stages().unwrap();
        assert_eq!(
            stages.get(&report.token).map(Vec::as_slice),
            Some(&["AWSCURRENT".to_owned()][..])
        );
        println!(
            "{strategy} rotation {round} through cargo lambda invoke: {:.0} ms ({})",
            report.total.as_secs_f64() * 1000.0,
            report
                .steps
                .iter()
                .map(|(s, d)| format!("{} {:.0} ms", s.as_str(), d.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        previous = now;
    }
    let revoked = invoke
        .invoke(&json!({"Revoke": {"SecretId": arn, "GraceSeconds": 0}}))
        .await
        .unwrap_or_else(|e| panic!("{strategy} revoke: {e}\n{}", watch.output()));
    assert_eq!(
        revoked["passwordReplaced"],
        strategy == "alternating-users",
        "{revoked:#}"
    );
    assert!(
        logs_in(stack, &previous).await,
        "AWSCURRENT still logs in after the revoke"
    );
    let mixed = invoke
        .invoke(&json!({"Revoke": {"SecretId": arn}, "Step": "createSecret"}))
        .await
        .unwrap_err();
    assert!(mixed.contains("refusing to guess"), "{mixed}");
    let output = watch.output();
    let secrets = [
        previous["password"].as_str().unwrap(),
        driver.rotation_token(),
        app.password.as_str(),
    ];
    let sightings = devstack::capture::secret_sightings(&output, &secrets);
    assert!(
        sightings.is_empty(),
        "a password or the RotationToken (#1) reached the function's output: {sightings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_rotates_twice_through_cargo_lambda_invoke() {
    rotate_twice("single-user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_users_rotates_twice_through_cargo_lambda_invoke() {
    rotate_twice("alternating-users").await;
}
