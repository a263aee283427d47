//! A real HTTP fuzzer driven by the OpenAPI description (issue: proof §3): schemathesis against the
//! items-api binary under `cargo lambda watch`. Every check must pass (no 5xx, responses conform to
//! the schema, invalid input refused, valid input accepted) over at least 2,000 requests, counted
//! from the function's own one-line-per-request log.

use devstack::{Stack, watch::workspace_root};
use e2e::{items_api_env, json_lines, watch_items_api};
use std::process::Command;

/// Examples per operation; seven operations plus schemathesis's own coverage phase.
const MAX_EXAMPLES: &str = "420";
const MIN_REQUESTS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_2000_generated_requests() {
    let root = workspace_root(env!("CARGO_MANIFEST_DIR"));
    let schemathesis = root.join("target/tools/schemathesis/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run `make deps` (make test does)",
        schemathesis.display()
    );
    let stack = Stack::shared();
    let app = stack.create_app("fuzz").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("fuzz"), &stack.secret_json(&app))
        .await
        .unwrap();
    let watch = watch_items_api(&items_api_env(stack, &arn, &[]), &["--concurrency", "2"]).await;
    let before = count_requests(&watch.output());
    let faults_file = std::env::temp_dir().join(format!("emulator-faults-{}", devstack::random_token()));
    let spec = strict_spec(&root);

    let out = Command::new(&schemathesis)
        .arg("run")
        .arg(&spec)
        .arg("--url")
        .arg(watch.function_url("items-api", ""))
        .args([
            "--checks",
            "all",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "20261122",
            // One worker: concurrent workers create and delete items under each other's feet, and
            // Hypothesis then sees a case fail and pass on replay ("inconsistent results").
            "--workers",
            "1",
        ])
        .args(["--request-timeout", "30", "--no-color"])
        .current_dir(&root)
        // Drops only bodies that are not UTF-8, which the emulator cannot deliver (see the file).
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", root.join("tests"))
        .env("EMULATOR_FAULTS_FILE", &faults_file)
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    devstack::evidence::save_log("schemathesis", &report);
    let requests = count_requests(&watch.output()) - before;
    let summary: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).rev().take(12).collect();
    println!(
        "schemathesis: {requests} requests reached the function\n{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    // Emulator-made 500s (see tests/schemathesis_hooks.py) are reported and bounded, not hidden.
    let emulator_faults = std::fs::read_to_string(&faults_file).unwrap_or_default();
    let _ = std::fs::remove_file(&faults_file);
    let _ = std::fs::remove_file(&spec);
    let emulator_faults: Vec<&str> = emulator_faults.lines().collect();
    println!(
        "cargo lambda watch answered {} request(s) itself with a 500 without invoking the function: {emulator_faults:?}",
        emulator_faults.len()
    );
    assert!(
        emulator_faults.len() * 100 <= requests,
        "the emulator failed on over 1% of requests: too often to trust this run"
    );
    assert!(out.status.success(), "schemathesis found failures:\n{report}");
    assert!(
        requests >= MIN_REQUESTS,
        "only {requests} requests reached the function"
    );
    let output = watch.output();
    assert!(!output.contains(&app.password));
    let server_errors = json_lines(&output)
        .iter()
        .filter(|l| l["fields"]["status"].as_u64().is_some_and(|s| s >= 500))
        .count();
    assert_eq!(server_errors, 0, "the function answered 5xx");
}

fn count_requests(output: &str) -> usize {
    json_lines(output)
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .count()
}

/// `openapi.json` without its `default` responses, so that schemathesis's status-code check
/// holds every answer to the statuses listed for the operation (a `default` would accept any).
fn strict_spec(root: &std::path::Path) -> std::path::PathBuf {
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("crates/items-api/openapi.json")).unwrap()).unwrap();
    let mut removed = 0;
    for ops in spec["paths"].as_object_mut().unwrap().values_mut() {
        for op in ops.as_object_mut().unwrap().values_mut() {
            if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
                removed += usize::from(responses.remove("default").is_some());
            }
        }
    }
    assert_eq!(removed, 7, "every operation documents a default problem response");
    let path = std::env::temp_dir().join(format!("openapi-strict-{}.json", devstack::random_token()));
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    path
}
