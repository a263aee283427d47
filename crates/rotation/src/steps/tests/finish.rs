//! finishSecret (§d 30–32).

use super::*;

#[tokio::test]
async fn finish_moves_current_and_marks_previous() {
    let h = harness(Strategy::SingleUser);
    let old = h.model().version_with(&h.arn, AWSCURRENT).unwrap();
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set, Step::Test]).await.unwrap();
    assert_eq!(h.step(&token, Step::Finish).await.unwrap(), Outcome::Finished);
    let stages = h.model().stages(&h.arn);
    assert_eq!(stages[&token], vec![AWSCURRENT, AWSPENDING]);
    assert_eq!(stages[&old], vec![AWSPREVIOUS]);
    assert_eq!(h.step(&token, Step::Finish).await.unwrap(), Outcome::AlreadyCurrent);
    assert_eq!(h.model().calls(op::UPDATE_STAGE), 1);
}

#[tokio::test]
async fn finish_leaves_pending_only_on_the_current_version_and_the_next_rotation_starts_cleanly() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    assert_eq!(h.model().version_with(&h.arn, AWSPENDING), Some(token.clone()));
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token));
    // Without the service's cleanup, too: AWS accepts AWSPENDING on the current version.
    let next = h.begin();
    h.steps(&next, &Step::ALL).await.unwrap();
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(next));
}

#[tokio::test]
async fn concurrent_finish_is_ok() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set, Step::Test]).await.unwrap();
    let event = RotationEvent::new(&h.arn, &token, Step::Finish);
    let failpoints = Failpoints::default();
    let cx = Ctx {
        config: h.rotator.config(),
        secrets: h.model(),
        logins: &h.db,
        rds: &h.rds,
        failpoints: &failpoints,
        event: &event,
        deadline: Instant::now() + Duration::from_secs(5),
        progress: Mutex::new(""),
    };
    let stale = cx.check_stages().await.unwrap().unwrap();
    // Another invocation finishes between our DescribeSecret and our UpdateSecretVersionStage.
    assert_eq!(h.step(&token, Step::Finish).await.unwrap(), Outcome::Finished);
    assert_eq!(cx.finish_secret(&stale).await.unwrap(), Outcome::FinishedConcurrently);
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token));
}
