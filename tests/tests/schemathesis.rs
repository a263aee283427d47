//! A real HTTP fuzzer driven by the OpenAPI description (issue: proof §3): schemathesis against the
//! items-api binary under `cargo lambda watch`. Every check must pass (no 5xx, responses conform to
//! the schema, invalid input refused, valid input accepted) over at least 2,000 requests, counted
//! from the function's own one-line-per-request log. A 500 the emulator made itself is excused
//! only where the function's own line for that request says it answered below 500.

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
    let har = std::env::temp_dir().join(format!("schemathesis-{}.har", devstack::random_token()));
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
        .args([
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "har",
            "--report-har-path",
        ])
        .arg(&har)
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
    // Emulator-made 500s (see tests/schemathesis_hooks.py) are reported and bounded, not hidden,
    // and each must be a request the function itself logged as answered below 500.
    let emulator_faults = std::fs::read_to_string(&faults_file).unwrap_or_default();
    let _ = std::fs::remove_file(&faults_file);
    let _ = std::fs::remove_file(&spec);
    let emulator_faults: Vec<&str> = emulator_faults.lines().collect();
    println!(
        "cargo lambda watch lost the function's answer and sent its own 500 for {} failed check(s): {emulator_faults:?}",
        emulator_faults.len()
    );
    assert!(
        emulator_faults.len() * 100 <= requests,
        "the emulator failed on over 1% of requests: too often to trust this run"
    );
    let calls = har_calls(&std::fs::read_to_string(&har).expect("schemathesis wrote its HAR report"));
    let _ = std::fs::remove_file(&har);
    let excused = excused_requests_the_function_answered(&calls, &function_requests(&watch.output())[before..])
        .unwrap_or_else(|e| panic!("{e}"));
    // Every failure the hooks excused belongs to one of those calls.
    for fault in &emulator_faults {
        assert!(
            calls.iter().any(|c| c["emulator_500"] == true
                && format!(
                    "{} {}",
                    c["method"].as_str().unwrap_or_default(),
                    c["path"].as_str().unwrap_or_default()
                ) == *fault),
            "excused {fault}, which no call in the HAR report shows as the emulator's 500"
        );
    }
    println!("{excused} response(s) excused as the emulator's, each logged by the function as answered below 500");
    assert!(out.status.success(), "schemathesis found failures:\n{report}");
    assert!(
        requests >= MIN_REQUESTS,
        "only {requests} requests reached the function"
    );
    let output = watch.output();
    let sightings = devstack::capture::secret_sightings(&output, &[&app.password]);
    assert!(
        sightings.is_empty(),
        "a password reached the function's output: {sightings:?}"
    );
    let server_errors = json_lines(&output)
        .iter()
        .filter(|l| l["fields"]["status"].as_u64().is_some_and(|s| s >= 500))
        .count();
    assert_eq!(server_errors, 0, "the function answered 5xx");
}

fn count_requests(output: &str) -> usize {
    function_requests(output).len()
}

/// The function's one log line per request, in order.
fn function_requests(output: &str) -> Vec<serde_json::Value> {
    json_lines(output)
        .into_iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect()
}

