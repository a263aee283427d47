//! Connecting through a password rotation (design §5), done by hand: the password changes in
//! Postgres, the new value sits in AWSPENDING, then AWSCURRENT moves.

use crate::common::*;
use db_credentials::{Database, secrets_manager::Stage};
use devstack::Stack;

#[tokio::test]
async fn single_user_rotation_window_is_ridden_through_with_awspending() {
    let stack = Stack::shared();
    let (app, arn, name) = app_with_secret(stack, "window").await;
    let db = Database::new(provider(stack, &vars(stack, Some(&arn), &[])).await, "test");
    let first = db.connect().await.expect("initial connect");
    drop(first);

    // setSecret has run: the database has the new password, AWSCURRENT still holds the old one.
    let token = uuid::Uuid::new_v4().to_string();
    let sm = sm(stack).await;
    sm.put_secret_value()
        .secret_id(&arn)
        .client_request_token(&token)
        .secret_string(with_password(stack, &app, "Pw-rotated-1").to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    stack.postgres.set_password(&app.role, "Pw-rotated-1").await.unwrap();

    let during = db.connect().await.expect("a new connection in the window succeeds");
    assert_eq!(during.info.origin.version_id.as_deref(), Some(token.as_str()));
    assert_eq!(during.info.origin.stage, Some(Stage::Pending));
    let again = db.connect().await.expect("the adopted pending value is reused");
    assert_eq!(again.info.origin.version_id.as_deref(), Some(token.as_str()));

    // finishSecret: AWSCURRENT moves to the token.
    let old = sm.describe_secret().secret_id(&arn).send().await.unwrap();
    let current = old
        .version_ids_to_stages()
        .unwrap()
        .iter()
        .find(|(_, s)| s.iter().any(|x| x == "AWSCURRENT"))
        .map(|(v, _)| v.clone())
        .unwrap();
    sm.update_secret_version_stage()
        .secret_id(&arn)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&token)
        .remove_from_version_id(current)
        .send()
        .await
        .unwrap();
    let after = db.connect().await.expect("after finishSecret");
    assert_eq!(after.info.origin.version_id.as_deref(), Some(token.as_str()));
    assert_eq!(whoami(&after).await, app.role);
    // Three reads in all: the first fetch, the refresh after the refusal, the pending read.
    assert_eq!(stack.moto.count_calls("GetSecretValue", &name).unwrap(), 3);
}

#[tokio::test]
async fn a_refused_cached_password_is_refreshed_once_current_has_moved() {
    let stack = Stack::shared();
    let (app, arn, _) = app_with_secret(stack, "moved").await;
    let db = Database::new(provider(stack, &vars(stack, Some(&arn), &[])).await, "test");
    let v1 = db.connect().await.unwrap().info.origin.version_id;
    // Rotation completed while this environment was frozen: new AWSCURRENT, new password.
    sm(stack)
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(with_password(stack, &app, "Pw-moved-2").to_string())
        .send()
        .await
        .unwrap();
    stack.postgres.set_password(&app.role, "Pw-moved-2").await.unwrap();
    let conn = db.connect().await.expect("refreshed and retried");
    assert_ne!(conn.info.origin.version_id, v1);
    assert_eq!(conn.info.origin.stage, Some(Stage::Current));
}
