//! Preflight against real Postgres and moto: a healthy setup passes every check under both
//! strategies; each seeded fault fails its own check, with a fix, and nothing else; and after
//! every run the secret's versions and stages and the roles' `pg_authid` rows are exactly what
//! they were.

use crate::support::*;
use devstack::{Stack, StackOptions};
use rotation::{
    Strategy,
    preflight::{PreflightReport, PreflightRequest, Status},
};
use serde_json::json;

/// What preflight must not change: every version of the secret with its stages, and the
/// `pg_authid` rows (name and stored password) of `roles`, absent ones included.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    versions: Vec<(String, Vec<String>)>,
    roles: Vec<(String, Option<String>)>,
}

async fn snapshot(stack: &Stack, secrets: &[&str], roles: &[&str]) -> Snapshot {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let mut versions = Vec::new();
    for secret in secrets {
        let out = sm
            .list_secret_version_ids()
            .secret_id(*secret)
            .include_deprecated(true)
            .send()
            .await
            .unwrap();
        for v in out.versions() {
            let mut stages = v.version_stages().to_vec();
            stages.sort();
            versions.push((format!("{secret}:{}", v.version_id().unwrap()), stages));
        }
    }
    versions.sort();
    let mut rows = Vec::new();
    for role in roles {
        rows.push(((*role).to_owned(), rolpassword(stack, role).await));
    }
    let exists = stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_authid WHERE rolname = ANY($1)",
            &[&roles.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    rows.push(("(rows)".to_owned(), Some(exists.to_string())));
    Snapshot { versions, roles: rows }
}

async fn preflight(stack: &Stack, strategy: Strategy, extra: &[(&str, &str)], arn: &str) -> PreflightReport {
    let rotator = new_rotator(stack, &vars(stack, strategy, extra)).await;
    let request = PreflightRequest::from_json(&json!({"Preflight": {"SecretId": arn}})).unwrap();
    rotator.preflight(&request, None).await
}

/// The report never holds a password, and a failed check names its fix.
fn assert_sane(report: &PreflightReport, passwords: &[&str]) {
    let text = serde_json::to_string(report).unwrap();
    for p in passwords {
        assert!(!text.contains(p), "a password reached the report: {text}");
    }
    for c in &report.checks {
        if matches!(c.status, Status::Failed | Status::Warning) {
            assert!(c.fix.as_ref().is_some_and(|f| !f.is_empty()), "{c:?}");
        }
    }
}

fn assert_all_ok(report: &PreflightReport, expected: &[&str]) {
    let names: Vec<&str> = report.checks.iter().map(|c| c.check).collect();
    assert_eq!(names, expected, "{report:#?}");
    for c in &report.checks {
        assert_eq!(c.status, Status::Ok, "{c:#?}");
    }
    assert!(report.ok);
}

/// Only `check` failed, and every check after it that needs it was skipped, not run.
fn assert_only_failed(report: &PreflightReport, check: &str, fix_mentions: &str) {
    assert_eq!(report.failed(), [check], "{report:#?}");
    assert!(!report.ok);
    let failed = report.check(check).unwrap();
    let fix = failed.fix.as_deref().unwrap();
    assert!(
        fix.contains(fix_mentions),
        "{check}: fix {fix:?} does not mention {fix_mentions:?}"
    );
    assert!(report.checks.iter().all(|c| c.status != Status::Warning), "{report:#?}");
}

const SINGLE: [&str; 11] = [
    "configuration",
    "secret",
    "random-password",
    "endpoint",
    "dns",
    "tcp",
    "tls",
    "login",
    "server",
    "test-query",
    "password-change",
];
const ALTERNATING: [&str; 12] = [
    "configuration",
    "secret",
    "random-password",
    "endpoint",
    "dns",
    "tcp",
    "tls",
    "login",
    "server",
    "test-query",
    "master-login",
    "alternate-user",
];

#[tokio::test]
async fn a_healthy_single_user_setup_passes_every_check_and_nothing_changes() {
    let stack = Stack::shared();
    let app = stack.create_app("pf_su").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("pf-su"), &stack.secret_json(&app))
        .await
        .unwrap();
    let before = snapshot(stack, &[&arn], &[&app.role]).await;
    let report = preflight(stack, Strategy::SingleUser, &[], &arn).await;
    assert_all_ok(&report, &SINGLE);
    assert_sane(&report, &[&app.password]);
    let server = &report.check("server").unwrap().detail;
    assert!(
        server.contains("password_encryption scram-sha-256") && server.contains("log_statement all"),
        "{server}"
    );
    assert_eq!(snapshot(stack, &[&arn], &[&app.role]).await, before);
    login(stack, &app.role, &app.password, &app.dbname)
        .await
        .expect("the password is still the secret's");
    assert_no_password_in_server_log(stack, &arn, &[]).await;
}

