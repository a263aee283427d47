//! Revoke after an immediate rotation: the superseded credential's sessions are ended and it no
//! longer logs in, while the master's sessions, other roles' and the current credential's survive;
//! a repeat is safe; a role that is not the secret's own is refused.

use crate::support::*;
use devstack::Stack;
use rotation::{
    Strategy,
    revoke::{RevokeReport, RevokeRequest},
};
use serde_json::json;

async fn pid(conn: &db_credentials::Connection) -> i32 {
    conn.client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn alive(conn: &db_credentials::Connection) -> bool {
    conn.client.simple_query("SELECT 1").await.is_ok()
}

async fn revoke(rotator: &TestRotator, arn: &str) -> Result<RevokeReport, String> {
    let request = RevokeRequest::from_json(&json!({"Revoke": {"SecretId": arn, "GraceSeconds": 0}})).unwrap();
    rotator.revoke(&request, None).await.map_err(|e| e.to_string())
}

fn ended(report: &RevokeReport) -> Vec<i32> {
    report.sessions_ended.iter().map(|s| s.pid).collect()
}

/// Sessions of the master and of an unrelated role, which no revoke may end.
async fn bystanders(stack: &Stack) -> Vec<db_credentials::Connection> {
    let master = stack.master().await.unwrap();
    let other = stack.create_app("rv_other").await.unwrap();
    vec![
        connect_as(stack, &master.username, &master.password, "postgres").await,
        connect_as(stack, &other.role, &other.password, &other.dbname).await,
    ]
}

#[tokio::test]
async fn single_user_revoke_ends_the_old_passwords_sessions_and_only_those() {
    let stack = Stack::shared();
    let app = stack.create_app("rv_su").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("rv-su"), &stack.secret_json(&app))
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
    let err = revoke(&rotator, &arn).await.unwrap_err();
    assert!(
        err.contains("no AWSPREVIOUS") && err.contains("rotate it first"),
        "{err}"
    );

    let leaked = connect_as(stack, &app.role, &app.password, &app.dbname).await;
    let leaked_pid = pid(&leaked).await;
    let others = bystanders(stack).await;
    driver(stack).await.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    assert!(alive(&leaked).await, "Postgres keeps a session whose password changed");

    let report = revoke(&rotator, &arn).await.unwrap();
    assert_eq!(report.user, app.role);
    assert!(!report.password_replaced);
    assert!(report.changed_at.is_some());
    assert!(ended(&report).contains(&leaked_pid), "{report:#?}");
    assert!(report.sessions_ended.iter().all(|s| s.user == app.role && s.ended));
    assert!(!alive(&leaked).await, "the leaked password's session is gone");
    assert_refused(
        stack,
        &version(stack, &arn, "AWSPREVIOUS").await.unwrap(),
        "old password",
    )
    .await;
    for (i, conn) in others.iter().enumerate() {
        assert!(alive(conn).await, "bystander {i} (master, other role) survives");
    }
    assert!(logs_in(stack, &current(stack, &arn).await).await);
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains(&app.password), "{text}");

    let again = revoke(&rotator, &arn).await.expect("a repeat is safe");
    assert!(!ended(&again).contains(&leaked_pid));
    assert!(logs_in(stack, &current(stack, &arn).await).await);
    for conn in &others {
        assert!(alive(conn).await);
    }
    assert_no_password_in_server_log(stack, &arn, &[]).await;
}

#[tokio::test]
async fn alternating_revoke_locks_out_the_previous_user_and_ends_its_sessions() {
    let stack = Stack::shared();
    let app = stack.create_app("rv_alt").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_secret(stack).await);
    let arn = stack
        .create_secret(&Stack::secret_name("rv-alt"), &secret)
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let driver = driver(stack).await;
    driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let now = current(stack, &arn).await;
    let (clone, clone_password) = user_and_password(&now);
    assert_eq!(clone, format!("{}_clone", app.role));

    // The previous user still works, by design, until revoked.
    let leaked = connect_as(stack, &app.role, &app.password, &app.dbname).await;
    let leaked_pid = pid(&leaked).await;
    let current_session = connect_as(stack, &clone, &clone_password, &app.dbname).await;
    let others = bystanders(stack).await;
    let verifier = rolpassword(stack, &app.role).await;

    let report = revoke(&rotator, &arn).await.unwrap();
    assert_eq!(report.user, app.role);
    assert!(report.password_replaced);
    assert!(ended(&report).contains(&leaked_pid), "{report:#?}");
    assert!(report.sessions_ended.iter().all(|s| s.user == app.role && s.ended));
    assert!(!alive(&leaked).await, "the previous user's session is gone");
    assert!(
        login(stack, &app.role, &app.password, &app.dbname)
            .await
            .unwrap_err()
            .is_auth(),
        "the previous user no longer logs in"
    );
    let replaced = rolpassword(stack, &app.role).await.unwrap();
    assert_ne!(Some(&replaced), verifier.as_ref());
    assert!(
        replaced.starts_with("SCRAM-SHA-256$") || replaced.starts_with("md5"),
        "a verifier"
    );
    assert!(alive(&current_session).await, "the current user's session survives");
    for (i, conn) in others.iter().enumerate() {
        assert!(alive(conn).await, "bystander {i} (master, other role) survives");
    }
    assert!(logs_in(stack, &now).await);

    let again = revoke(&rotator, &arn).await.expect("a repeat is safe");
    assert!(again.sessions_ended.is_empty(), "{again:#?}");
    assert!(alive(&current_session).await);

    // The next rotation gives the previous user a password again, and the pair goes on.
    driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let next = current(stack, &arn).await;
    assert_eq!(next["username"], app.role.as_str());
    assert!(logs_in(stack, &next).await);
    assert_no_password_in_server_log(stack, &arn, &[]).await;
}

#[tokio::test]
async fn a_previous_version_naming_another_role_is_refused_and_touches_nothing() {
    let stack = Stack::shared();
    let app = stack.create_app("rv_mine").await.unwrap();
    let stranger = stack.create_app("rv_stranger").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("rv-mine"), &stack.secret_json(&stranger))
        .await
        .unwrap();
    // Someone pointed the secret at another user by hand: AWSPREVIOUS now names a role that is
    // not this secret's.
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(stack.secret_json(&app).to_string())
        .send()
        .await
        .unwrap();
    let stranger_session = connect_as(stack, &stranger.role, &stranger.password, &stranger.dbname).await;
    let verifier = rolpassword(stack, &stranger.role).await;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let rotator = new_rotator(stack, &vars(stack, strategy, &[])).await;
        let err = revoke(&rotator, &arn).await.unwrap_err();
        assert!(
            err.contains("revoke refused") && err.contains(&format!("AWSPREVIOUS names user {}", stranger.role)),
            "{strategy}: {err}"
        );
    }
    assert!(alive(&stranger_session).await);
    assert_eq!(rolpassword(stack, &stranger.role).await, verifier);
}
