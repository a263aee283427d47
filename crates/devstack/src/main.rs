//! `devstack`: the local stack for people. `make run` and `make rotate` call it.

use clap::{Parser, Subcommand};
use devstack::{
    FailoverMode, FailoverOptions, PostgresOptions, RotationDriver, Stack, StackOptions, Watch, control,
    moto::MotoEndpoint, rotation_driver::InvokeApi, watch::workspace_root,
};
use serde::{Deserialize, Serialize};
use std::{
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::Duration,
};

type Error = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(version, about = "Local Postgres + moto + the Lambdas under cargo lambda watch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Postgres, moto and the functions under `cargo lambda watch`, create the app role,
    /// database and secret, seed a few items, print working curl lines, and run until Ctrl-C.
    Run {
        /// Where `make rotate` finds the running stack.
        #[arg(long, default_value = ".devstack/state.json")]
        state: PathBuf,
    },
    /// Fail the database of the stack `run` started over to its synchronous standby; prints each
    /// phase as it happens (see docs/failover.md).
    Failover {
        /// The state file `run` wrote.
        #[arg(long, default_value = ".devstack/state.json")]
        state: PathBuf,
        /// `crash`: the primary stops at once; `demote`: it turns read-only (25006) and keeps its
        /// sessions for --demoted-for seconds after the flip.
        #[arg(long, default_value = "crash")]
        mode: FailoverMode,
        /// Seconds from the promotion to the endpoint's flip (the DNS change).
        #[arg(long, default_value_t = 2.0)]
        dns_delay: f64,
        /// Seconds the demoted primary keeps serving after the flip (demote only).
        #[arg(long, default_value_t = 10.0)]
        demoted_for: f64,
    },
    /// Rotate the secret of the stack `run` started, through the rotation function (Invoke API).
    Rotate {
        /// The state file `run` wrote.
        #[arg(long, default_value = ".devstack/state.json")]
        state: PathBuf,
    },
    /// Run the rotation function's preflight on the secret of the stack `run` started (Invoke API):
    /// every check of a rotation, changing nothing. Exits 1 when a check failed.
    Preflight {
        /// The state file `run` wrote.
        #[arg(long, default_value = ".devstack/state.json")]
        state: PathBuf,
    },
    /// Emergency rotation of the stack `run` started: rotate now, then the rotation function's
    /// revoke ends the sessions of the superseded credential.
    Revoke {
        /// The state file `run` wrote.
        #[arg(long, default_value = ".devstack/state.json")]
        state: PathBuf,
        /// Seconds the revoke waits before ending sessions.
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
    /// Start Postgres and moto only, write the Lambdas' environment to a file, run until Ctrl-C.
    Up {
        /// Where to write the environment.
        #[arg(long, default_value = ".devstack/env")]
        env_file: PathBuf,
    },
    /// Search every collected log for every form of every collected secret (see
    /// DEVSTACK_EVIDENCE_DIR), after the guardians have copied their logs and every suite in the
    /// manifest has left its logs; exit 1 on any leak or missing log. Prints counts, never a secret.
    LeakCheck {
        /// The evidence directory.
        dir: PathBuf,
        /// The logs each suite must leave.
        #[arg(long, default_value_os_t = workspace_root(env!("CARGO_MANIFEST_DIR")).join("tests/evidence-manifest.txt"))]
        manifest: PathBuf,
        /// Hold only this suite to the manifest (repeat it; for a run of part of the tests).
        #[arg(long = "suite")]
        suites: Vec<String>,
        /// Seconds to wait for the guardians of stacks that lived in statics to copy their logs.
        #[arg(long, default_value_t = 120)]
        guardian_wait_secs: u64,
    },
    /// Start a stack, print its PIDs and directories, and exit without cleaning up (tests prove
    /// the guardians stop everything anyway).
    #[command(hide = true)]
    Abandon,
}

/// What `run` leaves for `rotate` and `failover`.
#[derive(Serialize, Deserialize)]
struct State {
    watch_url: String,
    moto_port: u16,
    secret_arn: String,
    /// The Unix socket `failover` asks for a failover on.
    #[serde(default)]
    control_socket: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { state } => run(&state).await,
        Command::Rotate { state } => rotate(&state).await,
        Command::Preflight { state } => preflight(&state).await,
        Command::Revoke { state, grace } => revoke(&state, grace).await,
        Command::Failover {
            state,
            mode,
            dns_delay,
            demoted_for,
        } => failover(&state, mode, dns_delay, demoted_for).await,
        Command::Up { env_file } => up(&env_file).await,
        Command::LeakCheck {
            dir,
            manifest,
            suites,
            guardian_wait_secs,
        } => leak_check(&dir, &manifest, &suites, Duration::from_secs(guardian_wait_secs)),
        Command::Abandon => abandon(),
    };
    if let Err(e) = result {
        eprintln!("devstack: {e}");
        std::process::exit(1);
    }
}

