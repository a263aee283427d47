//! Alternating users and the clone: an existing `<user>_clone` is checked and repaired, never
//! trusted; its sessions act as `<user>`, so whatever either login creates belongs to `<user>`; a
//! clone created concurrently converges; a master that may not act on a role is told how to fix it.

use crate::support::*;
use devstack::{AppDatabase, MasterKind, Stack, Step};
use rotation::Strategy;
use serde_json::json;
use std::time::{Duration, Instant};

async fn alternating(stack: &Stack, app: &AppDatabase, prefix: &str) -> String {
    let mut secret = stack.secret_json(app);
    secret["masterarn"] = json!(master_secret(stack).await);
    stack.create_secret(&Stack::secret_name(prefix), &secret).await.unwrap()
}

async fn superuser(stack: &Stack, sql: &str) {
    stack.postgres.admin().await.unwrap().batch_execute(sql).await.unwrap();
}

async fn is_member(stack: &Stack, member: &str, of: &str) -> bool {
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT pg_has_role(m.oid, r.oid, 'USAGE') FROM pg_roles m, pg_roles r WHERE m.rolname = $1 AND r.rolname = $2",
            &[&member, &of],
        )
        .await
        .unwrap()
        .get(0)
}

/// `current_user` of a session that logged in with a version's credentials.
async fn acts_as(stack: &Stack, v: &serde_json::Value) -> String {
    let (user, password) = user_and_password(v);
    let conn = connect_as(stack, &user, &password, v["dbname"].as_str().unwrap()).await;
    conn.client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_existing_clone_gets_login_membership_and_acts_as_the_user() {
    let stack = Stack::shared();
    let app = stack.create_app("clrep").await.unwrap();
    let clone = format!("{}_clone", app.role);
    // Made earlier by someone else, half set up: no LOGIN, no membership.
    stack.create_role_by_master(&clone, "Old-clone-pw-1").await.unwrap();
    superuser(stack, &format!("ALTER ROLE \"{clone}\" NOLOGIN")).await;
    let arn = alternating(stack, &app, "clrep").await;
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    driver(stack).await.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let now = current(stack, &arn).await;
    assert_eq!(now["username"], clone.as_str());
    assert!(logs_in(stack, &now).await, "LOGIN re-applied");
    assert!(is_member(stack, &clone, &app.role).await, "membership re-applied");
    assert_eq!(
        acts_as(stack, &now).await,
        app.role,
        "the clone's sessions act as the user"
    );
}

#[tokio::test]
async fn a_clone_with_rights_the_user_lacks_is_refused_and_nothing_moves() {
    let stack = Stack::shared();
    let cases: [(&str, &str); 4] = [
        ("ALTER ROLE \"{clone}\" SUPERUSER", "is a superuser"),
        ("ALTER ROLE \"{clone}\" CREATEDB", "has CREATEDB"),
        (
            "GRANT pg_read_all_data TO \"{clone}\"",
            "is a member of pg_read_all_data",
        ),
        (
            "CREATE TABLE public.\"owned_by_{clone}\" (x int); ALTER TABLE public.\"owned_by_{clone}\" OWNER TO \"{clone}\"",
            "owns or holds privileges on 1 object",
        ),
    ];
    for (setup, why) in cases {
        let app = stack.create_app("clbad").await.unwrap();
        let clone = format!("{}_clone", app.role);
        stack.create_role_by_master(&clone, "Old-clone-pw-2").await.unwrap();
        superuser(stack, &format!("GRANT \"{}\" TO \"{clone}\"", app.role)).await;
        superuser(stack, &setup.replace("{clone}", &clone)).await;
        let stored = rolpassword(stack, &clone).await;
        let arn = alternating(stack, &app, "clbad").await;
        let before = current(stack, &arn).await;
        let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
        let err = driver(stack)
            .await
            .rotate(&arn, &InProcess(&rotator))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("setSecret") && err.contains(&format!("refusing to rotate to {clone}")) && err.contains(why),
            "{why}: {err}"
        );
        assert_eq!(current(stack, &arn).await, before, "{why}: AWSCURRENT did not move");
        assert_eq!(
            rolpassword(stack, &clone).await,
            stored,
            "{why}: the clone was not changed"
        );
    }
}

