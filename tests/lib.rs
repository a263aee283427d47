//! End-to-end tests: the built function binaries under `cargo lambda watch`, driven over HTTP
//! (and the Lambda Invoke API) against the devstack. Shared helpers live here.

use devstack::{Stack, Watch, watch::workspace_root};
use std::time::Duration;

/// How long a first request may take: watch compiles the function on first use.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// Starts watch in the workspace with `env` and waits until `function` answers `GET /health`.
///
/// # Panics
/// When watch cannot start or the function never answers (the message carries watch's output).
pub async fn watch_items_api(env: &[(String, String)], extra: &[&str]) -> Watch {
    let mut watch =
        Watch::start(&workspace_root(env!("CARGO_MANIFEST_DIR")), env, extra).expect("cargo lambda watch starts");
    let status = watch
        .wait_for_http("items-api", "/health", FIRST_REQUEST_TIMEOUT)
        .await
        .expect("items-api answers");
    assert_eq!(status, 200, "GET /health");
    watch
}

/// Environment for items-api on the shared stack using `secret_arn`, JSON logs.
pub fn items_api_env(stack: &Stack, secret_arn: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = stack.lambda_env(secret_arn);
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    env.push(("ENVIRONMENT".into(), "staging".into()));
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// JSON log lines from watch's output (compiler output and other text are skipped).
pub fn json_lines(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `(pid, ppid)` of every live (non-zombie) process.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            (rest.first()? != &"Z").then_some((pid, rest.get(1)?.parse().ok()?))
        })
        .collect()
}

/// `root` and every live process descended from it.
pub fn process_tree(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut tree: Vec<u32> = table
        .iter()
        .filter(|(pid, _)| *pid == root)
        .map(|(pid, _)| *pid)
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(table.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    tree
}

/// Which of `pids` are still alive.
pub fn alive(pids: &[u32]) -> Vec<u32> {
    let table = process_table();
    pids.iter()
        .copied()
        .filter(|p| table.iter().any(|(pid, _)| pid == p))
        .collect()
}
