//! A database that is down, one that never answers, and one without TLS when the secret demands
//! it: each step that needs the database fails in bounded time with a clear error.

use crate::support::*;
use devstack::{PostgresOptions, Stack, StackOptions, Step};
use rotation::Strategy;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn stopped_database_fails_each_step_fast_with_a_clear_error() {
    let stack = Stack::start(&StackOptions::default()).unwrap();
    let app = stack.create_app("down").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("down"), &stack.secret_json(&app))
        .await
        .unwrap();
    let rotator = new_rotator(
        &stack,
        &vars(&stack, Strategy::SingleUser, &[("DB_CONNECT_TIMEOUT_MS", "2000")]),
    )
    .await;
    let driver = driver(&stack).await;
    let token = driver.begin(&arn).await.unwrap();
    driver
        .run_steps(&arn, &token, &[Step::Create], &InProcess(&rotator))
        .await
        .expect("createSecret does not touch the database");
    stack.postgres.stop_server().unwrap();
    for step in [Step::Set, Step::Test] {
        let started = Instant::now();
        let err = driver
            .run_steps(&arn, &token, &[step], &InProcess(&rotator))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{step:?} took {:?}",
            started.elapsed()
        );
        assert!(
            err.contains(&format!(
                "cannot connect to Postgres at 127.0.0.1:{}",
                stack.postgres.port()
            )) && err.contains(&app.role),
            "{err}"
        );
    }
    stack.postgres.start_server().unwrap();
    driver.resume(&arn, &token, &InProcess(&rotator)).await.unwrap();
    assert!(
        logs_in(&stack, &current(&stack, &arn).await).await,
        "converges once the database is back"
    );
}

#[tokio::test]
async fn database_that_never_answers_is_bounded_by_the_connect_timeout() {
    let stack = Stack::shared();
    // Accepts TCP and then says nothing, like a security group that drops replies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let mut secret = json!({"engine": "postgres", "host": "127.0.0.1", "port": port, "username": "nobody", "password": devstack::evidence::secret("Unused-pw-9")});
    secret["dbname"] = json!("postgres");
    let arn = stack
        .create_secret(&Stack::secret_name("silent"), &secret)
        .await
        .unwrap();
    let rotator = new_rotator(
        stack,
        &vars(stack, Strategy::SingleUser, &[("DB_CONNECT_TIMEOUT_MS", "1000")]),
    )
    .await;
    let driver = driver(stack).await;
    let token = driver.begin(&arn).await.unwrap();
    driver
        .run_steps(&arn, &token, &[Step::Create], &InProcess(&rotator))
        .await
        .unwrap();
    for step in [Step::Set, Step::Test] {
        let started = Instant::now();
        let err = driver
            .run_steps(&arn, &token, &[step], &InProcess(&rotator))
            .await
            .unwrap_err()
            .to_string();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{step:?} took {took:?}"
        );
        assert!(err.contains("no answer within 1000 ms"), "{err}");
    }
    held.abort();
}

