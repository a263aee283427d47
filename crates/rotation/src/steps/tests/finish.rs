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

#[tokio::test]
async fn finish_refuses_a_version_whose_credentials_do_not_log_in() {
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let h = harness(strategy);
        let old = h.model().version_with(&h.arn, AWSCURRENT).unwrap();
        let token = h.begin();
        // setSecret never ran (or its change was undone): the database does not know the password.
        h.step(&token, Step::Create).await.unwrap();
        let err = message(h.step(&token, Step::Finish).await);
        assert!(
            err.contains(&format!("refusing to move AWSCURRENT to version {token}"))
                && err.contains("28P01")
                && err.contains("AWSCURRENT stays on version"),
            "{strategy}: {err}"
        );
        assert!(!err.contains(&h.pending_password()), "{err}");
        assert_eq!(h.model().calls(op::UPDATE_STAGE), 0, "{strategy}: nothing moved");
        assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(old), "{strategy}");
        // Once the password is in place, the same finishSecret goes through.
        h.steps(&token, &[Step::Set, Step::Test, Step::Finish]).await.unwrap();
        assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token), "{strategy}");
    }
}

#[tokio::test]
async fn finish_logs_in_once() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set, Step::Test]).await.unwrap();
    let before = h.db.connects().len();
    h.step(&token, Step::Finish).await.unwrap();
    assert_eq!(
        h.db.connects()[before..],
        [("app".to_owned(), format!("{HOST}:{PORT}"))]
    );
}
