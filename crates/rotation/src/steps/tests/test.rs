//! testSecret (§d 27–29).

use super::*;

#[tokio::test]
async fn test_passes_with_the_pending_password_and_fails_without_side_effects() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let writes = h.model().writes();
    let err = message(h.step(&token, Step::Test).await);
    assert!(err.contains("unable to log in with the pending credentials"), "{err}");
    assert_eq!(h.model().writes(), writes);
    assert!(h.db.changes().is_empty());
    h.step(&token, Step::Set).await.unwrap();
    assert_eq!(h.step(&token, Step::Test).await.unwrap(), Outcome::Tested);
    assert_eq!(h.db.state().probes, vec!["SELECT 1"]);
}

#[tokio::test]
async fn test_passes_when_pending_equals_current() {
    // RotateImmediately=false: the service tests the configuration with a pending version that
    // carries the current value.
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.model().put_version(
        &h.arn,
        &token,
        Some(&secret_json("app", "pw-0").to_string()),
        &[AWSPENDING],
    );
    let writes = h.model().writes();
    assert_eq!(h.step(&token, Step::Test).await.unwrap(), Outcome::Tested);
    assert_eq!(h.model().writes(), writes);
    assert!(h.db.changes().is_empty());
    assert!(h.db.logs_in("app", "pw-0"));
}

#[tokio::test]
async fn test_query_is_configurable_and_its_failure_is_reported() {
    let h = harness_with(Strategy::SingleUser, &[("TEST_QUERY", "SELECT * FROM missing_table")]);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set]).await.unwrap();
    let err = message(h.step(&token, Step::Test).await);
    assert!(
        err.contains("TEST_QUERY on db.internal:5432 as app failed") && err.contains("42P01"),
        "{err}"
    );
}
