//! Rotations interrupted at every point where state changes, then retried with the same token
//! (issue: proof §2). After every stop the database password is AWSCURRENT's or AWSPENDING's and
//! items-api keeps serving; the retry converges; no AWSPENDING is left behind.
//!
//! In process: the rotation function with its test-only failpoints (cargo feature `failpoints`)
//! and items-api's handler with a new database connection per request.

use db_credentials::{Config as DbConfig, CredentialProvider, Database, SslMode, TlsSettings, connect};
use devstack::{RotationDriver, Stack, StepRunner, rotation_driver::RotationEvent, rotation_driver::Step};
use items_api::{App, Settings};
use rotation::{AwsRotator, Config, Failpoint};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct InProcess<'a>(&'a AwsRotator);

impl StepRunner for InProcess<'_> {
    async fn run(&self, event: &RotationEvent) -> Result<(), String> {
        self.0
            .handle_json(&event.payload())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Where a rotation is stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// A failpoint inside a step (right after a write, or just before/after the stage move).
    Failpoint(Failpoint),
    /// The function is not invoked again after this step (timeout, throttling, a crash between steps).
    AfterStep(Step),
    /// Postgres is down while this step runs.
    DatabaseDown(Step),
    /// Secrets Manager does not answer while this step runs.
    SecretsManagerHangs(Step),
}

fn stops(alternating: bool) -> Vec<Stop> {
    let mut v = vec![
        Stop::Failpoint(Failpoint::AfterPutSecretValue),
        Stop::Failpoint(Failpoint::AfterSetPassword),
        Stop::Failpoint(Failpoint::BeforeUpdateStage),
        Stop::Failpoint(Failpoint::AfterUpdateStage),
        Stop::AfterStep(Step::Create),
        Stop::AfterStep(Step::Set),
        Stop::AfterStep(Step::Test),
        Stop::DatabaseDown(Step::Set),
        Stop::DatabaseDown(Step::Test),
        Stop::SecretsManagerHangs(Step::Create),
        Stop::SecretsManagerHangs(Step::Finish),
    ];
    if alternating {
        v.push(Stop::Failpoint(Failpoint::AfterCreateClone));
    }
    v
}

async fn secret_at(sm: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> Option<Value> {
    let out = sm
        .get_secret_value()
        .secret_id(arn)
        .version_stage(stage)
        .send()
        .await
        .ok()?;
    serde_json::from_str(out.secret_string()?).ok()
}

async fn logs_in(stack: &Stack, secret: &Value) -> bool {
    let tls = TlsSettings {
        mode: SslMode::VerifyFull,
        root_cert: Some(stack.postgres.ca_cert()),
    };
    let creds = db_credentials::Credentials::new(
        secret["username"].as_str().unwrap_or_default(),
        SecretString::from(secret["password"].as_str().unwrap_or_default().to_owned()),
        "127.0.0.1",
        stack.postgres.port(),
        secret["dbname"].as_str().unwrap_or_default(),
        tls,
    );
    connect(&creds, Duration::from_secs(5), "fault-check").await.is_ok()
}

/// A burst through the API (fresh connection each): every request must succeed.
async fn api_serves(app: &App, round: &str) {
    for i in 0..6 {
        let (method, body) = if i % 2 == 0 {
            ("GET", None)
        } else {
            ("POST", Some(json!({"name": format!("{round}-{i}")}).to_string()))
        };
        let mut event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/items", "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": "/items"}, "stage": "$default", "requestId": format!("{round}-{i}")},
            "isBase64Encoded": false,
        });
        if let Some(b) = body {
            event["body"] = b.into();
        }
        let req = lambda_http::request::from_str(&event.to_string()).expect("event");
        let resp = app.handle(req).await;
        assert!(
            resp.status().is_success(),
            "{round}: {method} /items -> {} {:?}",
            resp.status(),
            resp.body()
        );
    }
}

