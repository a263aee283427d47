//! Conditions of the database (design §11) are 503 with `Retry-After` and a problem document that
//! names the condition, never 500; a session that turned read-only or is ending is discarded.

use crate::common::{events::*, *};
use devstack::{Postgres, PostgresOptions, Stack};
use http::StatusCode;
use items_api::db::RetryPolicy;
use std::time::Duration;

/// Asserts a 503 naming `condition`, with `Retry-After`, and returns the problem document.
fn assert_unavailable(resp: &http::Response<lambda_http::Body>, condition: &str, ctx: &str) -> serde_json::Value {
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{ctx}: {:?}",
        resp.body()
    );
    assert_eq!(header(resp, "content-type"), Some("application/problem+json"), "{ctx}");
    assert!(
        header(resp, "retry-after").is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s >= 1)),
        "{ctx}: Retry-After"
    );
    let p = body_json(resp);
    assert_eq!(p["condition"], condition, "{ctx}: {p}");
    p
}

async fn role_sessions(stack: &Stack, role: &str) -> i64 {
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", &[&role])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn privileges_revoked_mid_life_are_503_not_500() {
    let stack = Stack::shared();
    let db = stack.create_app("revoked").await.unwrap();
    let app = app_for(&url_vars(stack, &db, None), RetryPolicy::default()).await;
    let get = || app.handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "rv"));
    assert_eq!(get().await.status(), StatusCode::OK);
    stack
        .postgres
        .admin_on(&db.dbname)
        .await
        .unwrap()
        .batch_execute(&format!("REVOKE SELECT ON items FROM {}", db.role))
        .await
        .unwrap();
    let p = assert_unavailable(&get().await, "insufficient-privilege", "SELECT revoked");
    assert!(p["detail"].as_str().unwrap().contains("privilege"), "{p}");
    assert!(!p.to_string().contains(&db.role), "no internal names: {p}");
}

#[tokio::test]
async fn no_free_connection_slot_is_503_naming_the_condition() {
    let stack = Stack::shared();
    let db = stack.create_app("nslots").await.unwrap();
    // A role's connection limit is refused with the same SQLSTATE as max_connections (53300).
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .batch_execute(&format!("ALTER ROLE {} CONNECTION LIMIT 0", db.role))
        .await
        .unwrap();
    let app = app_for(&url_vars(stack, &db, None), short_retry()).await;
    let resp = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "ns"))
        .await;
    let p = assert_unavailable(&resp, "too-many-connections", "connection limit 0");
    assert!(p["detail"].as_str().unwrap().contains("connection"), "{p}");
}

#[tokio::test]
async fn a_session_ended_mid_statement_is_discarded_and_the_request_retried() {
    let stack = Stack::shared();
    let db = stack.create_app("ended").await.unwrap();
    let app = app_for(&url_vars(stack, &db, None), RetryPolicy::default()).await;
    let admin = stack.postgres.admin_on(&db.dbname).await.unwrap();
    assert_eq!(
        app.handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "e"))
            .await
            .status(),
        StatusCode::OK
    );
    for (req, status) in [
        (Req::new("GET", "/items"), StatusCode::OK),
        // 57P01 answers the INSERT itself: it was not applied, so it is safe to send again.
        (
            Req::new("POST", "/items").json(r#"{"name":"once"}"#),
            StatusCode::CREATED,
        ),
    ] {
        // Hold the table so the statement waits, then end its session (as a shutting-down node does).
        admin
            .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let app = &app;
        let answer = async move { app.handle(request(Flavor::HttpV2, &req, "e")).await };
        let end_it = async {
            loop {
                let waiting: i64 = admin
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'",
                        &[&db.role],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if waiting > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            admin.batch_execute("COMMIT").await.unwrap();
        };
        let (resp, ()) = tokio::join!(answer, end_it);
        assert_eq!(resp.status(), status, "{:?}", resp.body());
    }
    let count: i64 = admin
        .query_one("SELECT count(*) FROM items WHERE name = 'once'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "the refused INSERT was sent again and applied once");
    assert_eq!(
        role_sessions(stack, &db.role).await,
        1,
        "the ended session was replaced, once"
    );
}

#[tokio::test]
async fn a_session_turned_read_only_is_discarded_and_writes_are_503() {
    // A cluster of its own: the whole server turns read-only, as a demoted primary does.
    let pg = Postgres::start(&PostgresOptions::default()).unwrap();
    let role = format!("ro_{}", &devstack::random_token()[..8]);
    let password = format!("Pw-{}", devstack::random_token());
    pg.create_role(&role, &password).await.unwrap();
    pg.create_database(&format!("{role}_db"), &role).await.unwrap();
    let url = format!(
        "postgres://{role}:{password}@127.0.0.1:{}/{role}_db?sslmode=verify-full&sslrootcert={}",
        pg.port(),
        pg.ca_cert().display()
    );
    let vars: db_credentials::config::Vars = [("DATABASE_URL".to_owned(), url)].into_iter().collect();
    let app = app_for(&vars, short_retry()).await;
    let post = |name: &'static str| {
        let app = &app;
        async move {
            app.handle(request(
                Flavor::HttpV2,
                &Req::new("POST", "/items").json(&format!(r#"{{"name":"{name}"}}"#)),
                "ro",
            ))
            .await
        }
    };
    assert_eq!(post("before").await.status(), StatusCode::CREATED);
    let admin = pg.admin().await.unwrap();
    let set_read_only = |on: bool| {
        let admin = &admin;
        async move {
            let statement = if on {
                "ALTER SYSTEM SET default_transaction_read_only = on"
            } else {
                "ALTER SYSTEM RESET default_transaction_read_only"
            };
            admin.batch_execute(statement).await.unwrap();
            admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    set_read_only(true).await;
    let p = assert_unavailable(&post("during").await, "read-only", "a read-only server");
    assert!(p["detail"].as_str().unwrap().contains("does not accept writes"), "{p}");
    let sessions: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", &[&role])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sessions, 0,
        "the read-only session is discarded, and no new one is kept"
    );
    // /health/db says why: the writer this environment had is gone, and what is there instead.
    let health = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "ro"))
        .await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let h = body_json(&health);
    assert_eq!(
        (h["failover"].as_bool(), h["role"].as_str()),
        (Some(true), Some("read-only")),
        "{h}"
    );
    assert!(h["since_last_writer_ms"].as_u64().is_some(), "{h}");
    set_read_only(false).await;
    assert_eq!(post("after").await.status(), StatusCode::CREATED);
    let health = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "ro"))
        .await;
    let h = body_json(&health);
    assert_eq!(
        (h["failover"].as_bool(), h["role"].as_str()),
        (Some(false), Some("writer")),
        "{h}"
    );
}