async fn run(state_path: &Path) -> Result<(), Error> {
    // Multi-AZ: a synchronous standby and the writer endpoint, so `make failover` can move the writer.
    let stack = Stack::start(&StackOptions {
        postgres: PostgresOptions {
            standby: true,
            ..Default::default()
        },
        ..Default::default()
    })?;
    let app = stack.create_app("app").await?;
    let arn = stack.create_secret("items-api/db", &stack.secret_json(&app)).await?;
    let mut env = stack.lambda_env(&arn);
    env.push(("ENVIRONMENT".into(), "local".into()));
    println!(
        "Postgres  {} at 127.0.0.1:{} (the writer endpoint; TLS verify-full, SCRAM): primary :{}, synchronous standby :{}",
        stack.postgres.major_version(),
        stack.postgres.port(),
        stack.postgres.primary_port(),
        stack.postgres.standby_port().unwrap_or_default(),
    );
    println!("          logs {}", stack.postgres.log_path().display());
    println!("moto      {}", stack.moto.endpoint());
    println!("secret    {arn}");
    println!("starting the functions under cargo lambda watch (the first build takes a few minutes)…");
    let mut watch = Watch::start(&workspace_root(env!("CARGO_MANIFEST_DIR")), &env, &[])?;
    watch
        .wait_for_http("items-api", "/health", Duration::from_secs(1800))
        .await?;

    let http = reqwest::Client::new();
    for (name, description) in [("notebook", "A5, dotted"), ("pen", "black, 0.5 mm"), ("stapler", "")] {
        let body = serde_json::json!({"name": name, "description": (!description.is_empty()).then_some(description)});
        let resp = http
            .post(watch.function_url("items-api", "/items"))
            .json(&body)
            .send()
            .await?;
        if resp.status() != 201 {
            return Err(format!(
                "seeding failed: HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            )
            .into());
        }
    }
    if let Some(dir) = state_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let control_socket = state_path.with_extension("sock");
    let state = State {
        watch_url: watch.base_url(),
        moto_port: stack.moto.port(),
        secret_arn: arn,
        control_socket: Some(control_socket.clone()),
    };
    std::fs::write(state_path, serde_json::to_string_pretty(&state)?)?;

    let api = watch.function_url("items-api", "");
    println!();
    println!("items-api is up, with 3 items. Try:");
    println!("  curl -s {api}/items");
    println!("  curl -s {api}/items/1");
    println!(
        "  curl -s -X POST {api}/items -H 'content-type: application/json' -d '{{\"name\":\"mug\",\"description\":\"350 ml\"}}'"
    );
    println!(
        "  curl -s -X PUT {api}/items/1 -H 'content-type: application/json' -d '{{\"name\":\"notebook\",\"description\":\"A4\"}}'"
    );
    println!("  curl -s -X DELETE -i {api}/items/2");
    println!("  curl -s {api}/health/db");
    println!("  make preflight     # every check of a rotation, changing nothing");
    println!("  make rotate        # rotate the password; the API keeps answering");
    println!("  make revoke        # rotate now and end the old password's sessions");
    println!("  make failover      # fail the database over (FAILOVER_MODE=demote: the old primary turns read-only)");
    println!("Here the function URL needs no credentials; a deployed API does (ApiAuth=iam: curl --aws-sigv4,");
    println!("jwt: a bearer token): see \"Deploying\" in README.md.");
    println!();
    println!("Function logs follow. Ctrl-C stops everything.");

    let log_follower = tokio::spawn(follow(watch.log_path()));
    let interrupted = tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        served = control::serve(&control_socket, &stack.postgres) => served.map_err(std::io::Error::other),
    };
    log_follower.abort();
    println!("\nstopping…");
    let _ = std::fs::remove_file(state_path);
    let _ = std::fs::remove_file(&control_socket);
    interrupted?;
    drop(watch);
    drop(stack);
    Ok(())
}

