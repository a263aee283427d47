//! Time bounds, logs, whole rotations (§d 35–37).

use super::*;

#[tokio::test]
async fn unreachable_database_fails_fast_with_a_clear_error() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.state().unreachable = true;
    for step in [Step::Set, Step::Test] {
        let before = h.db.connects().len();
        let err = message(h.step(&token, step).await);
        assert!(
            err.contains("cannot connect to Postgres at db.internal:5432") && err.contains("refused"),
            "{err}"
        );
        assert_eq!(
            h.db.connects().len(),
            before + 1,
            "{step}: one attempt, not one per password"
        );
    }
}

#[tokio::test]
async fn hanging_database_is_bounded_by_the_connect_timeout_and_the_step_budget() {
    let h = harness_with(
        Strategy::SingleUser,
        &[("DB_CONNECT_TIMEOUT_MS", "5000"), ("ROTATION_STEP_TIMEOUT_MS", "1000")],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.state().hang = true;
    for step in [Step::Set, Step::Test] {
        let started = Instant::now();
        let err = message(h.step(&token, step).await);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{step} took {took:?}");
        assert!(err.contains("no answer") || err.contains("within 1000 ms"), "{err}");
    }
    let h = harness_with(Strategy::SingleUser, &[("DB_CONNECT_TIMEOUT_MS", "300")]);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.state().hang = true;
    let started = Instant::now();
    message(h.step(&token, Step::Set).await);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "one timeout, not one per password"
    );
    assert_eq!(h.db.connects().len(), 1);
}

#[tokio::test]
async fn rotation_token_is_forwarded_to_put_secret_value_and_no_secret_is_logged() {
    // With a single scoped dispatcher registered, tracing-core computes a callsite's interest
    // from whichever thread hits it first, so a test thread without a subscriber can switch our
    // callsites off for good. A second registered dispatcher makes it ask every dispatcher.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    let logs = devstack::capture::LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    for step in Step::ALL {
        let payload = json!({
            "SecretId": h.arn, "ClientRequestToken": token, "Step": step.as_str(),
            "RotationToken": "rt-0123-hunter2",
        });
        h.rotator.handle_json(&payload).await.unwrap();
    }
    h.db.state().unreachable = true;
    let next = h.begin();
    h.step(&next, Step::Create).await.unwrap();
    h.step(&next, Step::Set).await.unwrap_err();

    assert_eq!(
        h.model().rotation_tokens(),
        vec![Some("rt-0123-hunter2".to_owned()), None]
    );
    let text = logs.text();
    let current = h.json(AWSCURRENT);
    let pending = h.pending();
    for secret in [
        "rt-0123-hunter2",
        "pw-0",
        current["password"].as_str().unwrap(),
        pending["password"].as_str().unwrap(),
        "\"team\"",
    ] {
        assert!(!text.contains(secret), "{secret} reached the logs:\n{text}");
    }
    for fact in [
        h.arn.as_str(),
        token.as_str(),
        "setSecret",
        "\"user\":\"app\"",
        "db.internal:5432",
        "duration_ms",
    ] {
        assert!(text.contains(fact), "{fact} missing from the logs:\n{text}");
    }
}

#[tokio::test]
async fn full_rotation_twice_in_a_row_single_user() {
    let h = harness(Strategy::SingleUser);
    let mut passwords = vec!["pw-0".to_owned()];
    for _ in 0..2 {
        let before = h.model().version_with(&h.arn, AWSCURRENT).unwrap();
        let token = h.rotate().await;
        let stages = h.model().stages(&h.arn);
        assert_eq!(stages[&token], vec![AWSCURRENT]);
        assert_eq!(stages[&before], vec![AWSPREVIOUS]);
        let password = h.json(AWSCURRENT)["password"].as_str().unwrap().to_owned();
        assert!(h.db.logs_in("app", &password));
        assert!(!passwords.contains(&password));
        passwords.push(password);
    }
    assert!(!h.db.logs_in("app", "pw-0"));
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn stopped_at_every_failpoint_then_retried_with_the_same_token_converges() {
    use crate::failpoint::Failpoint;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for point in Failpoint::ALL {
            let h = harness(strategy);
            let token = h.begin();
            h.rotator.failpoints().arm(Some(point));
            if strategy == Strategy::SingleUser && point == Failpoint::AfterCreateClone {
                // Single user creates no clone: the point is never passed.
                h.steps(&token, &Step::ALL).await.unwrap();
                continue;
            }
            let err = h.steps(&token, &Step::ALL).await.unwrap_err().to_string();
            assert!(err.contains(point.name()), "{strategy} {point:?}: {err}");
            let user = h.json(AWSCURRENT)["username"].as_str().unwrap().to_owned();
            let current = h.json(AWSCURRENT)["password"].as_str().unwrap().to_owned();
            let pending = h.model().value(&h.arn, AWSPENDING);
            let pending = pending.map(|p| serde_json::from_str::<Value>(&p).unwrap());
            let pending_works = pending.as_ref().is_some_and(|p| {
                h.db.logs_in(p["username"].as_str().unwrap(), p["password"].as_str().unwrap())
            });
            assert!(h.db.logs_in(&user, &current) || pending_works, "{strategy} {point:?}");
            h.steps(&token, &Step::ALL).await.unwrap();
            h.model().end_rotation(&h.arn);
            let now = h.json(AWSCURRENT);
            assert!(h.db.logs_in(now["username"].as_str().unwrap(), now["password"].as_str().unwrap()));
            assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token));
            assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 1, "{strategy} {point:?}");
        }
    }
}

#[test]
fn a_deadline_already_past_is_an_emulators_placeholder_not_a_budget() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let h = harness_with(Strategy::SingleUser, &[("ROTATION_STEP_TIMEOUT_MS", "20000")]);
    let full = Duration::from_secs(20);
    // cargo lambda watch sends Lambda-Runtime-Deadline-Ms: 600000.
    assert_eq!(h.rotator.budget(Some(UNIX_EPOCH + Duration::from_secs(600))), full);
    assert_eq!(h.rotator.budget(None), full);
    let soon = h.rotator.budget(Some(SystemTime::now() + Duration::from_millis(3000)));
    assert!(
        soon < Duration::from_millis(2600) && soon > Duration::from_millis(2000),
        "{soon:?}"
    );
    let nearly = h.rotator.budget(Some(SystemTime::now() + Duration::from_millis(600)));
    assert_eq!(nearly, Duration::from_secs(1), "the floor for a deadline about to pass");
}
