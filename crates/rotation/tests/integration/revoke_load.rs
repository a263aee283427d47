//! items-api (in process) under a small read and write load through an immediate rotation and a
//! revoke that ends its own session: no 500 ever, no failed read at all, no failed request that
//! started after the revoke returned, and every acknowledged write is there at the end.

use crate::support::*;
use devstack::Stack;
use items_api::{App, Settings};
use rotation::{Strategy, revoke::RevokeRequest};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const APPLICATION: &str = "revoke-load-test";

struct Outcome {
    started: Instant,
    what: String,
    status: u16,
    created: Option<i64>,
}

async fn call(app: &App, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map_or(lambda_http::Body::Empty, |b| lambda_http::Body::Text(b.to_string()));
    let resp = app.handle(req.body(body).unwrap()).await;
    let status = resp.status().as_u16();
    let json = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_api_rides_through_rotate_and_revoke_of_its_own_sessions() {
    let stack = Stack::shared();
    let app_db = stack.create_app("rv_load").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("rv-load"), &stack.secret_json(&app_db))
        .await
        .unwrap();
    let api_vars: db_credentials::config::Vars = stack.lambda_env(&arn).into_iter().collect();
    let provider = db_credentials::CredentialProvider::with_sdk(
        db_credentials::Config::from_vars(&api_vars).unwrap(),
        Some(&stack.moto.sdk_config().await),
    );
    let app = Arc::new(App::new(
        db_credentials::Database::new(provider, APPLICATION),
        Settings::from_vars(&api_vars).unwrap(),
    ));
    let (status, _) = call(&app, "POST", "/items", Some(json!({"name": "seed"}))).await;
    assert_eq!(status, 201, "items-api serves before the rotation");

    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..3 {
        let (app, outcomes, stop) = (Arc::clone(&app), Arc::clone(&outcomes), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let (what, status, created) = if (n + client).is_multiple_of(3) {
                    let name = format!("c{client}-{n}");
                    let (status, body) = call(&app, "POST", "/items", Some(json!({"name": name}))).await;
                    (format!("POST {name}"), status, body["id"].as_i64())
                } else {
                    let (status, _) = call(&app, "GET", "/items?limit=5", None).await;
                    ("GET /items".to_owned(), status, None)
                };
                outcomes.lock().unwrap().push(Outcome {
                    started,
                    what,
                    status,
                    created: created.filter(|_| status == 201),
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
    driver(stack).await.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let request = RevokeRequest::from_json(&json!({"Revoke": {"SecretId": arn}})).unwrap();
    let report = rotator.revoke(&request, None).await.unwrap();
    let revoked = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    assert!(
        report.sessions_ended.iter().any(|s| s.application == APPLICATION),
        "the revoke ended items-api's own session, opened with the old password: {report:#?}"
    );
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= revoked).collect();
    assert!(
        after.len() >= 10,
        "load went on after the revoke ({} requests)",
        after.len()
    );
    let server_errors: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status >= 500 && o.status != 503)
        .map(|o| format!("{} -> {}", o.what, o.status))
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:?}");
    let failed_after: Vec<String> = after
        .iter()
        .filter(|o| !(200..300).contains(&o.status))
        .map(|o| format!("{} -> {}", o.what, o.status))
        .collect();
    assert!(
        failed_after.is_empty(),
        "requests that started after the revoke failed: {failed_after:?}"
    );
    // A read in flight on the ended session is retried transparently (idempotent); only a write
    // may answer 503, and only one that started before the revoke returned.
    let failed_reads: Vec<String> = outcomes
        .iter()
        .filter(|o| o.what.starts_with("GET") && !(200..300).contains(&o.status))
        .map(|o| format!("{} -> {}", o.what, o.status))
        .collect();
    assert!(failed_reads.is_empty(), "{failed_reads:?}");
    let acknowledged: Vec<i64> = outcomes.iter().filter_map(|o| o.created).collect();
    assert!(!acknowledged.is_empty());
    for id in &acknowledged {
        let (status, _) = call(&app, "GET", &format!("/items/{id}"), None).await;
        assert_eq!(status, 200, "acknowledged write {id} is there");
    }
    let answered_503: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == 503)
        .map(|o| o.what.as_str())
        .collect();
    let in_flight_503 = answered_503.len();
    println!(
        "revoke under load: {} requests, {} after the revoke, {} acknowledged writes, {in_flight_503} answered 503 (each started before the revoke returned: {answered_503:?}), {} session(s) ended",
        outcomes.len(),
        after.len(),
        acknowledged.len(),
        report.sessions_ended.len()
    );
}
