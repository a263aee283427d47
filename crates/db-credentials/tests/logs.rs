//! Every log line the library writes during successes, refusals, recovery and failures,
//! captured at TRACE, holds no password.
//!
//! A test binary of its own with a global subscriber: tracing caches per-callsite interest
//! process-wide, so a thread-local subscriber in a binary whose other tests log from other
//! threads can miss events. The subscriber is installed through devstack's evidence, so the same
//! lines also reach the suite-wide leak check. Lines are searched as written and as their JSON
//! decodes, for every form of every password (see `devstack::evidence::forms`).

#[path = "integration/common.rs"]
#[allow(dead_code)] // shared with the integration binary, which uses all of it
mod common;

use common::*;
use db_credentials::{Config, Database, doctor::diagnose};
use devstack::Stack;
use devstack::capture::LogCapture;
use devstack::evidence::secret;

#[tokio::test]
async fn no_password_reaches_any_log_line() {
    let capture = LogCapture::default();
    devstack::evidence::init_tracing_with(tracing_subscriber::fmt::layer().json().with_writer(capture.clone()));

    let stack = Stack::shared();
    let mut passwords = Vec::new();

    // A normal connect, then the single-user window, then a wrong password, then doctor runs.
    let (app, arn, _) = app_with_secret(stack, "logs").await;
    passwords.push(app.password.clone());
    let db = Database::new(provider(stack, &vars(stack, Some(&arn), &[])).await, "test");
    db.connect().await.unwrap();
    let rotated = secret("Pw-logs-rotated-'\"\\ $$;--%é");
    passwords.push(rotated.to_owned());
    sm(stack)
        .await
        .put_secret_value()
        .secret_id(&arn)
        .client_request_token(uuid::Uuid::new_v4().to_string())
        .secret_string(with_password(stack, &app, rotated).to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    stack.postgres.set_password(&app.role, rotated).await.unwrap();
    db.connect().await.expect("pending fallback");

    let wrong = secret("Pw-logs-wrong-0000");
    passwords.push(wrong.to_owned());
    let bad = stack
        .create_secret(&Stack::secret_name("logsbad"), &with_password(stack, &app, wrong))
        .await
        .unwrap();
    let err = Database::new(provider(stack, &vars(stack, Some(&bad), &[])).await, "test")
        .connect()
        .await
        .unwrap_err();
    tracing::error!(error = %err, "as an application would log it");

    let malformed = Stack::secret_name("logsjson");
    let broken = secret("Pw-logs-in-broken-json");
    passwords.push(broken.to_owned());
    sm(stack)
        .await
        .create_secret()
        .name(&malformed)
        .secret_string(format!(r#"{{"username":"u","password":"{broken}","port":"x"}}"#))
        .send()
        .await
        .unwrap();
    let err = provider(stack, &vars(stack, Some(&malformed), &[]))
        .await
        .current()
        .await
        .unwrap_err();
    tracing::error!(error = %err, "as an application would log it");

    let report = diagnose(
        Config::from_vars(&vars(stack, Some(&arn), &[])),
        Some(stack.moto.sdk_config().await),
    )
    .await;
    tracing::info!(report = %report.to_text(), "doctor report");

    let logs = capture.text();
    assert!(logs.contains("database credentials resolved"), "the capture works");
    assert!(
        logs.contains("database refused the credentials"),
        "the refusal was logged"
    );
    let sightings = capture.secret_sightings(&passwords);
    assert!(sightings.is_empty(), "a password reached the logs: {sightings:?}");
}
