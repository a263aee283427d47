//! `scripts/rotate-deployed.sh`, the operator's manual rotation, against the devstack: the real AWS
//! CLI (the venv's, from scripts/python-tools.txt) talking to moto for Secrets Manager and to the
//! rotation function under `cargo lambda watch` for Lambda. A failure planted at setSecret must stop
//! the script before testSecret and finishSecret; once fixed, the same rotation finishes.

use crate::{cloudformation::read_request, support::*};
use devstack::{RotationDriver, Stack, Watch, watch::workspace_root};
use std::{path::PathBuf, process::Output, time::Duration};
use tokio::io::AsyncWriteExt;

/// Lambda's Invoke API in front of `cargo lambda watch`, as AWS answers it: watch reports a
/// function error as HTTP 500, where Lambda answers 200 with `X-Amz-Function-Error: Unhandled` and
/// the error document as the payload, which makes the CLI exit 0. That is the behaviour the script
/// must see through, so the test gives it exactly that. Returns the port.
async fn lambda_invoke_api(watch_url: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let (client, watch_url) = (client.clone(), watch_url.clone());
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                let forwarded = client
                    .post(format!("{watch_url}{}", request.target))
                    .timeout(Duration::from_secs(300))
                    .body(request.body)
                    .send()
                    .await;
                let (status, body) = match forwarded {
                    Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default().to_vec()),
                    Err(_) => (502, Vec::new()),
                };
                let function_error = status >= 500 && body.windows(14).any(|w| w == b"\"errorMessage\"");
                let head = if function_error {
                    "HTTP/1.1 200 OK\r\nX-Amz-Function-Error: Unhandled\r\nX-Amz-Executed-Version: $LATEST\r\n"
                        .to_owned()
                } else {
                    format!("HTTP/1.1 {status} X\r\nX-Amz-Executed-Version: $LATEST\r\n")
                };
                let head = format!(
                    "{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    port
}

struct Script {
    path: PathBuf,
    env: Vec<(String, String)>,
}

impl Script {
    async fn run(&self, secret: &str) -> Output {
        tokio::process::Command::new("bash")
            .arg(&self.path)
            .arg(secret)
            .arg("rotation")
            .env_remove("TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The function's log lines (JSON) for `token` and `step`.
fn step_lines(log: &str, token: &str, step: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(token) && l.contains(&format!("\"step\":\"{step}\"")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_set_secret_stops_the_script_before_finish_and_the_rerun_finishes() {
    let stack = Stack::shared();
    let root = workspace_root(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/tools/py/bin");
    assert!(
        venv.join("aws").exists(),
        "the AWS CLI is installed by scripts/deps.sh (awscli in scripts/python-tools.txt)"
    );
    let app = stack.create_app("rdep").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("rdep"), &stack.secret_json(&app))
        .await
        .unwrap();
    let mut env = stack.moto.env();
    env.extend([
        ("ROTATION_STRATEGY".to_owned(), "single-user".to_owned()),
        ("DB_SSLMODE".to_owned(), "verify-full".to_owned()),
        (
            "DB_SSL_ROOT_CERT".to_owned(),
            stack.postgres.ca_cert().display().to_string(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned()),
    ]);
    let mut watch = Watch::start(&root, &env, &[]).expect("watch starts");
    watch
        .wait_listening(Duration::from_secs(60))
        .await
        .expect("watch listens");
    let mut script_env = stack.moto.env();
    script_env.extend([
        (
            "PATH".to_owned(),
            format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default()),
        ),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(), stack.moto.endpoint()),
        (
            "AWS_ENDPOINT_URL_LAMBDA".to_owned(),
            format!("http://127.0.0.1:{}", lambda_invoke_api(watch.base_url()).await),
        ),
        // One attempt per call: a retried invoke would run a step twice (harmless, but not what is
        // being counted here).
        ("AWS_MAX_ATTEMPTS".to_owned(), "1".to_owned()),
    ]);
    let script = Script {
        path: root.join("scripts/rotate-deployed.sh"),
        env: script_env,
    };

    // A rotation is under way (moto knows the rotation function only as devstack's stub, so the
    // driver starts it); the database then stops accepting the secret's password.
    let driver = RotationDriver::new(&stack.moto).await.unwrap();
    let token = driver.begin(&arn).await.unwrap();
    let before = current(stack, &arn).await;
    let planted = format!("Planted-{}", devstack::random_token());
    stack.postgres.set_password(&app.role, &planted).await.unwrap();

    let out = script.run(&arn).await;
    let said = text(&out);
    println!("the script, stopped at the planted failure:\n{said}");
    assert!(!out.status.success(), "{said}");
    for needle in [
        format!("finishing the rotation left unfinished: AWSPENDING is on version {token}"),
        "createSecret: created".to_owned(),
        // The CLI exited 0; the script saw the failure in FunctionError, as on AWS.
        format!("setSecret FAILED for version {token}: the function failed (Unhandled)"),
        "unable to log into".to_owned(),
        "no later step was run; AWSCURRENT did not move".to_owned(),
        "then run this again".to_owned(),
    ] {
        assert!(said.contains(&needle), "{needle} missing from:\n{said}");
    }
    let log = watch.output();
    assert!(step_lines(&log, &token, "setSecret") > 0, "setSecret ran:\n{log}");
    assert_eq!(
        step_lines(&log, &token, "testSecret"),
        0,
        "testSecret never ran after the failure"
    );
    assert_eq!(
        step_lines(&log, &token, "finishSecret"),
        0,
        "finishSecret never ran after the failure"
    );
    assert_eq!(current(stack, &arn).await, before, "AWSCURRENT did not move");

    // The cause fixed, the same command finishes the same rotation.
    stack.postgres.set_password(&app.role, &app.password).await.unwrap();
    let out = script.run(&arn).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for needle in [
        format!("AWSPENDING is on version {token}"),
        "setSecret: password-set".to_owned(),
        "testSecret: tested".to_owned(),
        "finishSecret: finished".to_owned(),
        format!("rotated: AWSCURRENT is version {token}"),
    ] {
        assert!(said.contains(&needle), "{needle} missing from:\n{said}");
    }
    assert_eq!(version_id(stack, &arn, "AWSCURRENT").await, token);
    assert!(
        version(stack, &arn, "AWSPENDING").await.is_none(),
        "AWSPENDING removed, as the service does"
    );
    let rotated = current(stack, &arn).await;
    assert!(logs_in(stack, &rotated).await);
    devstack::evidence::record_secret(rotated["password"].as_str().unwrap());

    // With nothing pending, it starts a rotation of its own (rotate-secret) and runs it through.
    let out = script.run(&arn).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for needle in [
        "started rotation to version",
        "createSecret: created",
        "setSecret: password-set",
        "finishSecret: finished",
    ] {
        assert!(said.contains(needle), "{needle} missing from:\n{said}");
    }
    let second = version_id(stack, &arn, "AWSCURRENT").await;
    assert_ne!(second, token);
    assert!(
        said.contains(&format!("rotated: AWSCURRENT is version {second}")),
        "{said}"
    );
    let latest = current(stack, &arn).await;
    assert!(logs_in(stack, &latest).await);
    for secret in [
        app.password.as_str(),
        planted.as_str(),
        rotated["password"].as_str().unwrap(),
        latest["password"].as_str().unwrap(),
    ] {
        assert!(!said.contains(secret), "the script printed a password");
    }
    devstack::evidence::save_log("rotate-deployed", &said);
}
