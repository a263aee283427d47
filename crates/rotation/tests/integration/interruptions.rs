//! A rotation stopped after each step, and (with the `failpoints` feature) right after each
//! write, then retried with the same token as the service does: it converges, and at every stop
//! the database accepts the AWSCURRENT or the AWSPENDING credentials.

use crate::support::*;
use devstack::{Stack, Step};
use rotation::Strategy;
use serde_json::{Value, json};

struct Case {
    arn: String,
    dbname: String,
}

async fn case(stack: &Stack, strategy: Strategy, prefix: &str) -> Case {
    let app = stack.create_app(prefix).await.unwrap();
    let mut secret = stack.secret_json(&app);
    if strategy == Strategy::AlternatingUsers {
        secret["masterarn"] = json!(master_secret(stack).await);
    }
    let arn = stack.create_secret(&Stack::secret_name(prefix), &secret).await.unwrap();
    Case {
        arn,
        dbname: app.dbname,
    }
}

/// The invariant at every stop. Alternating users: the current user never stops working.
async fn assert_current_or_pending_logs_in(stack: &Stack, c: &Case, strategy: Strategy, when: &str) {
    let current = current(stack, &c.arn).await;
    let pending: Option<Value> = version(stack, &c.arn, "AWSPENDING").await;
    let current_works = logs_in(stack, &current).await;
    let pending_works = match &pending {
        Some(p) => logs_in(stack, p).await,
        None => false,
    };
    assert!(
        current_works || pending_works,
        "{strategy} {when}: neither AWSCURRENT nor AWSPENDING logs in"
    );
    if strategy == Strategy::AlternatingUsers {
        assert!(current_works, "{strategy} {when}: the current user must keep working");
    }
    assert_eq!(current["dbname"], c.dbname.as_str());
}

async fn assert_converged(stack: &Stack, c: &Case, token: &str, old: &Value, strategy: Strategy, when: &str) {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let desc = sm.describe_secret().secret_id(&c.arn).send().await.unwrap();
    let stages = desc.version_ids_to_stages().unwrap();
    assert_eq!(stages[token], ["AWSCURRENT"], "{strategy} {when}");
    assert!(
        stages.values().all(|s| !s.iter().any(|l| l == "AWSPENDING")),
        "{strategy} {when}: AWSPENDING left"
    );
    let now = current(stack, &c.arn).await;
    assert!(logs_in(stack, &now).await, "{strategy} {when}");
    assert_ne!(now["password"], old["password"], "{strategy} {when}");
    if strategy == Strategy::SingleUser {
        assert_refused(stack, old, &format!("{strategy} {when}: the old password must be gone")).await;
    }
}

#[tokio::test]
async fn stopped_after_each_step_then_resumed_converges() {
    let stack = Stack::shared();
    let driver = driver(stack).await;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let c = case(stack, strategy, "stop").await;
        let rotator = new_rotator(stack, &vars(stack, strategy, &[])).await;
        // Each round also resumes the one before, so the alternating case passes the clone's
        // creation and later password changes alike.
        for done in 0..=Step::ALL.len() {
            let old = current(stack, &c.arn).await;
            let token = driver.begin(&c.arn).await.unwrap();
            driver
                .run_steps(&c.arn, &token, &Step::ALL[..done], &InProcess(&rotator))
                .await
                .unwrap();
            let when = format!("after {} steps", done);
            assert_current_or_pending_logs_in(stack, &c, strategy, &when).await;
            driver.resume(&c.arn, &token, &InProcess(&rotator)).await.unwrap();
            assert_converged(stack, &c, &token, &old, strategy, &when).await;
        }
    }
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn stopped_at_each_failpoint_then_resumed_converges() {
    use rotation::Failpoint;
    let stack = Stack::shared();
    let driver = driver(stack).await;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for point in Failpoint::ALL {
            if strategy == Strategy::SingleUser && point == Failpoint::AfterCreateClone {
                continue; // single user creates no clone; the model tests prove it never fires
            }
            let c = case(stack, strategy, "fail").await;
            let rotator = new_rotator(stack, &vars(stack, strategy, &[])).await;
            let old = current(stack, &c.arn).await;
            let token = driver.begin(&c.arn).await.unwrap();
            rotator.failpoints().arm(Some(point));
            let err = driver
                .run_steps(&c.arn, &token, &Step::ALL, &InProcess(&rotator))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(point.name()), "{strategy} {point:?}: {err}");
            let when = format!("at {}", point.name());
            assert_current_or_pending_logs_in(stack, &c, strategy, &when).await;
            driver.resume(&c.arn, &token, &InProcess(&rotator)).await.unwrap();
            assert_converged(stack, &c, &token, &old, strategy, &when).await;
        }
    }
}