/// The calls in schemathesis's HAR report, in order: method, path, status, the function's
/// `x-request-id` when it answered, and whether the answer is the emulator's own 500.
fn har_calls(har: &str) -> Vec<serde_json::Value> {
    let har: serde_json::Value = serde_json::from_str(har).expect("the HAR report is JSON");
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    entries
        .iter()
        .map(|e| {
            let header = |name: &str| {
                e["response"]["headers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|h| h["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .and_then(|h| h["value"].as_str())
                    .map(str::to_owned)
            };
            let url = e["request"]["url"].as_str().unwrap_or_default();
            let path = url.split_once("/lambda-url/items-api").map_or(url, |(_, p)| p);
            let path = path.split('?').next().unwrap_or_default();
            let status = e["response"]["status"].as_u64().unwrap_or_default();
            let body = e["response"]["content"]["text"].as_str().unwrap_or_default();
            serde_json::json!({
                "method": e["request"]["method"],
                "path": path,
                "status": status,
                "request_id": header("x-request-id"),
                "emulator_500": status == 500
                    && header("content-type").is_some_and(|c| c.starts_with("text/plain"))
                    && body.trim() == EMULATOR_500,
            })
        })
        .collect()
}

/// What `cargo lambda watch` answers when it loses the function's response (see the hooks file).
const EMULATOR_500: &str = r#"{"type":"https://httpstatuses.com/500","status":500,"title":"Internal Server Error"}"#;

/// Lines up schemathesis's calls (in order, one at a time) with the function's request lines and
/// returns how many 500s were taken for the emulator's own. A call the function answered carries
/// its request id, which pins it to its line, in order; every 500 taken for the emulator's lies
/// between two such calls and must be a line between theirs, of the same method, that the function
/// answered below 500. (Some calls never reach the function: the emulator answers CORS preflight
/// OPTIONS itself.)
fn excused_requests_the_function_answered(
    calls: &[serde_json::Value],
    logged: &[serde_json::Value],
) -> Result<usize, String> {
    let index: std::collections::HashMap<&str, usize> = logged
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((l["fields"]["request_id"].as_str()?, i)))
        .collect();
    let settle = |waiting: &mut Vec<&serde_json::Value>, gap: &[serde_json::Value]| -> Result<usize, String> {
        let mut gap: Vec<&serde_json::Value> = gap.iter().collect();
        let n = waiting.len();
        for call in waiting.drain(..) {
            let at = gap.iter().position(|l| {
                l["fields"]["method"] == call["method"] && l["fields"]["status"].as_u64().is_some_and(|s| s < 500)
            });
            match at {
                Some(at) => drop(gap.remove(at)),
                None => {
                    return Err(format!(
                        "{call} was taken for the emulator's 500, but between its neighbours the function logged \
                         no such request answered below 500: {gap:?}"
                    ));
                }
            }
        }
        Ok(n)
    };
    let mut excused = 0;
    let mut waiting: Vec<&serde_json::Value> = Vec::new();
    let mut from = 0;
    for call in calls {
        match call["request_id"].as_str() {
            Some(id) => {
                let at = *index
                    .get(id)
                    .ok_or_else(|| format!("{call} answered with a request id the function never logged"))?;
                if at < from {
                    return Err(format!("{call} is out of order with the function's log"));
                }
                excused += settle(&mut waiting, &logged[from..at])?;
                from = at + 1;
            }
            None if call["emulator_500"] == true => waiting.push(call),
            None => {}
        }
    }
    Ok(excused + settle(&mut waiting, &logged[from..])?)
}

/// The excuse needs the function's own line: a 500 with the emulator's body is excused when the
/// function logged that request as answered below 500, and not when it logged a 500 or nothing.
#[test]
fn an_emulator_500_is_excused_only_by_the_functions_own_line_below_500() {
    use serde_json::json;
    let line = |id: &str, method: &str, status: u64| json!({"fields": {"message": "request", "request_id": id, "method": method, "status": status}});
    let call = |id: Option<&str>, method: &str, emulator_500: bool| json!({"method": method, "path": "/items", "request_id": id, "emulator_500": emulator_500});
    let calls = [
        call(Some("a"), "GET", false),
        call(None, "OPTIONS", false),
        call(None, "POST", true),
        call(Some("c"), "GET", false),
    ];
    let answered = [line("a", "GET", 200), line("b", "POST", 201), line("c", "GET", 200)];
    assert_eq!(excused_requests_the_function_answered(&calls, &answered), Ok(1));
    // The function itself answered 500: not the emulator's doing.
    let failed = [line("a", "GET", 200), line("b", "POST", 500), line("c", "GET", 200)];
    assert!(excused_requests_the_function_answered(&calls, &failed).is_err_and(|e| e.contains("no such request")));
    // The function never saw it: nothing to excuse it with.
    let unseen = [line("a", "GET", 200), line("c", "GET", 200)];
    assert!(excused_requests_the_function_answered(&calls, &unseen).is_err_and(|e| e.contains("no such request")));
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
