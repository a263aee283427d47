//! How long a full rotation takes against the devstack, per strategy. A measurement, not an
//! assertion: run alone to read it,
//! `cargo test -p rotation --test integration timing -- --nocapture`.

use crate::support::*;
use devstack::Stack;
use rotation::Strategy;
use serde_json::json;
use std::time::Duration;

const ROUNDS: usize = 7;

/// User + system CPU time of this process so far (Linux, clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn timing_of_a_full_rotation_per_strategy() {
    let stack = Stack::shared();
    let driver = driver(stack).await;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let app = stack.create_app("timing").await.unwrap();
        let mut secret = stack.secret_json(&app);
        if strategy == Strategy::AlternatingUsers {
            secret["masterarn"] = json!(master_secret(stack).await);
        }
        let arn = stack
            .create_secret(&Stack::secret_name("timing"), &secret)
            .await
            .unwrap();
        let rotator = new_rotator(stack, &vars(stack, strategy, &[])).await;
        let (mut totals, mut functions) = (Vec::new(), Vec::new());
        let mut per_step: Vec<Vec<Duration>> = vec![Vec::new(); 4];
        let cpu_before = cpu_time();
        for _ in 0..ROUNDS {
            let report = driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
            functions.push(report.steps.iter().map(|(_, d)| *d).sum::<Duration>());
            for (i, (_, d)) in report.steps.iter().enumerate() {
                per_step[i].push(*d);
            }
            totals.push(report.total);
        }
        let cpu = cpu_time() - cpu_before;
        assert!(logs_in(stack, &current(stack, &arn).await).await);
        let calls = rotator.secrets().calls.load(std::sync::atomic::Ordering::Relaxed);
        // The contract's own calls, no more: createSecret describe, AWSCURRENT, the pending value
        // (not found), GetRandomPassword, PutSecretValue; setSecret describe, AWSCURRENT,
        // AWSPENDING (and the master secret, alternating); testSecret describe, AWSPENDING;
        // finishSecret describe, AWSPENDING (for the one login that proves it before AWSCURRENT
        // moves), UpdateSecretVersionStage.
        let per_rotation = match strategy {
            Strategy::SingleUser => 13,
            Strategy::AlternatingUsers => 14,
        };
        assert_eq!(
            calls,
            per_rotation * ROUNDS,
            "{strategy}: Secrets Manager calls in {ROUNDS} rotations"
        );
        let steps: Vec<String> = per_step.into_iter().map(|d| format!("{:?}", median(d))).collect();
        println!(
            "{strategy}: median {:?} per rotation (RotateSecret + 4 steps + cleanup), median {:?} in the four steps \
             (create/set/test/finish {}), min {:?}, max {:?}; {} Secrets Manager calls by the function per rotation; \
             {:?} CPU of this process per rotation (driver included, 10 ms resolution)",
            median(totals.clone()),
            median(functions),
            steps.join("/"),
            totals.iter().min().unwrap(),
            totals.iter().max().unwrap(),
            calls as f64 / ROUNDS as f64,
            cpu / ROUNDS as u32,
        );
    }
}
