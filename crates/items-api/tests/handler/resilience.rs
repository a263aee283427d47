//! A connection that dies is replaced; concurrent invocations share one connection.

use crate::common::{events::*, *};
use devstack::Stack;
use http::StatusCode;
use std::sync::Arc;

#[tokio::test]
async fn a_terminated_connection_is_replaced_without_a_failed_request() {
    let stack = Stack::shared();
    let f = fixture("killed", &[]).await;
    assert_eq!(
        f.app
            .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "k"))
            .await
            .status(),
        StatusCode::OK
    );
    // The server drops the session, as after a failover or an idle timeout while frozen.
    let admin = stack.postgres.admin().await.unwrap();
    let killed = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
            &[&f.db.role],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(killed, 1);
    for (req, status) in [
        (Req::new("GET", "/items"), StatusCode::OK),
        (
            Req::new("POST", "/items").json(r#"{"name":"after-kill"}"#),
            StatusCode::CREATED,
        ),
    ] {
        assert_eq!(f.app.handle(request(Flavor::HttpV2, &req, "k")).await.status(), status);
    }
    // And once more, killing it right before a write.
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
            &[&f.db.role],
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        f.app
            .handle(request(
                Flavor::HttpV2,
                &Req::new("POST", "/items").json(r#"{"name":"x"}"#),
                "k"
            ))
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn concurrent_invocations_share_one_connection_and_one_secret_fetch() {
    let stack = Stack::shared();
    let f = fixture("concurrent", &[]).await;
    let app = Arc::new(f.app);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let req = if i % 4 == 0 {
                    Req::new("POST", "/items").json(r#"{"name":"c"}"#)
                } else {
                    Req::new("GET", "/items")
                };
                app.handle(request(Flavor::HttpV2, &req, "c")).await.status()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_success());
    }
    assert_eq!(stack.moto.count_calls("GetSecretValue", &f.secret_name).unwrap(), 1);
    let conns = stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&f.db.role],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        conns, 1,
        "single-flight connect: one connection for 64 concurrent invocations"
    );
}

#[tokio::test]
async fn concurrent_requests_share_each_failed_connect_instead_of_queueing_their_own() {
    // A database that accepts TCP and never answers: every connect runs into its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    tokio::spawn({
        let (accepted, held) = (accepted.clone(), held.clone());
        async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.lock().await.push(socket);
            }
        }
    });
    let stack = Stack::shared();
    let db = stack.create_app("blackhole").await.unwrap();
    let mut secret = stack.secret_json(&db);
    secret["port"] = port.into();
    let arn = stack
        .create_secret(&Stack::secret_name("blackhole"), &secret)
        .await
        .unwrap();
    let policy = short_retry();
    let app = Arc::new(app_with_retry(stack, &vars(stack, &arn, &[("DB_CONNECT_TIMEOUT_MS", "400")]), policy).await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "bh"))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let resp = t.await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let problem = body_json(&resp);
        assert!(
            problem["detail"].as_str().unwrap().contains("did not answer in time"),
            "each waiter gets the failed connect's answer, not 'busy': {problem}"
        );
    }
    // One attempt per backoff step for the whole environment, each shared by all eight: no more
    // than a single request would make alone, never eight times as many.
    let attempts = accepted.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "{attempts} connect attempts for 8 concurrent requests within a {:?} budget",
        policy.budget
    );
    assert!(
        (1..=policy.attempts as usize).contains(&attempts) && attempts < 8,
        "{attempts} connect attempts for 8 requests"
    );
}
