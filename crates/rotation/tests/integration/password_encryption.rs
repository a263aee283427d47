//! The stored password follows the server's settings: an md5 hash on a server with
//! `password_encryption = md5` (and md5 in `pg_hba.conf`), a SCRAM verifier with the server's
//! `scram_iterations` otherwise; never the plaintext.

use crate::support::*;
use devstack::{PasswordEncryption, PostgresOptions, Stack, StackOptions};
use rotation::Strategy;
use serde_json::json;

fn md5_stack() -> Stack {
    Stack::start(&StackOptions {
        postgres: PostgresOptions {
            password_encryption: PasswordEncryption::Md5,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap()
}

async fn assert_md5_and_md5_client_logs_in(stack: &Stack, secret: &serde_json::Value) {
    let (user, password) = user_and_password(secret);
    let stored = rolpassword(stack, &user).await.unwrap();
    assert!(
        stored.starts_with("md5"),
        "{user}'s stored password is {}",
        &stored[..13]
    );
    md5_only_login(stack, &user, &password, secret["dbname"].as_str().unwrap())
        .await
        .unwrap_or_else(|e| panic!("an md5-only client logs in as {user}: {e}"));
}

#[tokio::test]
async fn md5_server_stores_md5_hashes_single_user() {
    let stack = md5_stack();
    let app = stack.create_app("md5single").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("md5single"), &stack.secret_json(&app))
        .await
        .unwrap();
    let rotator = new_rotator(&stack, &vars(&stack, Strategy::SingleUser, &[])).await;
    let driver = driver(&stack).await;
    for _ in 0..2 {
        driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(&stack, &arn).await;
        assert_md5_and_md5_client_logs_in(&stack, &now).await;
    }
    assert!(
        md5_only_login(&stack, &app.role, &app.password, &app.dbname)
            .await
            .is_err(),
        "the first password is gone"
    );
    assert_no_password_in_server_log(&stack, &arn, &[]).await;
}

#[tokio::test]
async fn md5_server_stores_md5_hashes_alternating_users() {
    let stack = md5_stack();
    let app = stack.create_app("md5alt").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_secret(&stack).await);
    let arn = stack
        .create_secret(&Stack::secret_name("md5alt"), &secret)
        .await
        .unwrap();
    let rotator = new_rotator(&stack, &vars(&stack, Strategy::AlternatingUsers, &[])).await;
    let driver = driver(&stack).await;
    // The clone is created, then the base user's password changes, then the clone's again.
    for expected in [
        format!("{}_clone", app.role),
        app.role.clone(),
        format!("{}_clone", app.role),
    ] {
        driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(&stack, &arn).await;
        assert_eq!(now["username"], expected.as_str());
        assert_md5_and_md5_client_logs_in(&stack, &now).await;
    }
    assert_no_password_in_server_log(&stack, &arn, &[]).await;
}

#[tokio::test]
async fn scram_verifier_uses_the_servers_iteration_count() {
    let stack = Stack::shared();
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let app = stack.create_app("iters").await.unwrap();
        // scram_iterations exists from Postgres 16; before, the count is always 4096.
        let expected = if stack.postgres.major_version() >= 16 {
            stack
                .postgres
                .admin()
                .await
                .unwrap()
                .batch_execute(&format!(
                    "ALTER DATABASE \"{}\" SET scram_iterations = 8192",
                    app.dbname
                ))
                .await
                .unwrap();
            8192
        } else {
            4096
        };
        let mut secret = stack.secret_json(&app);
        if strategy == Strategy::AlternatingUsers {
            secret["masterarn"] = json!(master_secret(stack).await);
        }
        let arn = stack
            .create_secret(&Stack::secret_name("iters"), &secret)
            .await
            .unwrap();
        let rotator = new_rotator(stack, &vars(stack, strategy, &[])).await;
        driver(stack).await.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(stack, &arn).await;
        let (user, _) = user_and_password(&now);
        let stored = rolpassword(stack, &user).await.unwrap();
        assert!(
            stored.starts_with(&format!("SCRAM-SHA-256${expected}:")),
            "{strategy}: {}",
            &stored[..20]
        );
        assert!(logs_in(stack, &now).await, "{strategy}");
    }
}
