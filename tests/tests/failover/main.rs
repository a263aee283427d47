//! items-api rides through failovers (issue 12): the Multi-AZ devstack (a primary, a synchronous
//! standby, a writer endpoint on a stable port) fails over while clients send reads and writes.
//!
//! The items-api binary runs in several environments under `cargo lambda watch --concurrency 3`,
//! and in one environment serving 4 invocations at once (`AWS_LAMBDA_MAX_CONCURRENCY=4`, fed by
//! devstack's Lambda Runtime API: see `target.rs` for why not watch). Asserted:
//!
//! * no response with a status ≥ 500 other than 503, and every 503 carries `Retry-After`;
//! * no acknowledged write lost: every 201 is on the new primary, with the value of its last
//!   acknowledged PUT (none could have been acknowledged by a read-only node: it would be missing);
//! * the first write acknowledged after the endpoint flips comes within [`FIRST_WRITE_BOUND`]
//!   (the measured figure is printed);
//! * the failover is seen: `FailoversDetected` and `TimeToWriterMs` in the functions' EMF output.
//!
//! `E2E_FAILOVERS` (default 2: a crash, then a demotion) sizes it; `make soak` runs 10 back to
//! back. A second test fails over between setSecret and finishSecret of a single-user rotation.

mod load;
mod target;

use devstack::{
    AppDatabase, FailoverMode, FailoverOptions, FailoverPhase, PostgresOptions, RotationDriver, Stack, StackOptions,
    Step, Watch,
    failover::{FailoverReport, reached},
    rotation_driver::InvokeApi,
    watch::workspace_root,
};
use e2e::{items_api_env, json_lines, watch_items_api};
use load::{Tally, client, lost_writes};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use target::{ConcurrentEnvironment, Target};

/// From the flip of the endpoint to the first acknowledged write, at most: a request under way
/// tries again within the backoff cap (1 s) and one connect; the bound leaves room for a loaded
/// 2-core machine. A liveness bound, not a speed figure: the measured value is printed.
const FIRST_WRITE_BOUND: Duration = Duration::from_secs(10);
/// Environments under watch, and invocations at once in the other one.
const WATCH_ENVIRONMENTS: usize = 3;
const MAX_CONCURRENCY: usize = 4;

/// One test at a time: each starts a Multi-AZ cluster and functions on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The Multi-AZ stack, an app role with its secret (pointing at the writer endpoint), and the
/// items-api binary in both kinds of environment.
struct Ha {
    stack: Stack,
    app: AppDatabase,
    arn: String,
    watch: Watch,
    concurrent: ConcurrentEnvironment,
}