#[tokio::test]
async fn ssl_true_against_a_server_without_tls_fails_instead_of_downgrading() {
    let stack = Stack::start(&StackOptions {
        postgres: PostgresOptions {
            tls: false,
            log_statements: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let app = stack.create_app("notls").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["ssl"] = json!(true);
    let arn = stack
        .create_secret(&Stack::secret_name("notls"), &secret)
        .await
        .unwrap();
    let driver = driver(&stack).await;
    let verifier = rolpassword(&stack, &app.role).await;
    for sslmode in [None, Some("prefer"), Some("require")] {
        let extra: Vec<(&str, &str)> = sslmode.map(|m| ("DB_SSLMODE", m)).into_iter().collect();
        let rotator = new_rotator(&stack, &vars(&stack, Strategy::SingleUser, &extra)).await;
        let token = driver.begin(&arn).await.unwrap();
        let err = driver
            .resume(&arn, &token, &InProcess(&rotator))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("setSecret") && err.contains("TLS"), "{sslmode:?}: {err}");
        assert_eq!(
            rolpassword(&stack, &app.role).await,
            verifier,
            "{sslmode:?}: password unchanged"
        );
        cancel(&stack, &arn, &token).await;
    }
    let rotator = new_rotator(
        &stack,
        &vars(&stack, Strategy::SingleUser, &[("DB_SSLMODE", "disable")]),
    )
    .await;
    let token = driver.begin(&arn).await.unwrap();
    let err = driver
        .resume(&arn, &token, &InProcess(&rotator))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssl=true but DB_SSLMODE=disable"), "{err}");
    cancel(&stack, &arn, &token).await;

    // Control: the same server rotates fine when the secret allows plaintext, so the failures
    // above were TLS and nothing else.
    let plain = stack.create_app("plain").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("plain"), &stack.secret_json(&plain))
        .await
        .unwrap();
    let rotator = new_rotator(
        &stack,
        &vars(&stack, Strategy::SingleUser, &[("DB_SSLMODE", "disable")]),
    )
    .await;
    driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    assert!(logs_in(&stack, &current(&stack, &arn).await).await);
}

/// Abandons a failed rotation as an operator would: removes its AWSPENDING.
async fn cancel(stack: &Stack, arn: &str, token: &str) {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    sm.update_secret_version_stage()
        .secret_id(arn)
        .version_stage("AWSPENDING")
        .remove_from_version_id(token)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let stack = Stack::shared();
    let dir = std::env::temp_dir().join(format!("rotation-ca-{}", devstack::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let other_ca = devstack::postgres::unrelated_ca(&dir, "other-ca.pem").unwrap();
    let app = stack.create_app("otherca").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("otherca"), &stack.secret_json(&app))
        .await
        .unwrap();
    let verifier = rolpassword(stack, &app.role).await;
    let driver = driver(stack).await;
    for mode in ["verify-full", "verify-ca"] {
        let extra = [("DB_SSLMODE", mode), ("DB_SSL_ROOT_CERT", other_ca.to_str().unwrap())];
        let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &extra)).await;
        let token = driver.begin(&arn).await.unwrap();
        let err = driver
            .resume(&arn, &token, &InProcess(&rotator))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("setSecret") && err.contains("TLS handshake"),
            "{mode}: {err}"
        );
        assert_eq!(
            rolpassword(stack, &app.role).await,
            verifier,
            "{mode}: password unchanged"
        );
        cancel(stack, &arn, &token).await;
    }
    std::fs::remove_dir_all(dir).ok();
}

/// `TEST_QUERY` is one statement: a probe that smuggles in a COMMIT is refused by Postgres before
/// anything runs, testSecret fails naming it, and nothing it would have written exists.
#[tokio::test]
async fn a_test_query_of_several_statements_is_refused_and_commits_nothing() {
    let stack = Stack::shared();
    let app = stack.create_app("probe").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("probe"), &stack.secret_json(&app))
        .await
        .unwrap();
    let query = "CREATE TABLE probe_left_behind (x int); COMMIT";
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[("TEST_QUERY", query)])).await;
    let driver = driver(stack).await;
    let token = driver.begin(&arn).await.unwrap();
    driver
        .run_steps(&arn, &token, &[Step::Create, Step::Set], &InProcess(&rotator))
        .await
        .unwrap();
    let err = driver
        .run_steps(&arn, &token, &[Step::Test], &InProcess(&rotator))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "TEST_QUERY on 127.0.0.1:{} as {}",
            stack.postgres.port(),
            app.role
        )) && err.contains("42601"),
        "{err}"
    );
    let table = stack
        .postgres
        .admin_on(&app.dbname)
        .await
        .unwrap()
        .query_one("SELECT to_regclass('public.probe_left_behind')::text", &[])
        .await
        .unwrap()
        .get::<_, Option<String>>(0);
    assert_eq!(table, None, "the probe committed a table");
    let pending = version(stack, &arn, "AWSPENDING")
        .await
        .expect("AWSPENDING stays for a retry");
    assert_ne!(
        current(stack, &arn).await["password"],
        pending["password"],
        "AWSCURRENT has not moved"
    );
}
