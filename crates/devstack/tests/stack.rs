//! The devstack itself: servers start on loopback with TLS + SCRAM, refuse plaintext, and leave
//! nothing behind whether their owner drops them or just dies.

use devstack::{RotationDriver, Stack, StackOptions, StepRunner, rotation_driver::RotationEvent};
use std::{path::Path, process::Command, time::Duration};

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes: /proc/<pid>/stat says 'Z'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

async fn tls_login(stack: &Stack, user: &str, password: &str, dbname: &str) -> Result<(), tokio_postgres::Error> {
    let pem = std::fs::read(stack.postgres.ca_cert()).unwrap();
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).unwrap())
        .disable_built_in_roots(true)
        .build()
        .unwrap();
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(stack.postgres.port())
        .user(user)
        .password(password)
        .dbname(dbname)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect(postgres_native_tls::MakeTlsConnector::new(tls))
        .await?;
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.map(|_| ())
}

#[tokio::test]
async fn stack_serves_tls_and_scram_refuses_plaintext_and_stops_cleanly() {
    let stack = Stack::start(&StackOptions::default()).expect("stack starts");
    let app = stack.create_app("devtest").await.unwrap();
    tls_login(&stack, &app.role, &app.password, &app.dbname)
        .await
        .expect("TLS + SCRAM login with verify-full");
    let wrong = tls_login(
        &stack,
        &app.role,
        devstack::evidence::secret("not-the-password"),
        &app.dbname,
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.code().map(|c| c.code()), Some("28P01"), "{wrong}");

    let plaintext = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(stack.postgres.port())
        .user(&app.role)
        .password(&app.password)
        .dbname(&app.dbname)
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("plaintext TCP must be refused");
    let message = plaintext
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("no encryption"), "{plaintext:?}");

    let listen = stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap();
    assert_eq!(listen.get::<_, String>(0), "127.0.0.1");
    let verifier = stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&app.role])
        .await
        .unwrap();
    assert!(verifier.get::<_, String>(0).starts_with("SCRAM-SHA-256$4096:"));
    assert!(
        !stack.postgres.server_log().contains(&app.password),
        "seeded password reached the server log"
    );

    let pg_pid = stack.postgres.pid().unwrap();
    let moto_pid = stack.moto.pid();
    let pg_dir = stack.postgres.data_dir().parent().unwrap().to_owned();
    drop(stack);
    assert!(!alive(pg_pid), "postgres still running after drop");
    assert!(!alive(moto_pid), "moto still running after drop");
    assert!(!pg_dir.exists(), "cluster directory left behind");
}

#[test]
fn servers_stop_when_the_owner_exits_without_cleaning_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_devstack"))
        .arg("abandon")
        .output()
        .expect("run devstack abandon");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
            .to_owned()
    };
    let pg_pid: u32 = field("postgres_pid").parse().unwrap();
    let moto_pid: u32 = field("moto_pid").parse().unwrap();
    let dir = field("postgres_dir");
    wait_until("postgres stops", || !alive(pg_pid));
    wait_until("moto stops", || !alive(moto_pid));
    wait_until("the cluster directory is removed", || !Path::new(&dir).exists());
}

/// Plays createSecret and finishSecret the simplest way, to exercise the driver itself.
struct CopyCurrent {
    sm: aws_sdk_secretsmanager::Client,
}

impl StepRunner for CopyCurrent {
    async fn run(&self, e: &RotationEvent) -> Result<(), String> {
        match e.step {
            devstack::Step::Create => {
                let cur = self
                    .sm
                    .get_secret_value()
                    .secret_id(&e.secret_id)
                    .version_stage("AWSCURRENT")
                    .send()
                    .await
                    .map_err(|x| format!("{x:?}"))?;
                self.sm
                    .put_secret_value()
                    .secret_id(&e.secret_id)
                    .client_request_token(&e.token)
                    .secret_string(cur.secret_string().unwrap_or_default())
                    .version_stages("AWSPENDING")
                    .send()
                    .await
                    .map_err(|x| format!("{x:?}"))?;
            }
            devstack::Step::Finish => {
                let desc = self
                    .sm
                    .describe_secret()
                    .secret_id(&e.secret_id)
                    .send()
                    .await
                    .map_err(|x| format!("{x:?}"))?;
                let current = desc
                    .version_ids_to_stages()
                    .unwrap()
                    .iter()
                    .find(|(_, s)| s.iter().any(|x| x == "AWSCURRENT"))
                    .map(|(v, _)| v.clone())
                    .unwrap();
                self.sm
                    .update_secret_version_stage()
                    .secret_id(&e.secret_id)
                    .version_stage("AWSCURRENT")
                    .move_to_version_id(&e.token)
                    .remove_from_version_id(current)
                    .send()
                    .await
                    .map_err(|x| format!("{x:?}"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[tokio::test]
async fn rotation_driver_makes_the_empty_placeholder_and_cleans_up_after() {
    let stack = Stack::shared();
    let name = Stack::secret_name("driver");
    stack
        .create_secret(&name, &serde_json::json!({"username": "u", "password": "p"}))
        .await
        .unwrap();
    let driver = RotationDriver::new(&stack.moto).await.unwrap();
    let sm = driver.client().clone();

    let token = driver.begin(&name).await.unwrap();
    let desc = sm.describe_secret().secret_id(&name).send().await.unwrap();
    let stages = desc.version_ids_to_stages().unwrap();
    assert_eq!(
        stages.get(&token).map(Vec::as_slice),
        Some(&["AWSPENDING".to_owned()][..])
    );
    let pending = sm
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSPENDING")
        .send()
        .await;
    assert!(
        pending
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "the placeholder has no value, as on AWS: {:?}",
        pending.as_ref().err()
    );

    let runner = CopyCurrent { sm: sm.clone() };
    driver.resume(&name, &token, &runner).await.unwrap();
    let desc = sm.describe_secret().secret_id(&name).send().await.unwrap();
    assert_eq!(
        desc.version_ids_to_stages().unwrap().get(&token).map(Vec::as_slice),
        Some(&["AWSCURRENT".to_owned()][..])
    );

    let second = driver
        .rotate(&name, &runner)
        .await
        .expect("a second rotation starts cleanly after cleanup");
    assert_ne!(second.token, token);
    assert_eq!(second.steps.len(), 4);
}
