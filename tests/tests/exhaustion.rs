//! Too many connections (issue 12, proof 3): a database with `max_connections` 10, 3 of them
//! reserved for superusers, and 32 cold execution environments at once, each an `App` of its own
//! (its own connection, its own role, so the server log tells them apart).
//!
//! Asserted: every request ends 2xx or 503 with `Retry-After` naming the condition, never 500;
//! once the connections are freed every environment succeeds; and the database log shows the
//! attempts bounded per environment (no more than the retry policy's per request) and spaced by
//! the backoff (never two from one environment closer than its first step allows).

use db_credentials::{Config, CredentialProvider, Database, config::Vars};
use devstack::{Postgres, PostgresOptions};
use items_api::{App, Settings, db::RetryPolicy};
use lambda_http::http::{self, StatusCode};
use lambda_http::{Body, Request};
use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

const ENVIRONMENTS: usize = 32;
const MAX_CONNECTIONS: u32 = 10;
const RESERVED: u32 = 3;

fn get_items() -> Request {
    http::Request::builder()
        .method("GET")
        .uri("/items")
        .body(Body::Empty)
        .expect("request")
}

struct Outcome {
    status: StatusCode,
    retry_after: Option<u64>,
    condition: Option<String>,
}

async fn call(app: &App) -> Outcome {
    let resp = app.handle(get_items()).await;
    let body: serde_json::Value = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    Outcome {
        status: resp.status(),
        retry_after: resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        condition: body["condition"].as_str().map(str::to_owned),
    }
}

