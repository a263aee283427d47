//! Event and stage validation (§d 1–7).

use super::*;

#[tokio::test]
async fn unknown_step_is_refused_before_any_call() {
    let h = harness(Strategy::SingleUser);
    let err = h
        .rotator
        .handle_json(&json!({"SecretId": h.arn, "ClientRequestToken": "t", "Step": "rotate"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown rotation step \"rotate\""), "{err}");
    assert_eq!(h.model().calls(op::DESCRIBE), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn missing_event_keys_are_refused_before_any_call() {
    let h = harness(Strategy::SingleUser);
    for (payload, key) in [
        (json!({"ClientRequestToken": "t", "Step": "createSecret"}), "SecretId"),
        (json!({"SecretId": h.arn, "Step": "createSecret"}), "ClientRequestToken"),
        (json!({"SecretId": h.arn, "ClientRequestToken": "t"}), "Step"),
    ] {
        let err = h.rotator.handle_json(&payload).await.unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    assert_eq!(h.model().calls(op::DESCRIBE), 0);
}

#[tokio::test]
async fn rotation_disabled_is_refused_and_absent_flag_proceeds() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.model().set_rotation_enabled(&h.arn, Some(false));
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("is not enabled for rotation"), "{err}");
    assert_eq!(h.model().writes(), 0);
    h.model().set_rotation_enabled(&h.arn, None);
    assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::Created);
}

#[tokio::test]
async fn token_that_is_not_a_version_is_refused_for_every_step() {
    let h = harness(Strategy::SingleUser);
    for step in Step::ALL {
        let err = message(h.step("no-such-version", step).await);
        assert!(err.contains("has no stage for rotation"), "{step}: {err}");
    }
    assert_eq!(h.model().writes(), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn token_without_awspending_is_refused_for_every_step() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "old",
        Some(&secret_json("app", "older").to_string()),
        &[AWSPREVIOUS],
    );
    for step in Step::ALL {
        let err = message(h.step("old", step).await);
        assert!(err.contains("not set as AWSPENDING"), "{step}: {err}");
    }
    assert_eq!(h.model().writes(), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn foreign_pending_version_is_refused() {
    let h = harness(Strategy::SingleUser);
    let theirs = h.begin();
    h.step(&theirs, Step::Create).await.unwrap();
    let value_before = h.pending();
    h.model().put_version(
        &h.arn,
        "ours",
        Some(&secret_json("app", "older").to_string()),
        &[AWSPREVIOUS],
    );
    for (token, step) in [("ours", Step::Create), ("ours", Step::Set), ("unknown", Step::Create)] {
        let err = message(h.step(token, step).await);
        assert!(
            err.contains(&format!("AWSPENDING is on version {theirs}")) && err.contains("another rotation"),
            "{err}"
        );
    }
    assert_eq!(h.pending(), value_before, "their pending value is untouched");
    assert_eq!(h.model().calls(op::PUT), 1);
}

#[tokio::test]
async fn token_already_current_is_a_no_op_for_every_step() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    // AWSPENDING and AWSCURRENT on the same version, as finishSecret leaves them.
    assert_eq!(
        h.model().stages(&h.arn)[&token],
        vec![AWSCURRENT.to_owned(), AWSPENDING.to_owned()]
    );
    let (writes, connects, gets) = (h.model().writes(), h.db.connects().len(), h.model().calls(op::GET));
    for step in Step::ALL {
        assert_eq!(h.step(&token, step).await.unwrap(), Outcome::AlreadyCurrent, "{step}");
    }
    h.model().end_rotation(&h.arn);
    for step in Step::ALL {
        assert_eq!(h.step(&token, step).await.unwrap(), Outcome::AlreadyCurrent, "{step}");
    }
    assert_eq!(h.model().writes(), writes);
    assert_eq!(h.model().calls(op::GET), gets);
    assert_eq!(h.db.connects().len(), connects);
}