impl Ha {
    async fn start(prefix: &str) -> Self {
        devstack::evidence::init_tracing("test-failover");
        let stack = Stack::start(&StackOptions {
            postgres: PostgresOptions {
                standby: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("a Multi-AZ stack starts");
        let app = stack.create_app(prefix).await.unwrap();
        let arn = stack
            .create_secret(&Stack::secret_name(prefix), &stack.secret_json(&app))
            .await
            .unwrap();
        let env = items_api_env(&stack, &arn, &[]);
        let concurrency = WATCH_ENVIRONMENTS.to_string();
        let watch = watch_items_api(&env, &["--concurrency", &concurrency]).await;
        // watch built the binary on its first request.
        let binary = workspace_root(env!("CARGO_MANIFEST_DIR")).join("target/debug/items-api");
        let concurrent = ConcurrentEnvironment::start(&binary, &env, MAX_CONCURRENCY).await;
        Self {
            stack,
            app,
            arn,
            watch,
            concurrent,
        }
    }

    fn targets(&self) -> Vec<Target> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let watch = Target::Watch {
            http,
            base: self.watch.function_url("items-api", ""),
        };
        let runtime = Target::Runtime(self.concurrent.api.clone());
        // One more client than watch has environments, and as many as the other serves at once.
        let mut targets = vec![watch; WATCH_ENVIRONMENTS + 1];
        targets.extend(std::iter::repeat_n(runtime, MAX_CONCURRENCY));
        targets
    }

    /// The functions' EMF output: the sum of each metric's values across every document.
    fn metric_total(&self, name: &str) -> f64 {
        let mut output = self.watch.output();
        output.push('\n');
        output.push_str(&self.concurrent.output());
        json_lines(&output)
            .iter()
            .filter(|l| l.get("_aws").is_some())
            .filter_map(|l| l.get(name))
            .map(|v| match v {
                serde_json::Value::Array(values) => values.len() as f64,
                v => v.as_f64().unwrap_or(0.0),
            })
            .sum()
    }

    async fn primary(&self) -> tokio_postgres::Client {
        self.stack.postgres.admin_on(&self.app.dbname).await.unwrap()
    }
}

/// Runs a failover; returns its report and the moment the endpoint flipped.
async fn fail_over(ha: &Ha, mode: FailoverMode) -> (FailoverReport, Instant) {
    let options = FailoverOptions {
        mode,
        dns_delay: Duration::from_secs(2),
        demoted_for: Duration::from_secs(3),
    };
    let (progress, mut watching) = tokio::sync::watch::channel(Vec::new());
    let (report, flipped) = tokio::join!(ha.stack.postgres.failover(&options, Some(&progress)), async {
        reached(&mut watching, FailoverPhase::Flipped)
            .await
            .expect("the endpoint flips");
        Instant::now()
    });
    (report.expect("the failover completes"), flipped)
}

fn start_clients(targets: Vec<Target>) -> (Arc<AtomicBool>, Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers = targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| tokio::spawn(client(i, t, stop.clone(), tally.clone())))
        .collect();
    (stop, tally, workers)
}

async fn stop_clients(stop: Arc<AtomicBool>, workers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
}

/// The assertions every failover test makes.
async fn assert_rode_through(ha: &Ha, tally: &Tally, failovers: usize) {
    let violations = tally.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} responses the API must never give; first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(8)]
    );
    let lost = lost_writes(tally, &ha.primary().await).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:#?}");
    let detected = ha.metric_total("FailoversDetected");
    let times = ha.metric_total("TimeToWriterMs");
    println!("FailoversDetected {detected} and TimeToWriterMs samples {times} across the environments");
    assert!(
        detected >= failovers as f64,
        "each failover is detected by an environment ({detected} for {failovers})"
    );
    assert!(times >= 1.0, "the time to a writer is measured");
    assert!(!ha.watch.output().contains(&ha.app.password));
    assert!(!ha.concurrent.output().contains(&ha.app.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_load_loses_no_acknowledged_write_and_answers_only_503() {
    let _serial = SERIAL.lock().await;
    let failovers = setting("E2E_FAILOVERS", 2) as usize;
    let ha = Ha::start("failover").await;
    let (stop, tally, workers) = start_clients(ha.targets());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let mut first_writes = Vec::new();
    for i in 0..failovers {
        let mode = if i % 2 == 0 {
            FailoverMode::Crash
        } else {
            FailoverMode::Demote
        };
        let acknowledged_before = tally.acknowledged.lock().unwrap().len();
        let (report, flipped) = fail_over(&ha, mode).await;
        // The failover returns once the old primary is the new standby; writes go on meanwhile.
        let (first, per_target) = tally.first_write_after(flipped);
        let first = first.expect("a write is acknowledged after the flip");
        println!(
            "failover {} ({mode:?}): flipped at {:.1} s; first acknowledged write {} ms after the flip ({}); {} writes acknowledged meanwhile",
            i + 1,
            report.at(FailoverPhase::Flipped).unwrap_or_default().as_secs_f64(),
            first.as_millis(),
            per_target
                .iter()
                .map(|(t, d)| format!("{t} {} ms", d.as_millis()))
                .collect::<Vec<_>>()
                .join(", "),
            tally.acknowledged.lock().unwrap().len() - acknowledged_before,
        );
        first_writes.push(first);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_clients(stop, workers).await;
    println!(
        "{failovers} failovers in {:.1} s under load: {}",
        started.elapsed().as_secs_f64(),
        tally.summary()
    );
    let slowest = first_writes.iter().max().copied().unwrap_or_default();
    println!(
        "first acknowledged write after the flip: at most {} ms (bound {} ms)",
        slowest.as_millis(),
        FIRST_WRITE_BOUND.as_millis()
    );
    assert_rode_through(&ha, &tally, failovers).await;
    assert!(slowest <= FIRST_WRITE_BOUND, "a writer was found too late: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_between_set_secret_and_finish_secret_converges_and_the_api_recovers() {
    let _serial = SERIAL.lock().await;
    let ha = Ha::start("failrot").await;
    let (stop, tally, workers) = start_clients(ha.targets());
    let driver = RotationDriver::new(&ha.stack.moto).await.unwrap();
    let runner = InvokeApi::new(&ha.watch.base_url(), "rotation");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let token = driver.begin(&ha.arn).await.unwrap();
    driver
        .run_steps(&ha.arn, &token, &[Step::Create, Step::Set], &runner)
        .await
        .expect("createSecret and setSecret");
    // The database has the new password (on both servers: replication is synchronous), the
    // secret's AWSCURRENT still the old one. Now the primary crashes; the service retries the
    // rotation with the same token until it passes, as Secrets Manager does.
    let converge = async {
        let mut tries = 0;
        loop {
            tries += 1;
            match driver.resume(&ha.arn, &token, &runner).await {
                Ok(_) => return tries,
                Err(e) if tries < 60 => {
                    println!("rotation try {tries}: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("the rotation did not converge in {tries} tries: {e}"),
            }
        }
    };
    let ((report, _flipped), tries) = tokio::join!(fail_over(&ha, FailoverMode::Crash), converge);
    println!(
        "rotation converged after {tries} tries; failover flipped at {:.1} s",
        report.at(FailoverPhase::Flipped).unwrap_or_default().as_secs_f64()
    );
    let current = driver
        .client()
        .describe_secret()
        .secret_id(&ha.arn)
        .send()
        .await
        .unwrap();
    let stages = current.version_ids_to_stages().cloned().unwrap_or_default();
    assert!(
        stages.get(&token).is_some_and(|s| s.iter().any(|l| l == "AWSCURRENT")),
        "the rotated version is AWSCURRENT: {stages:?}"
    );

    // The API recovered: with both done, every client's last requests succeed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_clients(stop, workers).await;
    println!("failover during rotation: {}", tally.summary());
    for (client, history) in tally.histories.lock().unwrap().iter() {
        let tail = &history[history.len().saturating_sub(5)..];
        assert!(
            tail.iter().all(|s| (200..300).contains(s)),
            "client {client} has not recovered: its last statuses {tail:?}"
        );
    }
    assert_rode_through(&ha, &tally, 1).await;
    // The new password is what logs in now.
    let new_password = driver
        .client()
        .get_secret_value()
        .secret_id(&ha.arn)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v["password"].as_str().map(str::to_owned))
        .unwrap();
    assert_ne!(new_password, ha.app.password, "the rotation changed the password");
    // Every session since the crash logged in with the rotated version (the old password no longer
    // works): pending adopted before finishSecret, or AWSCURRENT after.
    for target in ha.targets().into_iter().step_by(2) {
        let health = target.send("GET", "/health/db", None).await.unwrap();
        assert_eq!(health.status, 200, "{}: {}", target.label(), health.body);
        assert_eq!(
            health.body["credentials"]["version_id"],
            token.as_str(),
            "{}",
            target.label()
        );
    }
    assert!(!ha.watch.output().contains(&new_password));
    assert!(!ha.concurrent.output().contains(&new_password));
}