#[tokio::test]
async fn a_healthy_alternating_setup_passes_every_check_before_and_after_its_first_rotation() {
    let stack = Stack::shared();
    let app = stack.create_app("pf_alt").await.unwrap();
    let master_arn = master_secret(stack).await;
    let master = stack.master().await.unwrap().username.clone();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_arn);
    let arn = stack
        .create_secret(&Stack::secret_name("pf-alt"), &secret)
        .await
        .unwrap();
    let clone = format!("{}_clone", app.role);
    let roles = [app.role.as_str(), clone.as_str(), master.as_str()];
    let before = snapshot(stack, &[&arn, &master_arn], &roles).await;
    let report = preflight(stack, Strategy::AlternatingUsers, &[], &arn).await;
    assert_all_ok(&report, &ALTERNATING);
    assert_sane(&report, &[&app.password]);
    assert!(
        report
            .check("alternate-user")
            .unwrap()
            .detail
            .contains("create or update"),
        "{report:#?}"
    );
    let after = snapshot(stack, &[&arn, &master_arn], &roles).await;
    assert_eq!(after, before);
    assert_eq!(
        rolpassword(stack, &clone).await,
        None,
        "the rehearsed clone was rolled back"
    );

    // Once rotated, AWSCURRENT is the clone and the master would change the original user.
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    driver(stack).await.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let before = snapshot(stack, &[&arn, &master_arn], &roles).await;
    let report = preflight(stack, Strategy::AlternatingUsers, &[], &arn).await;
    assert_all_ok(&report, &ALTERNATING);
    assert!(
        report
            .check("alternate-user")
            .unwrap()
            .detail
            .contains(&format!("may set the password of {}", app.role)),
        "{report:#?}"
    );
    assert_eq!(snapshot(stack, &[&arn, &master_arn], &roles).await, before);
    assert!(logs_in(stack, &current(stack, &arn).await).await);
    login(stack, &app.role, &app.password, &app.dbname)
        .await
        .expect("the original user's password is untouched");
}

/// Stock Postgres always lets a role change its own password; what it refuses (SQLSTATE 42501,
/// as `rds.restrict_password_commands` does) is changing another role's. A user whose sessions
/// start as another role (`ALTER ROLE … SET role`) is such a user: its `ALTER ROLE` runs as that
/// role, exactly as setSecret's would.
/// A user whose sessions start as another role (`ALTER ROLE … SET role`): see the test below.
async fn restrict_own_password(stack: &Stack, role: &str) {
    let reader = format!("{role}_reader");
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE ROLE \"{reader}\" NOLOGIN; GRANT \"{reader}\" TO \"{role}\"; ALTER ROLE \"{role}\" SET role = '{reader}'"
        ))
        .await
        .unwrap();
}

/// Stock Postgres always lets a role change its own password; what it refuses (SQLSTATE 42501,
/// as `rds.restrict_password_commands` does) is changing another role's. A user whose sessions
/// start as another role (`ALTER ROLE … SET role`) is such a user: its `ALTER ROLE` runs as that
/// role, exactly as setSecret's would.
#[tokio::test]
async fn a_user_that_may_not_change_its_own_password_fails_password_change() {
    let stack = Stack::shared();
    let app = stack.create_app("pf_own").await.unwrap();
    restrict_own_password(stack, &app.role).await;
    let arn = stack
        .create_secret(&Stack::secret_name("pf-own"), &stack.secret_json(&app))
        .await
        .unwrap();
    let before = snapshot(stack, &[&arn], &[&app.role]).await;
    let report = preflight(stack, Strategy::SingleUser, &[], &arn).await;
    assert_only_failed(&report, "password-change", "rds_password");
    assert!(
        report.check("password-change").unwrap().detail.contains("42501"),
        "{report:#?}"
    );
    assert_sane(&report, &[&app.password]);
    assert_eq!(snapshot(stack, &[&arn], &[&app.role]).await, before);

    // With a masterarn, setSecret falls back to the master: preflight rehearses that too and
    // says so with a warning, not a failure.
    let master_arn = master_secret(stack).await;
    let master = stack.master().await.unwrap().username.clone();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_arn);
    let arn = stack
        .create_secret(&Stack::secret_name("pf-own-master"), &secret)
        .await
        .unwrap();
    let roles = [app.role.as_str(), master.as_str()];
    let before = snapshot(stack, &[&arn, &master_arn], &roles).await;
    let report = preflight(stack, Strategy::SingleUser, &[], &arn).await;
    assert!(report.ok, "{report:#?}");
    let check = report.check("password-change").unwrap();
    assert_eq!(check.status, Status::Warning, "{check:#?}");
    assert!(check.detail.contains("setSecret will use it"), "{check:#?}");
    assert_sane(&report, &[&app.password]);
    assert_eq!(snapshot(stack, &[&arn, &master_arn], &roles).await, before);
}