#[tokio::test]
async fn objects_created_by_either_login_belong_to_the_user_across_20_alternations() {
    let stack = Stack::shared();
    let app = stack.create_app("clown").await.unwrap();
    let arn = alternating(stack, &app, "clown").await;
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let driver = driver(stack).await;
    for round in 0..20 {
        driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(stack, &arn).await;
        let (user, password) = user_and_password(&now);
        let conn = connect_as(stack, &user, &password, &app.dbname).await;
        conn.client
            .batch_execute(&format!(
                "CREATE TABLE t_{round} (x int); INSERT INTO t_{round} VALUES ({round})"
            ))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {user} creates a table: {e}"));
    }
    let owners: Vec<String> = stack
        .postgres
        .admin_on(&app.dbname)
        .await
        .unwrap()
        .query(
            "SELECT DISTINCT relowner::regrole::text FROM pg_class WHERE relname ~ '^t_[0-9]+$'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![app.role.clone()]);
    // Both logins (AWSCURRENT and AWSPREVIOUS are the two users) use every table.
    for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
        let v = version(stack, &arn, stage).await.unwrap();
        let (user, password) = user_and_password(&v);
        let conn = connect_as(stack, &user, &password, &app.dbname).await;
        for round in 0..20 {
            conn.client
                .batch_execute(&format!(
                    "INSERT INTO t_{round} VALUES (100); UPDATE t_{round} SET x = x + 1; SELECT count(*) FROM t_{round}"
                ))
                .await
                .unwrap_or_else(|e| panic!("{user} uses t_{round}: {e}"));
        }
    }
}