/// Each refused connect in the server log, per user, with its time in ms (the prefix is set below).
fn refusals(log: &str) -> BTreeMap<String, Vec<u64>> {
    let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in log.lines().filter(|l| {
        l.contains("FATAL") && (l.contains("too many clients") || l.contains("connection slots are reserved"))
    }) {
        let Some(user) = line.split("user=").nth(1).and_then(|r| r.split_whitespace().next()) else {
            continue;
        };
        // "%n": seconds since the epoch with milliseconds, e.g. 1796169146.314
        let ms = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
            .map_or(0, |s| (s * 1000.0) as u64);
        per.entry(user.to_owned()).or_default().push(ms);
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_environments_beyond_the_connection_budget_get_503_then_all_succeed() {
    devstack::evidence::init_tracing("test-exhaustion");
    let pg = Postgres::start(&PostgresOptions {
        max_connections: MAX_CONNECTIONS,
        superuser_reserved_connections: RESERVED,
        ..Default::default()
    })
    .expect("Postgres starts");
    // The superuser's sessions use the reserved slots; the environments share the other 7.
    let admin = pg.admin().await.unwrap();
    admin
        .batch_execute("ALTER SYSTEM SET log_line_prefix = '%n [%p] user=%u '")
        .await
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    admin.batch_execute("CREATE ROLE exh_owner NOLOGIN").await.unwrap();
    admin
        .batch_execute("CREATE DATABASE exh OWNER exh_owner")
        .await
        .unwrap();
    let exh = pg.admin_on("exh").await.unwrap();
    items_api::store::ensure_schema(&exh).await.unwrap();
    exh.batch_execute("ALTER TABLE items OWNER TO exh_owner").await.unwrap();
    let policy = RetryPolicy::default();
    let ca = pg.ca_cert().display().to_string();
    let mut apps = Vec::new();
    for i in 0..ENVIRONMENTS {
        let role = format!("exh_{i:02}");
        let password = format!("Pw-{}", devstack::random_token());
        pg.create_role(&role, &password).await.unwrap();
        admin
            .batch_execute(&format!("GRANT exh_owner TO {role}"))
            .await
            .unwrap();
        let vars: Vars = [(
            "DATABASE_URL".to_owned(),
            format!(
                "postgres://{role}:{password}@127.0.0.1:{}/exh?sslmode=verify-full&sslrootcert={ca}",
                pg.port()
            ),
        )]
        .into_iter()
        .collect();
        let config = Config::from_vars(&vars).unwrap();
        let database = Database::new(CredentialProvider::with_sdk(config, None), "items-api");
        apps.push(Some(Arc::new(App::new(
            database,
            Settings {
                retry: policy,
                ..Settings::default()
            },
        ))));
    }

    // 1. All at once, cold: the first seven hold their slots; the others wait, then get 503.
    let started = Instant::now();
    let first: Vec<Outcome> = all(apps
        .iter()
        .flatten()
        .cloned()
        .map(|app| async move { call(&app).await }))
    .await;
    let phase1 = started.elapsed();
    let mut requests = vec![1u64; ENVIRONMENTS];
    let ok: Vec<usize> = (0..ENVIRONMENTS)
        .filter(|i| first[*i].status == StatusCode::OK)
        .collect();
    for (i, o) in first.iter().enumerate() {
        check(i, o);
    }
    println!(
        "{ENVIRONMENTS} cold environments, {} free slots: {} answered 200 and {} answered 503 within {:.1} s",
        MAX_CONNECTIONS - RESERVED,
        ok.len(),
        ENVIRONMENTS - ok.len(),
        phase1.as_secs_f64()
    );
    assert!(!ok.is_empty(), "nobody got a connection");
    assert!(
        ok.len() <= (MAX_CONNECTIONS - RESERVED) as usize,
        "more sessions than slots: {}",
        ok.len()
    );
    assert!(
        ok.len() < ENVIRONMENTS,
        "the database never ran out of connections: it proved nothing"
    );

    // 2. The holders go away (their environments retire): every other environment gets in, each
    // leaving as soon as it is served, as requests come and go.
    for i in &ok {
        apps[*i] = None;
    }
    let waiting: Vec<(usize, Arc<App>)> = apps
        .iter_mut()
        .enumerate()
        .filter_map(|(i, a)| a.take().map(|a| (i, a)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let served = all(waiting.into_iter().map(|(i, app)| async move {
        let mut sent = 0u64;
        loop {
            sent += 1;
            let o = call(&app).await;
            check(i, &o);
            if o.status == StatusCode::OK {
                drop(app);
                return (i, sent, true);
            }
            if Instant::now() > deadline {
                return (i, sent, false);
            }
            tokio::time::sleep(Duration::from_secs(o.retry_after.unwrap_or(1))).await;
        }
    }))
    .await;
    for (i, sent, succeeded) in &served {
        requests[*i] += sent;
        assert!(succeeded, "environment {i} never got a connection");
    }
    println!(
        "after the holders left, the {} others were served within {:.1} s ({} requests in all)",
        served.len(),
        started.elapsed().as_secs_f64() - phase1.as_secs_f64(),
        requests.iter().sum::<u64>()
    );

    // 3. The database's side: refused attempts per environment, bounded and spaced.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = pg.server_log();
    let per = refusals(&log);
    let total: usize = per.values().map(Vec::len).sum();
    let most = per.values().map(Vec::len).max().unwrap_or(0);
    let closest = per
        .values()
        .flat_map(|times| times.windows(2).map(|w| w[1].saturating_sub(w[0])))
        .min();
    println!(
        "database log: {total} refused connects (53300) from {} environments; at most {most} from one; closest two from one environment {closest:?} ms apart",
        per.len()
    );
    assert!(total > 0, "the database log shows no refused connect");
    for (user, times) in &per {
        let i: usize = user.trim_start_matches("exh_").parse().unwrap();
        let bound = requests[i] * u64::from(policy.attempts);
        assert!(
            times.len() as u64 <= bound,
            "{user}: {} refused connects for {} requests (bound {bound})",
            times.len(),
            requests[i]
        );
    }
    // One attempt per environment per backoff step: the first step is at least half of
    // `first_backoff` (equal jitter); the log's clock has millisecond resolution.
    let floor = (policy.first_backoff / 2).as_millis() as u64 - 5;
    assert!(
        closest.is_none_or(|c| c >= floor),
        "two connects from one environment {closest:?} ms apart"
    );
}

/// Every request ends 200 or 503 with `Retry-After` naming the condition; never a 500.
fn check(i: usize, o: &Outcome) {
    match o.status {
        StatusCode::OK => {}
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(
                o.retry_after.is_some_and(|s| s >= 1),
                "environment {i}: 503 without Retry-After"
            );
            assert_eq!(o.condition.as_deref(), Some("too-many-connections"), "environment {i}");
        }
        other => panic!("environment {i}: {other} ({:?})", o.condition),
    }
}

/// Runs `futures` at once, each on its own task; their outputs in order.
async fn all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for h in handles {
        outputs.push(h.await.expect("the task completes"));
    }
    outputs
}
