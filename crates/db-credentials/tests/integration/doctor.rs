//! db-doctor: every stage OK against the devstack; each broken setup named with its fix.

use crate::common::*;
use db_credentials::{
    Config,
    doctor::{Stage, Status, diagnose},
};
use devstack::{Postgres, PostgresOptions, Stack};

async fn run(stack: &Stack, v: &db_credentials::config::Vars) -> db_credentials::doctor::Report {
    diagnose(Config::from_vars(v), Some(stack.moto.sdk_config().await)).await
}

#[tokio::test]
async fn every_stage_passes_against_the_devstack() {
    let stack = Stack::shared();
    let (app, arn, _) = app_with_secret(stack, "doc").await;
    let report = run(stack, &vars(stack, Some(&arn), &[])).await;
    assert!(report.ok, "{}", report.to_text());
    for stage in Stage::ALL {
        assert_eq!(
            report.stage(stage).map(|c| c.status),
            Some(Status::Ok),
            "{stage}: {}",
            report.to_text()
        );
    }
    assert!(report.stage(Stage::Query).unwrap().detail.contains("TLS in use"));
    assert!(!report.to_text().contains(&app.password));
}

#[tokio::test]
async fn wrong_password_is_named_at_the_authentication_stage() {
    let stack = Stack::shared();
    let app = stack.create_app("docpw").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("docpw"), &with_password(stack, &app, "hunter2-doc"))
        .await
        .unwrap();
    let report = run(stack, &vars(stack, Some(&arn), &[])).await;
    let failed = report.first_failure().expect("a failure");
    assert_eq!(failed.stage, Stage::Authentication, "{}", report.to_text());
    assert!(
        failed.detail.contains("password authentication failed"),
        "{}",
        failed.detail
    );
    assert!(
        failed.fix.as_deref().unwrap().contains("does not match"),
        "{:?}",
        failed.fix
    );
    assert!(!report.to_text().contains("hunter2"));
}

#[tokio::test]
async fn missing_secret_is_named_at_the_secret_stage() {
    let stack = Stack::shared();
    let report = run(stack, &vars(stack, Some("app/nowhere"), &[])).await;
    let failed = report.first_failure().unwrap();
    assert_eq!(failed.stage, Stage::Secret, "{}", report.to_text());
    assert!(
        failed.fix.as_deref().unwrap().contains("does not exist"),
        "{:?}",
        failed.fix
    );
}

#[tokio::test]
async fn stopped_postgres_is_named_at_the_tcp_stage() {
    let stack = Stack::shared();
    let pg = Postgres::start(&PostgresOptions::default()).unwrap();
    let port = pg.port();
    pg.stop_server().unwrap();
    let secret = serde_json::json!({"username":"u","password":devstack::evidence::secret("hunter2-stopped"),"host":"127.0.0.1","port":port});
    let arn = stack
        .create_secret(&Stack::secret_name("docstopped"), &secret)
        .await
        .unwrap();
    let report = run(stack, &vars(stack, Some(&arn), &[])).await;
    let failed = report.first_failure().unwrap();
    assert_eq!(failed.stage, Stage::Tcp, "{}", report.to_text());
    assert!(failed.detail.contains("refused"), "{}", failed.detail);
}

#[tokio::test]
async fn ca_mismatch_is_named_at_the_tls_stage() {
    let stack = Stack::shared();
    let (_, arn, _) = app_with_secret(stack, "docca").await;
    let dir = std::env::temp_dir().join(format!("doc-ca-{}", devstack::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = devstack::postgres::unrelated_ca(&dir, "other.pem").unwrap();
    let report = run(
        stack,
        &vars(stack, Some(&arn), &[("DB_SSL_ROOT_CERT", other.to_str().unwrap())]),
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
    let failed = report.first_failure().unwrap();
    assert_eq!(failed.stage, Stage::Tls, "{}", report.to_text());
    assert!(
        failed.fix.as_deref().unwrap().contains("DB_SSL_ROOT_CERT"),
        "{:?}",
        failed.fix
    );
}

#[tokio::test]
async fn server_without_tls_is_named_at_the_tls_stage() {
    let stack = Stack::shared();
    let plain = Postgres::start(&PostgresOptions {
        tls: false,
        log_statements: false,
        ..Default::default()
    })
    .unwrap();
    let secret = serde_json::json!({"username":"u","password":devstack::evidence::secret("hunter2-plain"),"host":"127.0.0.1","port":plain.port()});
    let arn = stack
        .create_secret(&Stack::secret_name("docplain"), &secret)
        .await
        .unwrap();
    let mut v = vars(stack, Some(&arn), &[]);
    v.remove("DB_SSL_ROOT_CERT");
    let report = run(stack, &v).await;
    let failed = report.first_failure().unwrap();
    assert_eq!(failed.stage, Stage::Tls, "{}", report.to_text());
    assert!(failed.detail.contains("does not support TLS"), "{}", failed.detail);

    // sslmode prefer falls back to plaintext, as libpq does: the doctor says so and goes on to
    // log in (as a user this server does not have, so the login is what fails).
    v.insert("DB_SSLMODE".into(), "prefer".into());
    let report = run(stack, &v).await;
    let tls = report.stage(Stage::Tls).unwrap();
    assert_eq!(tls.status, Status::Skipped, "{}", report.to_text());
    assert!(tls.detail.contains("plaintext"), "{}", tls.detail);
    assert_eq!(
        report.first_failure().unwrap().stage,
        Stage::Authentication,
        "{}",
        report.to_text()
    );
    assert!(!report.to_text().contains("hunter2-plain"));
}

#[tokio::test]
async fn no_configuration_lists_what_to_set() {
    let report = diagnose(Config::from_vars(&Default::default()), None).await;
    let failed = report.first_failure().unwrap();
    assert_eq!(failed.stage, Stage::Configuration);
    assert!(failed.detail.contains("DB_SECRET_ARN"));
}

#[tokio::test]
async fn the_binary_reports_ok_as_text_and_json_and_fails_with_exit_1() {
    let stack = Stack::shared();
    let (app, arn, _) = app_with_secret(stack, "docbin").await;
    let run_bin = |args: &[&str], arn: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_db-doctor"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ENVIRONMENT", "staging");
        for (k, v) in vars(stack, Some(arn), &[]) {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    };
    let ok = run_bin(&[], &arn);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("database access OK"), "{text}");
    let json = run_bin(&["--json"], &arn);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), Stage::ALL.len());
    let missing = run_bin(&[], "app/not-there");
    assert_eq!(missing.status.code(), Some(1));
    for out in [&ok, &json, &missing] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        devstack::evidence::save_log("db-doctor", &all);
        let sightings = devstack::capture::secret_sightings(&all, &[&app.password]);
        assert!(sightings.is_empty(), "password in db-doctor output: {sightings:?}");
    }
}

