//! One environment serving several invocations at once: a session each, up to the pool's size.

use super::*;
use futures_util::future::join_all;

/// With `AWS_LAMBDA_MAX_CONCURRENCY=8`, 8 concurrent updates that each wait on a row lock are on 8
/// sessions at once: none queues behind another on a shared connection.
#[tokio::test]
async fn eight_concurrent_invocations_run_on_eight_sessions_at_once() {
    let (f, id) = pooled("pool8", &[("AWS_LAMBDA_MAX_CONCURRENCY", "8")]).await;
    assert_eq!(f.app.db().settings().size, 8);
    let admin = Stack::shared().postgres.admin().await.unwrap();
    let requests = join_all((0..8).map(|i| put(&f.app, id, format!("slow-{i}"))));
    let (responses, peak) = with_row_locked(&f.db.dbname, id, requests, async {
        wait_for_sessions(&admin, &f.db.role, 80, |(_, _, waiting, _)| *waiting >= 8).await
    })
    .await;
    let (_, active, waiting, _) = peak;
    assert_eq!(
        waiting, 8,
        "8 statements waited on the lock at once, each on its own session"
    );
    assert_eq!(active, 8, "8 sessions of the role were active at once");
    assert_all_succeeded(&responses, "concurrent writes");
    assert_eq!(f.app.db().open_connections(), 8);
}

/// On classic Lambda (no `AWS_LAMBDA_MAX_CONCURRENCY`) the pool holds one connection, as before:
/// concurrent requests share it, one statement at a time.
#[tokio::test]
async fn without_max_concurrency_the_environment_holds_one_connection() {
    let (f, id) = pooled("pool1", &[]).await;
    assert_eq!(f.app.db().settings().size, 1);
    let admin = Stack::shared().postgres.admin().await.unwrap();
    let requests = join_all((0..4).map(|i| put(&f.app, id, format!("one-{i}"))));
    let (responses, peak) = with_row_locked(&f.db.dbname, id, requests, async {
        let first = wait_for_sessions(&admin, &f.db.role, 80, |(_, _, waiting, _)| *waiting >= 1).await;
        // Give the other three every chance to open sessions of their own (there must be none).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = sessions(&admin, &f.db.role).await;
        (first, later)
    })
    .await;
    assert_eq!(peak.0.2, 1, "one statement waited on the lock");
    assert_eq!(peak.1.0, 1, "and one session exists: {:?}", peak.1);
    assert_all_succeeded(&responses, "requests sharing one connection");
    assert_eq!(f.app.db().open_connections(), 1);
}

/// 16 concurrent requests on a pool of 8: 8 sessions, never a 9th; the other 8 wait for a free
/// connection within the request budget and succeed.
#[tokio::test]
async fn the_pool_never_exceeds_its_size() {
    let (f, id) = pooled(
        "poolcap",
        &[("AWS_LAMBDA_MAX_CONCURRENCY", "16"), ("DB_POOL_SIZE", "8")],
    )
    .await;
    assert_eq!(
        f.app.db().settings().size,
        8,
        "DB_POOL_SIZE wins over AWS_LAMBDA_MAX_CONCURRENCY"
    );
    let admin = Stack::shared().postgres.admin().await.unwrap();
    let requests = join_all((0..16).map(|i| put(&f.app, id, format!("capped-{i}"))));
    let (responses, samples) = with_row_locked(&f.db.dbname, id, requests, async {
        let mut samples = vec![wait_for_sessions(&admin, &f.db.role, 80, |(_, _, waiting, _)| *waiting >= 8).await];
        // Sample a while longer: a 9th session would show.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            samples.push(sessions(&admin, &f.db.role).await);
        }
        samples
    })
    .await;
    assert_eq!(samples[0].2, 8, "8 statements waited at once: {:?}", samples[0]);
    for s in &samples {
        assert!(s.0 <= 8, "never more sessions than the pool's size: {s:?}");
    }
    assert!(f.app.db().open_connections() <= 8);
    assert_all_succeeded(&responses, "16 requests on 8 connections");
    let (all, _, _, _) = sessions(&admin, &f.db.role).await;
    assert!(all <= 8, "{all} sessions after the burst");
}

/// A request that finds every connection of the environment in use for its whole budget is a 503
/// naming that, never a 500, and the request holding the connection is unaffected.
#[tokio::test]
async fn a_request_that_finds_every_connection_busy_for_its_budget_is_503_pool_busy() {
    let stack = Stack::shared();
    let db = stack.create_app("poolbusy").await.unwrap();
    // One connection (no AWS_LAMBDA_MAX_CONCURRENCY), and a 1 s budget.
    let app = app_for(&url_vars(stack, &db, None), short_retry()).await;
    let created = post(&app, "first").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = body_json(&created)["id"].as_i64().unwrap();
    let admin = stack.postgres.admin().await.unwrap();
    let (held, queued) = with_row_locked(&db.dbname, id, put(&app, id, "held"), async {
        let seen = wait_for_sessions(&admin, &db.role, 80, |(_, _, waiting, _)| *waiting >= 1).await;
        assert_eq!(
            seen.2, 1,
            "the first update waits on the lock, holding the only connection"
        );
        put(&app, id, "queued").await
    })
    .await;
    assert_eq!(held.status(), StatusCode::OK, "{:?}", held.body());
    assert_eq!(queued.status(), StatusCode::SERVICE_UNAVAILABLE, "{:?}", queued.body());
    assert!(header(&queued, "retry-after").is_some());
    assert_eq!(body_json(&queued)["condition"], "pool-busy");
}