async fn run(strategy: &str) {
    let _serial = SERIAL.lock().await;
    let stack = Stack::shared();
    let sdk = stack.moto.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let alternating = strategy == "alternating-users";
    let vars: db_credentials::config::Vars = [
        ("ROTATION_STRATEGY", strategy.to_owned()),
        ("DB_SSLMODE", "verify-full".to_owned()),
        ("DB_SSL_ROOT_CERT", stack.postgres.ca_cert().display().to_string()),
        ("DB_CONNECT_TIMEOUT_MS", "2000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Short SDK timeouts: the Secrets-Manager-hangs cases then fail in about a second, not eight.
    let impatient = sdk
        .to_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_attempt_timeout(Duration::from_millis(700))
                .operation_timeout(Duration::from_millis(1500))
                .build(),
        )
        .build();
    let rotator = AwsRotator::from_sdk(Config::from_vars(&vars).expect("rotation config"), &impatient);

    let driver = RotationDriver::new(&stack.moto).await.unwrap();
    let mut report = Vec::new();

    for stop in stops(alternating) {
        let round = format!("{strategy}/{stop:?}");
        let app_db = stack.create_app("fault").await.unwrap();
        let mut secret = stack.secret_json(&app_db);
        if alternating {
            let master = json!({"engine": "postgres", "host": "127.0.0.1", "port": stack.postgres.port(),
                "username": "postgres", "password": stack.postgres.superuser_password()});
            secret["masterarn"] = stack
                .create_secret(&Stack::secret_name("fault-master"), &master)
                .await
                .unwrap()
                .into();
        }
        let arn = stack
            .create_secret(&Stack::secret_name("fault"), &secret)
            .await
            .unwrap();
        let mut api_vars: db_credentials::config::Vars = stack.lambda_env(&arn).into_iter().collect();
        api_vars.insert("ITEMS_API_FRESH_CONNECTION_PER_REQUEST".into(), "true".into());
        let provider = CredentialProvider::with_sdk(DbConfig::from_vars(&api_vars).unwrap(), Some(&sdk));
        let app = App::new(
            Database::new(provider, "fault-test"),
            Settings::from_vars(&api_vars).unwrap(),
        );
        api_serves(&app, &round).await;

        // Run until the stop.
        let token = driver.begin(&arn).await.unwrap();
        let runner = InProcess(&rotator);
        let stopped = match stop {
            Stop::Failpoint(point) => {
                rotator.failpoints().arm(Some(point));
                let r = driver.run_steps(&arn, &token, &Step::ALL, &runner).await;
                rotator.failpoints().arm(None);
                r.err().map(|e| e.to_string())
            }
            Stop::AfterStep(last) => {
                let upto: Vec<Step> = Step::ALL
                    .iter()
                    .copied()
                    .take_while(|s| *s != last)
                    .chain([last])
                    .collect();
                driver.run_steps(&arn, &token, &upto, &runner).await.unwrap();
                Some(format!("not invoked after {}", last.as_str()))
            }
            Stop::DatabaseDown(step) => {
                let before: Vec<Step> = Step::ALL.iter().copied().take_while(|s| *s != step).collect();
                driver.run_steps(&arn, &token, &before, &runner).await.unwrap();
                stack.postgres.stop_server().unwrap();
                let r = driver.run_steps(&arn, &token, &[step], &runner).await;
                stack.postgres.start_server().unwrap();
                r.err().map(|e| e.to_string())
            }
            Stop::SecretsManagerHangs(step) => {
                let before: Vec<Step> = Step::ALL.iter().copied().take_while(|s| *s != step).collect();
                driver.run_steps(&arn, &token, &before, &runner).await.unwrap();
                stack.moto.pause().unwrap();
                let r = driver.run_steps(&arn, &token, &[step], &runner).await;
                stack.moto.resume().unwrap();
                r.err().map(|e| e.to_string())
            }
        };
        let stopped = stopped.unwrap_or_else(|| panic!("{round}: the rotation was not stopped"));

        // After the stop: the database accepts AWSCURRENT or AWSPENDING, and the API serves.
        let current = secret_at(&sm, &arn, "AWSCURRENT").await.expect("AWSCURRENT readable");
        let pending = secret_at(&sm, &arn, "AWSPENDING").await;
        let current_ok = logs_in(stack, &current).await;
        let pending_ok = match &pending {
            Some(p) => logs_in(stack, p).await,
            None => false,
        };
        assert!(
            current_ok || pending_ok,
            "{round}: neither AWSCURRENT nor AWSPENDING logs in after the stop"
        );
        api_serves(&app, &format!("{round} after stop")).await;

        // Retried with the same token, as the service does, until it converges.
        driver
            .resume(&arn, &token, &runner)
            .await
            .unwrap_or_else(|e| panic!("{round}: retry failed: {e}"));
        let desc = sm.describe_secret().secret_id(&arn).send().await.unwrap();
        let stages = desc.version_ids_to_stages().unwrap();
        assert_eq!(
            stages.get(&token).map(Vec::as_slice),
            Some(&["AWSCURRENT".to_owned()][..]),
            "{round}: {stages:?}"
        );
        assert!(
            !stages.values().flatten().any(|s| s == "AWSPENDING"),
            "{round}: AWSPENDING left behind"
        );
        let current = secret_at(&sm, &arn, "AWSCURRENT").await.unwrap();
        assert!(
            logs_in(stack, &current).await,
            "{round}: the new AWSCURRENT does not log in"
        );
        api_serves(&app, &format!("{round} after retry")).await;
        report.push(format!(
            "{round}: stopped ({}), converged",
            stopped.lines().next().unwrap_or_default()
        ));
    }
    println!("{}", report.join("\n"));
    println!("{strategy}: {} fault points, every one converged", report.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_rotation_converges_after_every_fault() {
    run("single-user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_users_rotation_converges_after_every_fault() {
    run("alternating-users").await;
}
