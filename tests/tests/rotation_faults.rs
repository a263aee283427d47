//! Rotations interrupted at every point where state changes, then retried with the same token
//! (issue: proof §2). After every stop the database password is AWSCURRENT's or AWSPENDING's and
//! items-api keeps serving; the retry converges; no AWSPENDING is left behind.
//!
//! Every stop is matched to its cause: the step that failed must be the one the fault was put in,
//! and its error must be that fault (the armed failpoint by name, the database unreachable, a
//! Secrets Manager call timing out), so a stray error of another kind fails the case instead of
//! passing it. The SDK timeouts are shortened only for the rotator that meets the hang.
//!
//! In process: the rotation function with its test-only failpoints (cargo feature `failpoints`)
//! and items-api's handler with a new database connection per request.

use db_credentials::{
    Config as DbConfig, ConnectError, ConnectErrorKind, CredentialProvider, Database, SslMode, TlsSettings,
    aws::{AwsError, AwsErrorKind},
    connect,
};
use devstack::{RotationDriver, Stack, StepRunner, rotation_driver::RotationEvent, rotation_driver::Step};
use items_api::{App, Settings};
use rotation::{AwsRotator, Config, Failpoint, StepError};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::{sync::Mutex, time::Duration};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs each step in process and keeps the typed error of the last failure, so a stop can be
/// matched to its cause.
struct InProcess<'a> {
    rotator: &'a AwsRotator,
    last_error: Mutex<Option<StepError>>,
}

impl<'a> InProcess<'a> {
    fn new(rotator: &'a AwsRotator) -> Self {
        Self {
            rotator,
            last_error: Mutex::new(None),
        }
    }

    fn take_error(&self) -> Option<StepError> {
        self.last_error.lock().unwrap().take()
    }
}

impl StepRunner for InProcess<'_> {
    async fn run(&self, event: &RotationEvent) -> Result<(), String> {
        match self.rotator.handle_json(&event.payload()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let message = e.to_string();
                *self.last_error.lock().unwrap() = Some(e);
                Err(message)
            }
        }
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

impl Stop {
    /// The step this stop must fail, if it makes one fail.
    fn failing_step(self) -> Option<Step> {
        match self {
            Self::Failpoint(Failpoint::AfterPutSecretValue) => Some(Step::Create),
            Self::Failpoint(Failpoint::AfterSetPassword | Failpoint::AfterCreateClone) => Some(Step::Set),
            Self::Failpoint(Failpoint::BeforeUpdateStage | Failpoint::AfterUpdateStage) => Some(Step::Finish),
            Self::AfterStep(_) => None,
            Self::DatabaseDown(step) | Self::SecretsManagerHangs(step) => Some(step),
        }
    }

    /// Whether `error` is this stop's own doing; otherwise says what it was instead.
    fn caused(self, error: &StepError) -> Result<String, String> {
        let step = self.failing_step().map(Step::as_str);
        if error.step.map(|s| s.as_str()) != step {
            return Err(format!("expected {step:?} to fail, but {:?} did: {error}", error.step));
        }
        match self {
            Self::Failpoint(point) => match &error.error {
                rotation::Error::Failpoint { name } if *name == point.name() => {
                    Ok(format!("stopped by failpoint {name}"))
                }
                other => Err(format!("expected failpoint {}, got: {other}", point.name())),
            },
            Self::DatabaseDown(_) => match source::<ConnectError>(error) {
                Some(e) if e.kind == ConnectErrorKind::Unreachable => {
                    Ok(format!("stopped by the database being unreachable ({})", e.detail))
                }
                _ => Err(format!("expected the database to be unreachable, got: {error}")),
            },
            Self::SecretsManagerHangs(_) => match source::<AwsError>(error) {
                Some(e) if e.kind == AwsErrorKind::Timeout => Ok(format!("stopped by {} timing out", e.operation)),
                _ => Err(format!("expected a Secrets Manager call to time out, got: {error}")),
            },
            Self::AfterStep(_) => Err(format!("no step should fail, got: {error}")),
        }
    }
}