#[tokio::test]
async fn a_clone_created_concurrently_converges() {
    let stack = Stack::shared();
    let app = stack.create_app("clrace").await.unwrap();
    let clone = format!("{}_clone", app.role);
    let arn = alternating(stack, &app, "clrace").await;
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let driver = driver(stack).await;
    let token = driver.begin(&arn).await.unwrap();
    driver
        .run_steps(&arn, &token, &[Step::Create], &InProcess(&rotator))
        .await
        .unwrap();
    // Another invocation is creating the clone: its transaction is open when ours gets to CREATE
    // ROLE, which then waits on pg_authid's unique index and fails 23505 when the other commits.
    let master = stack.master().await.unwrap();
    let other = stack.postgres.connect_as(&master.username, "postgres").await.unwrap();
    devstack::evidence::record_secret("Racing-clone-pw-1");
    let literal = stack
        .postgres
        .password_literal(&clone, "Racing-clone-pw-1")
        .await
        .unwrap();
    other
        .batch_execute(&format!(
            "BEGIN; CREATE ROLE \"{clone}\" LOGIN PASSWORD {literal}; GRANT \"{}\" TO \"{clone}\"",
            app.role
        ))
        .await
        .unwrap();
    let runner = InProcess(&rotator);
    let set = driver.run_steps(&arn, &token, &[Step::Set], &runner);
    let commit_when_blocked = async {
        let admin = stack.postgres.admin().await.unwrap();
        let started = Instant::now();
        loop {
            let waiting: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'secretsmanager-rotation' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "setSecret never waited on the other CREATE ROLE"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        other.batch_execute("COMMIT").await.unwrap();
    };
    let (set, ()) = tokio::join!(set, commit_when_blocked);
    set.unwrap_or_else(|e| panic!("setSecret converges on the clone the other made: {e}"));
    driver.resume(&arn, &token, &InProcess(&rotator)).await.unwrap();
    let now = current(stack, &arn).await;
    assert_eq!(now["username"], clone.as_str());
    assert!(logs_in(stack, &now).await);
    assert_eq!(acts_as(stack, &now).await, app.role);
}

#[tokio::test]
async fn a_master_without_admin_option_is_told_which_grant_it_needs() {
    let stack = Stack::shared();
    let master = stack.master().await.unwrap().clone();
    // Postgres 16+ lets CREATEROLE act only on roles it holds ADMIN OPTION on; a superuser master
    // (or Postgres 15) may act on any role.
    let restricted = master.kind == MasterKind::RdsLike && stack.postgres.major_version() >= 16;
    // A role someone else (the superuser) created: GRANT of it to the clone needs ADMIN OPTION on it.
    let role = format!("noadmin_{}", &devstack::random_token()[..10]);
    let password = format!("Pw-{}", devstack::random_token());
    stack.postgres.create_role(&role, &password).await.unwrap();
    let dbname = format!("{role}_db");
    stack.postgres.create_database(&dbname, &role).await.unwrap();
    let app = AppDatabase {
        role: role.clone(),
        password,
        dbname,
    };
    let arn = alternating(stack, &app, "noadmin").await;
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let driver = driver(stack).await;
    let result = driver.rotate(&arn, &InProcess(&rotator)).await;
    if !restricted {
        result.unwrap();
        return;
    }
    let err = result.unwrap_err().to_string();
    for needle in [
        format!(
            "{} is not allowed to create or change the password of role {role}_clone",
            master.username
        ),
        format!("SQLSTATE 42501: permission denied to grant role \"{role}\""),
        format!("DETAIL: Only roles with the ADMIN option on role \"{role}\" may grant this role."),
        "ADMIN OPTION".to_owned(),
        format!("GRANT \"{role}\" TO \"{}\" WITH ADMIN OPTION", master.username),
    ] {
        assert!(err.contains(&needle), "{needle} missing from {err}");
    }
    assert_eq!(
        rolpassword(stack, &format!("{role}_clone")).await,
        None,
        "nothing was created"
    );
    // What the message says to do, then the same rotation goes through.
    superuser(
        stack,
        &format!("GRANT \"{role}\" TO \"{}\" WITH ADMIN OPTION", master.username),
    )
    .await;
    let token = version_id(stack, &arn, "AWSPENDING").await;
    driver.resume(&arn, &token, &InProcess(&rotator)).await.unwrap();
    assert!(logs_in(stack, &current(stack, &arn).await).await);
}

#[tokio::test]
async fn a_master_that_may_not_alter_an_existing_clone_is_told_which_grant_it_needs() {
    let stack = Stack::shared();
    let master = stack.master().await.unwrap().clone();
    let restricted = master.kind == MasterKind::RdsLike && stack.postgres.major_version() >= 16;
    let app = stack.create_app("noadm2").await.unwrap();
    let clone = format!("{}_clone", app.role);
    // The clone was made by the superuser (restored from a dump, say): the master holds no ADMIN
    // OPTION on it.
    stack.postgres.create_role(&clone, "Old-clone-pw-3").await.unwrap();
    superuser(stack, &format!("GRANT \"{}\" TO \"{clone}\"", app.role)).await;
    let arn = alternating(stack, &app, "noadm2").await;
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let result = driver(stack).await.rotate(&arn, &InProcess(&rotator)).await;
    if !restricted {
        result.unwrap();
        return;
    }
    let err = result.unwrap_err().to_string();
    for needle in [
        "SQLSTATE 42501: permission denied to alter role".to_owned(),
        format!(
            "DETAIL: Only roles with the CREATEROLE attribute and the ADMIN option on role \"{clone}\" may alter this role."
        ),
        format!("GRANT \"{clone}\" TO \"{}\" WITH ADMIN OPTION", master.username),
    ] {
        assert!(err.contains(&needle), "{needle} missing from {err}");
    }
}