/// Prints what the functions log, as it comes.
async fn follow(path: PathBuf) {
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut new = String::new();
        if let Ok(n) = file.read_to_string(&mut new) {
            offset += n as u64;
            print!("{new}");
            let _ = std::io::stdout().flush();
        }
    }
}

async fn rotate(state_path: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(state_path)
        .map_err(|e| format!("cannot read {}: {e}; is `make run` running?", state_path.display()))?;
    let state: State = serde_json::from_str(&text)?;
    let driver = RotationDriver::attach(MotoEndpoint { port: state.moto_port }).await?;
    println!("rotating {} through the rotation function…", state.secret_arn);
    let report = driver
        .rotate(&state.secret_arn, &InvokeApi::new(&state.watch_url, "rotation"))
        .await?;
    for (step, took) in &report.steps {
        println!("  {:<13} {:>8.1} ms", step.as_str(), took.as_secs_f64() * 1000.0);
    }
    println!(
        "  total         {:>8.1} ms  (new version {})",
        report.total.as_secs_f64() * 1000.0,
        report.token
    );
    println!("items-api keeps its open connection (sessions survive a password change); it picks up the new");
    println!(
        "version at its next new connection: when the database refuses the old password, or after DB_SECRET_TTL_SECS."
    );
    let health: serde_json::Value = reqwest::get(format!("{}/lambda-url/items-api/health/db", state.watch_url))
        .await?
        .json()
        .await?;
    let credentials = &health["credentials"];
    println!(
        "items-api /health/db: {}, its connection logged in with version {}; current: {} (is_current: {})",
        health["status"], credentials["version_id"], credentials["current_version_id"], credentials["is_current"]
    );
    Ok(())
}

