//! The environment's connection pool against real Postgres and moto: concurrent invocations in one
//! environment (`AWS_LAMBDA_MAX_CONCURRENCY`), its bound, maximum lifetime, a rotation under
//! concurrent load, eager init and a clean shutdown. Every assertion is on counts (sessions in
//! `pg_stat_activity`, lines of the server log, answers), never on timing.

#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod lifecycle;
mod rotation;
mod settings;
mod storm;
mod throttling;

use common::{events::*, *};
use devstack::Stack;
use http::StatusCode;
use items_api::Settings;
use std::{collections::BTreeSet, future::Future, time::Duration};

/// Sessions of `role` now: (all, running a statement, waiting for a lock), and their pids.
async fn sessions(admin: &tokio_postgres::Client, role: &str) -> (i64, i64, i64, BTreeSet<i32>) {
    let rows = admin
        .query(
            "SELECT pid, coalesce(state = 'active', false), wait_event_type IS NOT DISTINCT FROM 'Lock' \
             FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap();
    let active = rows.iter().filter(|r| r.get::<_, bool>(1)).count() as i64;
    let waiting = rows.iter().filter(|r| r.get::<_, bool>(2)).count() as i64;
    let pids = rows.iter().map(|r| r.get::<_, i32>(0)).collect();
    (rows.len() as i64, active, waiting, pids)
}

/// Polls until `done` holds for the sessions of `role`, at most `tries` times 50 ms apart (a bound
/// on waiting, not an assertion on time); returns the last sample.
async fn wait_for_sessions(
    admin: &tokio_postgres::Client,
    role: &str,
    tries: u32,
    done: impl Fn(&(i64, i64, i64, BTreeSet<i32>)) -> bool,
) -> (i64, i64, i64, BTreeSet<i32>) {
    let mut last = sessions(admin, role).await;
    for _ in 0..tries {
        if done(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = sessions(admin, role).await;
    }
    last
}

/// Holds a row lock on item `id` while `work` runs, so every `PUT /items/{id}` in it waits on
/// its own session; runs `observe` meanwhile and releases the lock when it returns. What "a slow
/// statement" needs without timing anything (a table lock would also hold up new connections
/// preparing their statements).
async fn with_row_locked<W, O, T, R>(dbname: &str, id: i64, work: W, observe: O) -> (T, R)
where
    W: Future<Output = T>,
    O: Future<Output = R>,
{
    let mut locker = Stack::shared().postgres.admin_on(dbname).await.unwrap();
    let tx = locker.transaction().await.unwrap();
    let locked = tx
        .execute("SELECT 1 FROM items WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .unwrap();
    assert_eq!(locked, 1, "item {id} exists");
    tokio::join!(work, async {
        let seen = observe.await;
        tx.commit().await.unwrap();
        seen
    })
}

/// PUTs item `id`; the response.
async fn put(app: &items_api::App, id: i64, name: impl std::fmt::Display) -> http::Response<lambda_http::Body> {
    let path = format!("/items/{id}");
    app.handle(request(
        Flavor::HttpV2,
        &Req::new("PUT", &path).json(&format!(r#"{{"name":"{name}"}}"#)),
        "pool",
    ))
    .await
}

/// POSTs an item; the response.
async fn post(app: &items_api::App, name: impl std::fmt::Display) -> http::Response<lambda_http::Body> {
    app.handle(request(
        Flavor::HttpV2,
        &Req::new("POST", "/items").json(&format!(r#"{{"name":"{name}"}}"#)),
        "pool",
    ))
    .await
}

/// Fails with every non-2xx answer in `responses`.
fn assert_all_succeeded(responses: &[http::Response<lambda_http::Body>], what: &str) {
    let failed: Vec<String> = responses
        .iter()
        .filter(|r| !r.status().is_success())
        .map(|r| format!("{} {:?}", r.status(), r.body()))
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed: {failed:#?}",
        failed.len(),
        responses.len()
    );
}

/// An App with its own role and secret, its table created with one item: the fixture and the
/// item's id.
async fn pooled(prefix: &str, extra: &[(&str, &str)]) -> (Fixture, i64) {
    let f = fixture(prefix, extra).await;
    let created = post(&f.app, "first").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = body_json(&created)["id"].as_i64().unwrap();
    (f, id)
}