/// `.env` is read only when ENVIRONMENT is local (or unset), and never overrides a variable that
/// is set: proved through the binary, in a directory holding a `.env`.
#[tokio::test]
async fn dotenv_is_read_only_locally_and_never_overrides_the_environment() {
    let stack = Stack::shared();
    let app = stack.create_app("dotenv").await.unwrap();
    let dir = std::env::temp_dir().join(format!("dotenv-{}", devstack::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    // A URL carries its password: each is recorded for the leak check.
    let url = |password: &str| {
        devstack::evidence::secret(format!(
            "postgres://{}:{password}@127.0.0.1:{}/{}",
            app.role,
            stack.postgres.port(),
            app.dbname
        ))
    };
    let other_password = devstack::evidence::secret("Pw-set-in-the-environment");
    std::fs::write(
        dir.join(".env"),
        format!(
            "DATABASE_URL={}\nDB_SSL_ROOT_CERT={}\n",
            url(&app.password),
            stack.postgres.ca_cert().display()
        ),
    )
    .unwrap();
    let run = |extra: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_db-doctor"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(&dir);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        devstack::evidence::save_log("db-doctor", &text);
        (out.status.code(), text)
    };
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "ENVIRONMENT unset means local: .env is read\n{text}");
    assert!(text.contains("source url"), "{text}");
    let (code, text) = run(&[("ENVIRONMENT", "local".into())]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&[("ENVIRONMENT", "staging".into())]);
    assert_eq!(code, Some(1), "outside local, .env is not read\n{text}");
    assert!(text.contains("no database credentials configured"), "{text}");
    let (code, text) = run(&[("DATABASE_URL", url(other_password))]);
    assert_eq!(code, Some(1), "a set variable wins over .env\n{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
    let sightings = devstack::capture::secret_sightings(&text, &[app.password.as_str(), other_password]);
    assert!(
        sightings.is_empty(),
        "a password reached db-doctor's output: {sightings:?}"
    );
}

#[tokio::test]
async fn an_over_privileged_user_is_a_warning_not_a_failure() {
    let stack = Stack::shared();
    let admin = stack.postgres.admin().await.unwrap();
    // RDS's role, as devstack's RDS-like master has it (made here when the master is the superuser).
    admin
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_superuser') THEN CREATE ROLE rds_superuser NOLOGIN; END IF; END $$",
        )
        .await
        .unwrap();
    for (grant, finding) in [
        ("ALTER ROLE {r} SUPERUSER", "is a superuser"),
        ("ALTER ROLE {r} CREATEROLE", "has CREATEROLE"),
        ("ALTER ROLE {r} CREATEDB", "has CREATEDB"),
        ("GRANT rds_superuser TO {r}", "is a member of rds_superuser"),
    ] {
        let (app, arn, _) = app_with_secret(stack, "docpriv").await;
        admin
            .batch_execute(&grant.replace("{r}", &format!("\"{}\"", app.role)))
            .await
            .unwrap();
        let report = run(stack, &vars(stack, Some(&arn), &[])).await;
        assert!(report.ok, "a warning is not a failure: {}", report.to_text());
        let check = report.stage(Stage::Privileges).unwrap();
        assert_eq!(check.status, Status::Warning, "{}", report.to_text());
        assert!(
            check.detail.contains(&format!("{} {finding}", app.role)),
            "{finding}: {}",
            check.detail
        );
        assert!(
            check.fix.as_deref().unwrap().contains("application role"),
            "{:?}",
            check.fix
        );
        let text = report.to_text();
        assert!(
            text.contains("[warn] privileges") && text.contains("database access OK, with warnings"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert!(
            json["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["stage"] == "privileges" && c["status"] == "warning"),
            "{json}"
        );
        assert!(!text.contains(&app.password));
    }
}
