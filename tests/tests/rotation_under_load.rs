//! Zero failed requests through back-to-back rotations under load (issue: proof §1).
//!
//! items-api runs as its built binary under `cargo lambda watch --concurrency 4` with a new
//! database connection for every request, so every request goes through the credential path.
//! K clients send a mix of reads and writes while the rotation driver rotates the secret back to
//! back through the rotation binary (Lambda Invoke API of the same watch). Afterwards every
//! acknowledged write is read back.
//!
//! `E2E_ROTATIONS` (default 20) and `E2E_CLIENTS` (default 6) size it; `make soak` runs 100.

use devstack::{RotationDriver, Stack, rotation_driver::InvokeApi};
use e2e::{items_api_env, watch_items_api};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// One strategy at a time: two watches compiling and loading two cores at once would only
/// measure contention.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    failures: Mutex<Vec<String>>,
    acknowledged: Mutex<Vec<(i64, String)>>,
}

async fn client(http: reqwest::Client, base: String, id: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let op = (n as usize + id) % 4;
        let result = if op == 0 {
            let name = format!("load-{id}-{n}");
            let resp = http
                .post(format!("{base}/items"))
                .json(&json!({"name": name}))
                .send()
                .await;
            tally.writes.fetch_add(1, Ordering::Relaxed);
            match resp {
                Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                    Ok(item) => {
                        if let Some(item_id) = item["id"].as_i64() {
                            tally.acknowledged.lock().unwrap().push((item_id, name));
                        }
                        Ok(())
                    }
                    Err(e) => Err(format!("POST body: {e}")),
                },
                Ok(r) => Err(format!("POST {}: {}", r.status(), r.text().await.unwrap_or_default())),
                Err(e) => Err(format!("POST: {e}")),
            }
        } else {
            let path = if op == 1 {
                "/items?limit=10".to_owned()
            } else {
                "/health/db".to_owned()
            };
            tally.reads.fetch_add(1, Ordering::Relaxed);
            match http.get(format!("{base}{path}")).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!(
                    "GET {path} {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(format!("GET {path}: {e}")),
            }
        };
        tally.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            tally.failures.lock().unwrap().push(e);
        }
    }
}

async fn run(strategy: &str) {
    let _serial = SERIAL.lock().await;
    let rotations = setting("E2E_ROTATIONS", 20);
    let clients = setting("E2E_CLIENTS", 6) as usize;
    let stack = Stack::shared();
    let app = stack.create_app(&format!("load_{}", &strategy[..3])).await.unwrap();
    let mut secret = stack.secret_json(&app);
    if strategy == "alternating-users" {
        let master = json!({
            "engine": "postgres",
            "host": stack.postgres.host(),
            "port": stack.postgres.port(),
            "username": "postgres",
            "password": stack.postgres.superuser_password(),
        });
        secret["masterarn"] = stack
            .create_secret(&Stack::secret_name("load-master"), &master)
            .await
            .unwrap()
            .into();
    }
    let arn = stack.create_secret(&Stack::secret_name("load"), &secret).await.unwrap();
    let env = items_api_env(
        stack,
        &arn,
        &[
            ("ITEMS_API_FRESH_CONNECTION_PER_REQUEST", "true"),
            ("ROTATION_STRATEGY", strategy),
        ],
    );
    let watch = watch_items_api(&env, &["--concurrency", "4"]).await;
    let base = watch.function_url("items-api", "");
    let driver = RotationDriver::new(&stack.moto).await.unwrap();
    let runner = InvokeApi::new(&watch.base_url(), "rotation");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let workers: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(http.clone(), base.clone(), i, stop.clone(), tally.clone())))
        .collect();

    let started = Instant::now();
    let mut rotation_times = Vec::new();
    let mut rotation_error = None;
    for _ in 0..rotations {
        match driver.rotate(&arn, &runner).await {
            Ok(report) => rotation_times.push(report.total),
            Err(e) => {
                rotation_error = Some(e.to_string());
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    // Let the clients run into the last rotation's aftermath (cached credentials now refused).
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    // Every acknowledged write is there.
    let acknowledged = tally.acknowledged.lock().unwrap().clone();
    let mut lost = Vec::new();
    for (id, name) in &acknowledged {
        let resp = http.get(format!("{base}/items/{id}")).send().await.unwrap();
        let ok = resp.status() == 200 && resp.json::<Value>().await.is_ok_and(|v| v["name"] == name.as_str());
        if !ok {
            lost.push(*id);
        }
    }

    rotation_times.sort();
    let median = rotation_times
        .get(rotation_times.len() / 2)
        .copied()
        .unwrap_or_default();
    let failures = tally.failures.lock().unwrap().clone();
    println!(
        "{strategy}: {} requests ({} reads, {} writes) by {clients} clients in {:.1} s; {} rotations (median {:.0} ms); {} failed requests; {} acknowledged writes, {} lost",
        tally.requests.load(Ordering::Relaxed),
        tally.reads.load(Ordering::Relaxed),
        tally.writes.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        rotation_times.len(),
        median.as_secs_f64() * 1000.0,
        failures.len(),
        acknowledged.len(),
        lost.len(),
    );
    assert_eq!(rotation_error, None, "a rotation failed");
    assert_eq!(rotation_times.len() as u64, rotations);
    assert!(
        failures.is_empty(),
        "{} failed requests, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        acknowledged.len() as u64 >= rotations,
        "the load was too light to prove anything"
    );

    // The rotations really hit the API: cached credentials were refused and recovered from (certain
    // after two rotations for both strategies), and no password reached the functions' output.
    let output = watch.output();
    let refusals = output.matches("database refused the credentials").count();
    let via_pending = output.matches("connected with AWSPENDING credentials").count();
    println!("{strategy}: {refusals} refused logins recovered, {via_pending} of them through AWSPENDING");
    assert!(
        refusals > 0,
        "no login was ever refused: the rotations did not reach the API"
    );
    assert!(!output.contains(&app.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_rotations_under_load_fail_no_request() {
    run("single-user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_users_rotations_under_load_fail_no_request() {
    run("alternating-users").await;
}
