//! Single-user rotation end to end: the user changes its own password.

use crate::support::*;
use devstack::{Stack, Step};
use rotation::Strategy;

#[tokio::test]
async fn full_rotation_twice_in_a_row_single_user() {
    let stack = Stack::shared();
    let app = stack.create_app("su").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["note"] = serde_json::json!("kept by rotation");
    let arn = stack.create_secret(&Stack::secret_name("su"), &secret).await.unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
    let driver = driver(stack).await;
    let mut old_password = app.password.clone();
    for round in 1..=2 {
        let report = driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(stack, &arn).await;
        let (user, password) = user_and_password(&now);
        assert_eq!(user, app.role);
        assert_ne!(password, old_password, "round {round}");
        login(stack, &user, &password, &app.dbname).await.unwrap();
        let refused = login(stack, &user, &old_password, &app.dbname).await.unwrap_err();
        assert!(refused.is_auth(), "round {round}: {refused}");
        let previous = version(stack, &arn, "AWSPREVIOUS").await.unwrap();
        assert_eq!(
            user_and_password(&previous).1,
            old_password,
            "the old version became AWSPREVIOUS"
        );
        assert_eq!(now["note"], "kept by rotation");
        assert_eq!(password.len(), 32);
        assert!(!password.chars().any(|c| ":/@\"'\\".contains(c)), "default exclusions");
        let desc = driver.client().describe_secret().secret_id(&arn).send().await.unwrap();
        let stages = desc.version_ids_to_stages().unwrap();
        assert_eq!(stages[&report.token], ["AWSCURRENT"], "no AWSPENDING left behind");
        old_password = password;
    }
    let verifier = rolpassword(stack, &app.role).await.unwrap();
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert_no_password_in_server_log(stack, &arn, &[]).await;
}

#[tokio::test]
async fn set_is_a_no_op_when_the_pending_password_already_works() {
    let stack = Stack::shared();
    let app = stack.create_app("su_noop").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("su"), &stack.secret_json(&app))
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
    let driver = driver(stack).await;
    let token = driver.begin(&arn).await.unwrap();
    driver
        .run_steps(
            &arn,
            &token,
            &[devstack::Step::Create, devstack::Step::Set],
            &InProcess(&rotator),
        )
        .await
        .unwrap();
    let verifier = rolpassword(stack, &app.role).await.unwrap();
    let outcome = rotator
        .handle(&rotation::RotationEvent::new(&arn, &token, rotation::Step::Set), None)
        .await
        .unwrap();
    assert_eq!(outcome, rotation::Outcome::PendingAlreadyWorks);
    assert_eq!(
        rolpassword(stack, &app.role).await.unwrap(),
        verifier,
        "no second ALTER"
    );
    driver.resume(&arn, &token, &InProcess(&rotator)).await.unwrap();
    assert!(logs_in(stack, &current(stack, &arn).await).await);
}

#[tokio::test]
async fn finish_refuses_to_move_awscurrent_to_credentials_that_do_not_log_in() {
    let stack = Stack::shared();
    let app = stack.create_app("finchk").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("finchk"), &stack.secret_json(&app))
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
    let driver = driver(stack).await;
    let token = driver.begin(&arn).await.unwrap();
    driver
        .run_steps(
            &arn,
            &token,
            &[Step::Create, Step::Set, Step::Test],
            &InProcess(&rotator),
        )
        .await
        .unwrap();
    let before = current(stack, &arn).await;
    // Between testSecret and finishSecret someone puts the old password back.
    stack.postgres.set_password(&app.role, &app.password).await.unwrap();
    let err = driver
        .run_steps(&arn, &token, &[Step::Finish], &InProcess(&rotator))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("finishSecret")
            && err.contains(&format!("refusing to move AWSCURRENT to version {token}"))
            && err.contains("28P01"),
        "{err}"
    );
    assert_eq!(current(stack, &arn).await, before, "AWSCURRENT did not move");
    assert!(logs_in(stack, &before).await, "the API keeps working with AWSCURRENT");
    // The service's retry with the same token sets the password again and finishes.
    driver.resume(&arn, &token, &InProcess(&rotator)).await.unwrap();
    assert!(logs_in(stack, &current(stack, &arn).await).await);
}
