//! What reaches the function's logs on a real rotation, at every level: facts (secret, step,
//! token, user, host, duration), never a password, the secret's JSON or the RotationToken.

use crate::support::*;
use devstack::capture::LogCapture;
use devstack::{Stack, Step};
use rotation::Strategy;
use serde_json::json;

#[tokio::test]
async fn trace_logs_of_a_real_rotation_hold_no_secret() {
    // With a single scoped dispatcher registered, tracing-core computes a callsite's interest
    // from whichever thread hits it first, so a test thread without a subscriber can switch our
    // callsites off for good. A second registered dispatcher makes it ask every dispatcher.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    // The evidence layer too: on this thread the scoped subscriber replaces the global one, so
    // without it these lines would escape the suite-wide leak check.
    use tracing_subscriber::layer::SubscriberExt;
    let logs = LogCapture::default();
    let subscriber = tracing_subscriber::registry()
        .with(rotation::logging::filter("trace"))
        .with(tracing_subscriber::fmt::layer().json().with_writer(logs.clone()))
        .with(devstack::evidence::layer());
    let _guard = tracing::subscriber::set_default(subscriber);

    let stack = Stack::shared();
    let app = stack.create_app("logs").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_secret(stack).await);
    let arn = stack.create_secret(&Stack::secret_name("logs"), &secret).await.unwrap();
    let driver = driver(stack).await;
    let mut tokens = Vec::new();
    let rotation_token = devstack::evidence::secret("rt-7f3a-do-not-log");
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let rotator = new_rotator(stack, &vars(stack, strategy, &[])).await;
        let token = driver.begin(&arn).await.unwrap();
        for step in Step::ALL {
            let event = json!({"SecretId": arn, "ClientRequestToken": token, "Step": step.as_str(),
                               "RotationToken": rotation_token});
            rotator.handle_json(&event).await.unwrap();
        }
        driver.end(&arn, &token).await.unwrap();
        tokens.push(token);
    }
    let text = logs.text();
    let mut secrets = vec![app.password.clone(), stack.postgres.superuser_password().to_owned()];
    for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
        secrets.push(user_and_password(&version(stack, &arn, stage).await.unwrap()).1);
    }
    secrets.extend([rotation_token.to_owned(), "SCRAM-SHA-256$".to_owned()]);
    let sightings = logs.secret_sightings(&secrets);
    assert!(sightings.is_empty(), "a secret reached the logs: {sightings:?}");
    for fact in [
        arn.as_str(),
        tokens[0].as_str(),
        tokens[1].as_str(),
        "createSecret",
        "finishSecret",
        "duration_ms",
    ] {
        assert!(text.contains(fact), "{fact} missing from the logs");
    }
    assert!(text.contains(&format!("\"user\":\"{}\"", app.role)), "user missing");
    assert!(
        text.contains(&format!("\"host\":\"127.0.0.1:{}\"", stack.postgres.port())),
        "host missing"
    );
}