/// The first `E` in `error`'s chain of sources.
fn source<E: std::error::Error + 'static>(error: &StepError) -> Option<&E> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        // A boxed source is its own error type in the chain.
        if let Some(found) = e
            .downcast_ref::<E>()
            .or_else(|| e.downcast_ref::<Box<E>>().map(|b| &**b))
        {
            return Some(found);
        }
        next = e.source();
    }
    None
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

fn stop_step(stop: Stop) -> &'static str {
    match stop {
        Stop::AfterStep(step) => step.as_str(),
        _ => "-",
    }
}

/// The JSON of the version holding `stage`; `None` only when no version with a value holds it
/// (Secrets Manager says ResourceNotFound): any other failure is the test's to report.
async fn secret_at(sm: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> Option<Value> {
    match sm.get_secret_value().secret_id(arn).version_stage(stage).send().await {
        Ok(out) => {
            let text = out
                .secret_string()
                .unwrap_or_else(|| panic!("{stage} of {arn} has no SecretString"));
            Some(serde_json::from_str(text).unwrap_or_else(|e| panic!("{stage} of {arn} is not JSON: {e}")))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!(
            "reading {stage} of {arn}: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
        ),
    }
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
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Production timeouts everywhere but where the hang is the fault: a loaded machine must not
    // turn a slow call into a stop that passes for the one under test.
    let rotator = AwsRotator::from_sdk(Config::from_vars(&vars).expect("rotation config"), &sdk);
    // Short SDK timeouts for the Secrets-Manager-hangs cases only: they fail in about a second, not eight.
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
    let impatient_rotator = AwsRotator::from_sdk(Config::from_vars(&vars).expect("rotation config"), &impatient);

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
        let runner = InProcess::new(&rotator);
        let hang_runner = InProcess::new(&impatient_rotator);
        let failed = match stop {
            Stop::Failpoint(point) => {
                rotator.failpoints().arm(Some(point));
                let r = driver.run_steps(&arn, &token, &Step::ALL, &runner).await;
                rotator.failpoints().arm(None);
                r.err().map(|_| runner.take_error())
            }
            Stop::AfterStep(last) => {
                let upto: Vec<Step> = Step::ALL
                    .iter()
                    .copied()
                    .take_while(|s| *s != last)
                    .chain([last])
                    .collect();
                driver.run_steps(&arn, &token, &upto, &runner).await.unwrap();
                None
            }
            Stop::DatabaseDown(step) => {
                let before: Vec<Step> = Step::ALL.iter().copied().take_while(|s| *s != step).collect();
                driver.run_steps(&arn, &token, &before, &runner).await.unwrap();
                stack.postgres.stop_server().unwrap();
                let r = driver.run_steps(&arn, &token, &[step], &runner).await;
                stack.postgres.start_server().unwrap();
                r.err().map(|_| runner.take_error())
            }
            Stop::SecretsManagerHangs(step) => {
                let before: Vec<Step> = Step::ALL.iter().copied().take_while(|s| *s != step).collect();
                driver.run_steps(&arn, &token, &before, &runner).await.unwrap();
                stack.moto.pause().unwrap();
                let r = driver.run_steps(&arn, &token, &[step], &hang_runner).await;
                stack.moto.resume().unwrap();
                r.err().map(|_| hang_runner.take_error())
            }
        };
        let stopped = match (stop.failing_step(), failed) {
            (None, None) => format!("not invoked after {}", stop_step(stop)),
            (Some(_), None) => panic!("{round}: the rotation was not stopped"),
            (_, Some(None)) => panic!("{round}: a step failed outside the function (the driver's own call)"),
            (_, Some(Some(error))) => stop
                .caused(&error)
                .unwrap_or_else(|why| panic!("{round}: stopped, but not by the fault under test: {why}")),
        };

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
        report.push(format!("{round}: {stopped}, converged"));
    }
    println!("{}", report.join("\n"));
    println!(
        "{strategy}: {} fault points, every stop matched to its cause, every one converged",
        report.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_rotation_converges_after_every_fault() {
    run("single-user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_users_rotation_converges_after_every_fault() {
    run("alternating-users").await;
}