#[tokio::test]
async fn a_master_without_createrole_fails_alternate_user() {
    let stack = Stack::shared();
    let app = stack.create_app("pf_nocr").await.unwrap();
    let weak = format!("{}_weak", app.role);
    let weak_password = devstack::evidence::secret(format!("Weak-{}", devstack::random_token()));
    stack.postgres.create_role(&weak, &weak_password).await.unwrap();
    let master_arn = stack
        .create_secret(
            &Stack::secret_name("pf-weak"),
            &secret_json(stack, &weak, &weak_password, "postgres"),
        )
        .await
        .unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_arn);
    let arn = stack
        .create_secret(&Stack::secret_name("pf-nocr"), &secret)
        .await
        .unwrap();
    let clone = format!("{}_clone", app.role);
    let roles = [app.role.as_str(), clone.as_str(), weak.as_str()];
    let before = snapshot(stack, &[&arn, &master_arn], &roles).await;
    let report = preflight(stack, Strategy::AlternatingUsers, &[], &arn).await;
    assert_only_failed(&report, "alternate-user", "CREATEROLE");
    assert_eq!(report.check("master-login").unwrap().status, Status::Ok);
    assert_sane(&report, &[&app.password, &weak_password]);
    assert_eq!(snapshot(stack, &[&arn, &master_arn], &roles).await, before);
}

#[tokio::test]
async fn a_wrong_ca_fails_tls() {
    let stack = Stack::shared();
    let dir = std::env::temp_dir().join(format!("preflight-ca-{}", devstack::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let other_ca = devstack::postgres::unrelated_ca(&dir, "other-ca.pem").unwrap();
    let app = stack.create_app("pf_ca").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("pf-ca"), &stack.secret_json(&app))
        .await
        .unwrap();
    let before = snapshot(stack, &[&arn], &[&app.role]).await;
    let report = preflight(
        stack,
        Strategy::SingleUser,
        &[("DB_SSL_ROOT_CERT", other_ca.to_str().unwrap())],
        &arn,
    )
    .await;
    assert_only_failed(&report, "tls", "DB_SSL_ROOT_CERT");
    for later in ["login", "server", "test-query", "password-change"] {
        assert_eq!(report.check(later).unwrap().status, Status::Skipped, "{later}");
    }
    assert_sane(&report, &[&app.password]);
    assert_eq!(snapshot(stack, &[&arn], &[&app.role]).await, before);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_stopped_database_fails_tcp() {
    let stack = Stack::start(&StackOptions::default()).unwrap();
    let app = stack.create_app("pf_down").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("pf-down"), &stack.secret_json(&app))
        .await
        .unwrap();
    let before = snapshot(&stack, &[&arn], &[&app.role]).await;
    stack.postgres.stop_server().unwrap();
    let report = preflight(&stack, Strategy::SingleUser, &[], &arn).await;
    stack.postgres.start_server().unwrap();
    assert_only_failed(&report, "tcp", "stopped");
    assert_eq!(report.check("dns").unwrap().status, Status::Ok);
    assert_eq!(report.check("login").unwrap().status, Status::Skipped);
    assert_sane(&report, &[&app.password]);
    assert_eq!(snapshot(&stack, &[&arn], &[&app.role]).await, before);
}

#[tokio::test]
async fn alternating_users_without_a_masterarn_fails_secret() {
    let stack = Stack::shared();
    let app = stack.create_app("pf_nomaster").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("pf-nomaster"), &stack.secret_json(&app))
        .await
        .unwrap();
    let clone = format!("{}_clone", app.role);
    let before = snapshot(stack, &[&arn], &[&app.role, &clone]).await;
    let report = preflight(stack, Strategy::AlternatingUsers, &[], &arn).await;
    assert_only_failed(&report, "secret", "masterarn");
    assert!(report.check("secret").unwrap().detail.contains("\"masterarn\""));
    assert!(
        report.checks.iter().skip(2).all(|c| c.status == Status::Skipped),
        "{report:#?}"
    );
    assert_sane(&report, &[&app.password]);
    assert_eq!(snapshot(stack, &[&arn], &[&app.role, &clone]).await, before);
}

#[tokio::test]
async fn a_bad_test_query_fails_test_query() {
    let stack = Stack::shared();
    let app = stack.create_app("pf_query").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("pf-query"), &stack.secret_json(&app))
        .await
        .unwrap();
    let before = snapshot(stack, &[&arn], &[&app.role]).await;
    let report = preflight(
        stack,
        Strategy::SingleUser,
        &[("TEST_QUERY", "SELECT count(*) FROM no_such_table")],
        &arn,
    )
    .await;
    assert_only_failed(&report, "test-query", "TEST_QUERY");
    assert!(
        report.check("test-query").unwrap().detail.contains("42P01"),
        "{report:#?}"
    );
    assert_eq!(report.check("password-change").unwrap().status, Status::Ok);
    assert_sane(&report, &[&app.password]);
    assert_eq!(snapshot(stack, &[&arn], &[&app.role]).await, before);
}