fn read_state(state_path: &Path) -> Result<State, Error> {
    let text = std::fs::read_to_string(state_path)
        .map_err(|e| format!("cannot read {}: {e}; is `make run` running?", state_path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

async fn preflight(state_path: &Path) -> Result<(), Error> {
    let state = read_state(state_path)?;
    println!(
        "preflight of {} through the rotation function (changes nothing)…",
        state.secret_arn
    );
    let report = InvokeApi::new(&state.watch_url, "rotation")
        .invoke(&serde_json::json!({"Preflight": {"SecretId": state.secret_arn}}))
        .await?;
    for check in report["checks"].as_array().into_iter().flatten() {
        println!(
            "  {:<8} {:<16} {}",
            check["status"].as_str().unwrap_or("?"),
            check["check"].as_str().unwrap_or("?"),
            check["detail"].as_str().unwrap_or("")
        );
        if let Some(fix) = check["fix"].as_str() {
            println!("  {:<8} {:<16} fix: {fix}", "", "");
        }
    }
    if report["ok"] != serde_json::Value::Bool(true) {
        return Err("a check failed: see its fix above".into());
    }
    println!("every check passed");
    Ok(())
}

async fn revoke(state_path: &Path, grace: u64) -> Result<(), Error> {
    let state = read_state(state_path)?;
    let function = InvokeApi::new(&state.watch_url, "rotation");
    let driver = RotationDriver::attach(MotoEndpoint { port: state.moto_port }).await?;
    println!("rotating {} now…", state.secret_arn);
    let rotated = driver.rotate(&state.secret_arn, &function).await?;
    println!(
        "  new version {} in {:.1} ms",
        rotated.token,
        rotated.total.as_secs_f64() * 1000.0
    );
    println!("revoking the superseded credential…");
    let report = function
        .invoke(&serde_json::json!({"Revoke": {"SecretId": state.secret_arn, "GraceSeconds": grace}}))
        .await?;
    if let Some(at) = report["changedAt"].as_str() {
        println!(
            "  sessions of {} that began before {at} (the password change):",
            report["user"]
        );
    } else {
        println!(
            "  previous user {}: password replaced by one nobody holds; its sessions:",
            report["user"]
        );
    }
    let ended = report["sessionsEnded"].as_array().cloned().unwrap_or_default();
    for s in &ended {
        println!(
            "    pid {:<8} began {} application {:?}",
            s["pid"],
            s["began"].as_str().unwrap_or("?"),
            s["application"].as_str().unwrap_or("")
        );
    }
    println!(
        "  {} session(s) ended; items-api opens new ones with the new version",
        ended.len()
    );
    Ok(())
}

async fn failover(state_path: &Path, mode: FailoverMode, dns_delay: f64, demoted_for: f64) -> Result<(), Error> {
    let text = std::fs::read_to_string(state_path)
        .map_err(|e| format!("cannot read {}: {e}; is `make run` running?", state_path.display()))?;
    let state: State = serde_json::from_str(&text)?;
    let socket = state
        .control_socket
        .ok_or("the running stack has no control socket: restart `make run`")?;
    let seconds = |name: &str, s: f64| {
        Duration::try_from_secs_f64(s).map_err(|_| format!("--{name} must be a number of seconds, 0 or more, not {s}"))
    };
    let options = FailoverOptions {
        mode,
        dns_delay: seconds("dns-delay", dns_delay)?,
        demoted_for: seconds("demoted-for", demoted_for)?,
    };
    println!(
        "failing over ({mode:?}, DNS flip {:.1} s after the promotion)…",
        options.dns_delay.as_secs_f64()
    );
    let report = control::request_failover(&socket, &options, |message| {
        if let control::Message::Phase { phase, at } = message {
            println!("  {:>8.1} ms  {}", at.as_secs_f64() * 1000.0, phase.as_str());
        }
    })
    .await?;
    println!(
        "the writer moved from :{} to :{}; the endpoint's port is unchanged",
        report.old_primary_port, report.new_primary_port
    );
    Ok(())
}

async fn up(env_file: &Path) -> Result<(), Error> {
    let stack = Stack::start(&StackOptions::default())?;
    let app = stack.create_app("app").await?;
    let arn = stack.create_secret("items-api/db", &stack.secret_json(&app)).await?;
    if let Some(dir) = env_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text: String = stack
        .lambda_env(&arn)
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(env_file, text)?;
    println!(
        "Postgres  127.0.0.1:{} (TLS, SCRAM), log {}",
        stack.postgres.port(),
        stack.postgres.log_path().display()
    );
    println!("moto      {}", stack.moto.endpoint());
    println!("secret    {arn} (user {})", app.role);
    println!("env       {}", env_file.display());
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    let _ = std::fs::remove_file(env_file);
    drop(stack);
    Ok(())
}

fn leak_check(dir: &Path, manifest: &Path, suites: &[String], guardian_wait: Duration) -> Result<(), Error> {
    use devstack::evidence;
    // Guardians of stacks that lived in statics copy their logs just after their test binary exits;
    // each registered itself and clears its entry once its copy is made.
    let waited = evidence::wait_for_guardians(dir, guardian_wait)?;
    let manifest = evidence::manifest::Manifest::read(manifest)?;
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir.join("logs")).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let entry = entry?;
        logs.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.metadata()?.len(),
        ));
    }
    let problems = manifest.check(&logs, suites);
    let report = evidence::scan(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    println!(
        "evidence: logs of {} suite(s) held to the manifest; waited {:.2} s for the guardians",
        if suites.is_empty() {
            manifest.suites.len()
        } else {
            suites.len()
        },
        waited.as_secs_f64()
    );
    for problem in &problems {
        println!("  missing evidence: {problem}");
    }
    for leak in &report.leaks {
        println!(
            "  secret #{} (line {} of {}, recorded by {}) appears {} in {} line {}",
            leak.secret,
            leak.secret,
            evidence::SECRETS_FILE,
            leak.recorded_by,
            leak.form,
            leak.file.display(),
            leak.line
        );
    }
    println!(
        "leak check: {} secrets in {} forms searched for in {} logs ({:.1} MB) in {:.2} s: {} found",
        report.secrets,
        report.forms,
        report.files,
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64(),
        report.leaks.len()
    );
    if report.secrets == 0 || report.files == 0 {
        return Err("nothing to check: no secrets or no logs were collected".into());
    }
    match (report.leaks.is_empty(), problems.is_empty()) {
        (true, true) => Ok(()),
        (false, _) => Err("secrets found in logs".into()),
        (true, false) => Err("logs the manifest expects are missing or empty".into()),
    }
}

fn abandon() -> Result<(), Error> {
    let stack = Stack::start(&StackOptions::default())?;
    println!("postgres_pid={}", stack.postgres.pid().unwrap_or_default());
    println!(
        "postgres_dir={}",
        stack
            .postgres
            .data_dir()
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("moto_pid={}", stack.moto.pid());
    // Leave without dropping anything, like a test binary whose stack lives in a static.
    std::mem::forget(stack);
    std::process::exit(0);
}
