//! The steps against the in-memory Secrets Manager model and a fake database: one test per case
//! of rotation-anchors.md §d that does not need a real server.

use super::*;
use crate::{
    Rotator, StepError,
    config::Vars,
    event::Step,
    model::{SecretsModel, op},
    password::PasswordPolicy,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex as StdMutex},
};

const HOST: &str = "db.internal";
const PORT: u16 = 5432;
const NAME: &str = "app/db";
const MASTER: &str = "app/master";

// ---------------------------------------------------------------------------------------------
// A fake Postgres: roles with plaintext passwords, and a record of every connect and change.

#[derive(Debug, Clone, Default)]
struct Role {
    password: String,
    member_of: Vec<String>,
    superuser: bool,
}

#[derive(Debug, Default)]
struct DbState {
    roles: HashMap<String, Role>,
    /// (user, host:port) of every login attempt.
    connects: Vec<(String, String)>,
    /// "ALTER <role>" / "CREATE <role>" in order.
    changes: Vec<String>,
    probes: Vec<String>,
    unreachable: bool,
    hang: bool,
    /// Like RDS's rds.restrict_password_commands: only privileged roles change passwords.
    restrict_password_commands: bool,
}

#[derive(Debug, Clone, Default)]
struct FakeDb(Arc<StdMutex<DbState>>);

impl FakeDb {
    fn state(&self) -> std::sync::MutexGuard<'_, DbState> {
        self.0.lock().unwrap()
    }
    fn add_role(&self, name: &str, password: &str, superuser: bool) {
        self.state().roles.insert(
            name.to_owned(),
            Role {
                password: password.to_owned(),
                member_of: Vec::new(),
                superuser,
            },
        );
    }
    fn password(&self, role: &str) -> Option<String> {
        self.state().roles.get(role).map(|r| r.password.clone())
    }
    fn logs_in(&self, role: &str, password: &str) -> bool {
        self.password(role).as_deref() == Some(password)
    }
    fn connects(&self) -> Vec<(String, String)> {
        self.state().connects.clone()
    }
    fn changes(&self) -> Vec<String> {
        self.state().changes.clone()
    }
}

fn connect_error(creds: &Credentials, kind: ConnectErrorKind, sqlstate: Option<&str>, detail: &str) -> ConnectError {
    ConnectError {
        kind,
        user: creds.user.clone(),
        host: creds.host.clone(),
        port: creds.port,
        source: SourceKind::SecretsManager,
        sqlstate: sqlstate.map(str::to_owned),
        detail: detail.to_owned(),
    }
}

struct FakeSession {
    db: FakeDb,
    user: String,
}

impl Database for FakeDb {
    type Session = FakeSession;

    async fn connect(&self, creds: &Credentials, timeout: Duration) -> Result<FakeSession, ConnectError> {
        let (unreachable, hang) = {
            let mut s = self.state();
            s.connects
                .push((creds.user.clone(), format!("{}:{}", creds.host, creds.port)));
            (s.unreachable, s.hang)
        };
        if hang {
            tokio::time::sleep(timeout).await;
            return Err(connect_error(
                creds,
                ConnectErrorKind::Timeout,
                None,
                "no answer within the timeout",
            ));
        }
        if unreachable || creds.host != HOST || creds.port != PORT {
            return Err(connect_error(
                creds,
                ConnectErrorKind::Unreachable,
                None,
                "Connection refused",
            ));
        }
        let s = self.state();
        match s.roles.get(&creds.user) {
            Some(r) if r.password == creds.password.expose_secret() => Ok(FakeSession {
                db: self.clone(),
                user: creds.user.clone(),
            }),
            _ => Err(connect_error(
                creds,
                ConnectErrorKind::Authentication,
                Some("28P01"),
                &format!(
                    "FATAL 28P01: password authentication failed for user \"{}\"",
                    creds.user
                ),
            )),
        }
    }
}

impl Session for FakeSession {
    async fn set_password(&mut self, role: &str, password: &SecretString) -> Result<(), DbError> {
        let mut s = self.db.state();
        let superuser = s.roles.get(&self.user).is_some_and(|r| r.superuser);
        if (s.restrict_password_commands || role != self.user) && !superuser {
            return Err(DbError::PermissionDenied("permission denied to alter role".into()));
        }
        let r = s
            .roles
            .get_mut(role)
            .ok_or_else(|| DbError::Failed("role does not exist".into()))?;
        r.password = password.expose_secret().to_owned();
        s.changes.push(format!("ALTER {role}"));
        Ok(())
    }

    async fn create_or_set_password(
        &mut self,
        role: &str,
        member_of: &str,
        password: &SecretString,
    ) -> Result<RoleChange, DbError> {
        let superuser = self.db.state().roles.get(&self.user).is_some_and(|r| r.superuser);
        if !superuser {
            return Err(DbError::PermissionDenied("permission denied to create role".into()));
        }
        if self.db.state().roles.contains_key(role) {
            self.set_password(role, password).await?;
            return Ok(RoleChange::PasswordSet);
        }
        let mut s = self.db.state();
        s.roles.insert(
            role.to_owned(),
            Role {
                password: password.expose_secret().to_owned(),
                member_of: vec![member_of.to_owned()],
                superuser: false,
            },
        );
        s.changes.push(format!("CREATE {role}"));
        Ok(RoleChange::Created)
    }

    async fn probe(&mut self, query: &str) -> Result<(), DbError> {
        self.db.state().probes.push(query.to_owned());
        if query.contains("missing_table") {
            return Err(DbError::Failed(
                "ERROR 42P01: relation \"missing_table\" does not exist".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
struct FakeRds(Arc<StdMutex<Vec<RdsTarget>>>);

impl RdsEndpoints for FakeRds {
    async fn endpoint(&self, target: &RdsTarget) -> Result<(String, u16), AwsError> {
        self.0.lock().unwrap().push(target.clone());
        Ok((HOST.to_owned(), PORT))
    }
}

// ---------------------------------------------------------------------------------------------
// The harness: a secret `app/db` for role `app`, a master secret for role `admin`.

struct H {
    rotator: Rotator<SecretsModel, FakeDb, FakeRds>,
    db: FakeDb,
    rds: FakeRds,
    arn: String,
    master_arn: String,
}

fn secret_json(user: &str, password: &str) -> Value {
    json!({
        "engine": "postgres",
        "host": HOST,
        "port": PORT,
        "username": user,
        "password": password,
        "dbname": "appdb",
        "team": "payments",
    })
}

fn harness_with(strategy: Strategy, extra: &[(&str, &str)]) -> H {
    let mut vars: Vars = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    vars.insert("ROTATION_STRATEGY".into(), strategy.as_str().into());
    let config = Config::from_vars(&vars).unwrap();
    let model = SecretsModel::new();
    let db = FakeDb::default();
    db.add_role("app", "pw-0", false);
    db.add_role("admin", "admin-pw", true);
    let master_arn = model.create_secret(
        MASTER,
        &json!({"engine":"postgres","host":HOST,"port":PORT,"username":"admin","password":"admin-pw"}).to_string(),
    );
    let mut current = secret_json("app", "pw-0");
    if strategy == Strategy::AlternatingUsers {
        current["masterarn"] = json!(master_arn);
    }
    let arn = model.create_secret(NAME, &current.to_string());
    let rds = FakeRds::default();
    H {
        rotator: Rotator::new(config, model, db.clone(), rds.clone()),
        db,
        rds,
        arn,
        master_arn,
    }
}

fn harness(strategy: Strategy) -> H {
    harness_with(strategy, &[])
}

impl H {
    fn model(&self) -> &SecretsModel {
        self.rotator.secrets()
    }
    fn begin(&self) -> String {
        self.model().rotate_secret(&self.arn).unwrap()
    }
    async fn step(&self, token: &str, step: Step) -> Result<Outcome, StepError> {
        self.rotator
            .handle(&RotationEvent::new(&self.arn, token, step), None)
            .await
    }
    async fn steps(&self, token: &str, steps: &[Step]) -> Result<(), StepError> {
        for s in steps {
            self.step(token, *s).await?;
        }
        Ok(())
    }
    async fn rotate(&self) -> String {
        let token = self.begin();
        self.steps(&token, &Step::ALL).await.unwrap();
        self.model().end_rotation(&self.arn);
        token
    }
    fn json(&self, stage: &str) -> Value {
        serde_json::from_str(&self.model().value(&self.arn, stage).unwrap()).unwrap()
    }
    fn pending(&self) -> Value {
        self.json(AWSPENDING)
    }
    fn pending_password(&self) -> String {
        self.pending()["password"].as_str().unwrap().to_owned()
    }
}

fn message(r: Result<Outcome, StepError>) -> String {
    r.unwrap_err().to_string()
}

// ---------------------------------------------------------------------------------------------
// Event and stage validation (§d 1–7).

#[tokio::test]
async fn unknown_step_is_refused_before_any_call() {
    let h = harness(Strategy::SingleUser);
    let err = h
        .rotator
        .handle_json(&json!({"SecretId": h.arn, "ClientRequestToken": "t", "Step": "rotate"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown rotation step \"rotate\""), "{err}");
    assert_eq!(h.model().calls(op::DESCRIBE), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn missing_event_keys_are_refused_before_any_call() {
    let h = harness(Strategy::SingleUser);
    for (payload, key) in [
        (json!({"ClientRequestToken": "t", "Step": "createSecret"}), "SecretId"),
        (json!({"SecretId": h.arn, "Step": "createSecret"}), "ClientRequestToken"),
        (json!({"SecretId": h.arn, "ClientRequestToken": "t"}), "Step"),
    ] {
        let err = h.rotator.handle_json(&payload).await.unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    assert_eq!(h.model().calls(op::DESCRIBE), 0);
}

#[tokio::test]
async fn rotation_disabled_is_refused_and_absent_flag_proceeds() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.model().set_rotation_enabled(&h.arn, Some(false));
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("is not enabled for rotation"), "{err}");
    assert_eq!(h.model().writes(), 0);
    h.model().set_rotation_enabled(&h.arn, None);
    assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::Created);
}

#[tokio::test]
async fn token_that_is_not_a_version_is_refused_for_every_step() {
    let h = harness(Strategy::SingleUser);
    for step in Step::ALL {
        let err = message(h.step("no-such-version", step).await);
        assert!(err.contains("has no stage for rotation"), "{step}: {err}");
    }
    assert_eq!(h.model().writes(), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn token_without_awspending_is_refused_for_every_step() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "old",
        Some(&secret_json("app", "older").to_string()),
        &[AWSPREVIOUS],
    );
    for step in Step::ALL {
        let err = message(h.step("old", step).await);
        assert!(err.contains("not set as AWSPENDING"), "{step}: {err}");
    }
    assert_eq!(h.model().writes(), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn foreign_pending_version_is_refused() {
    let h = harness(Strategy::SingleUser);
    let theirs = h.begin();
    h.step(&theirs, Step::Create).await.unwrap();
    let value_before = h.pending();
    h.model().put_version(
        &h.arn,
        "ours",
        Some(&secret_json("app", "older").to_string()),
        &[AWSPREVIOUS],
    );
    for (token, step) in [("ours", Step::Create), ("ours", Step::Set), ("unknown", Step::Create)] {
        let err = message(h.step(token, step).await);
        assert!(
            err.contains(&format!("AWSPENDING is on version {theirs}")) && err.contains("another rotation"),
            "{err}"
        );
    }
    assert_eq!(h.pending(), value_before, "their pending value is untouched");
    assert_eq!(h.model().calls(op::PUT), 1);
}

#[tokio::test]
async fn token_already_current_is_a_no_op_for_every_step() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    // AWSPENDING and AWSCURRENT on the same version, as finishSecret leaves them.
    assert_eq!(
        h.model().stages(&h.arn)[&token],
        vec![AWSCURRENT.to_owned(), AWSPENDING.to_owned()]
    );
    let (writes, connects, gets) = (h.model().writes(), h.db.connects().len(), h.model().calls(op::GET));
    for step in Step::ALL {
        assert_eq!(h.step(&token, step).await.unwrap(), Outcome::AlreadyCurrent, "{step}");
    }
    h.model().end_rotation(&h.arn);
    for step in Step::ALL {
        assert_eq!(h.step(&token, step).await.unwrap(), Outcome::AlreadyCurrent, "{step}");
    }
    assert_eq!(h.model().writes(), writes);
    assert_eq!(h.model().calls(op::GET), gets);
    assert_eq!(h.db.connects().len(), connects);
}

// ---------------------------------------------------------------------------------------------
// createSecret (§d 8–14).

#[tokio::test]
async fn create_copies_current_and_changes_only_the_password() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::Created);
    let mut pending = h.pending();
    let password = pending["password"].as_str().unwrap().to_owned();
    assert_ne!(password, "pw-0");
    assert_eq!(password.len(), 32);
    pending["password"] = json!("pw-0");
    assert_eq!(
        pending,
        secret_json("app", "pw-0"),
        "every other key, unknown ones too, is kept"
    );
    assert_eq!(
        h.model().version_with(&h.arn, AWSPENDING).as_deref(),
        Some(token.as_str())
    );
    assert!(h.db.connects().is_empty(), "createSecret never touches the database");
}

#[tokio::test]
async fn create_switches_to_the_alternate_user_in_alternating_mode() {
    let h = harness(Strategy::AlternatingUsers);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let pending = h.pending();
    assert_eq!(pending["username"], "app_clone");
    assert_eq!(pending["masterarn"], json!(h.master_arn));
    assert_eq!(pending["team"], "payments");
}

#[tokio::test]
async fn create_is_idempotent_for_the_same_token() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let first = h.model().version_value(&h.arn, &token).unwrap();
    for _ in 0..3 {
        assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::PendingExists);
    }
    assert_eq!(h.model().version_value(&h.arn, &token).unwrap(), first, "byte for byte");
    assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 1, "no new password");
    assert_eq!(h.model().calls(op::PUT), 1);
}

#[tokio::test]
async fn transient_error_on_pending_lookup_does_not_generate() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    for kind in [
        AwsErrorKind::Throttled,
        AwsErrorKind::ServerError,
        AwsErrorKind::AccessDenied,
    ] {
        h.model().fail_next_for_stage(op::GET, AWSPENDING, kind);
        let err = message(h.step(&token, Step::Create).await);
        assert!(err.contains("cannot read AWSPENDING"), "{err}");
    }
    assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 0);
    assert_eq!(h.model().calls(op::PUT), 0);
    assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::Created);
}

#[tokio::test]
async fn invalid_current_secret_is_a_clear_error_naming_the_key() {
    let cases: [(Value, &str); 5] = [
        (
            json!({"host": HOST, "password": "hunter2-leak", "engine": "postgres"}),
            "\"username\"",
        ),
        (
            json!({"host": HOST, "username": "app", "engine": "postgres"}),
            "\"password\"",
        ),
        (
            json!({"host": HOST, "username": "app", "password": "hunter2-leak"}),
            "\"engine\"",
        ),
        (
            json!({"host": HOST, "username": "app", "password": "hunter2-leak", "engine": "mysql"}),
            "mysql",
        ),
        (json!("hunter2-leak"), "JSON object"),
    ];
    for (current, needle) in cases {
        let h = harness(Strategy::SingleUser);
        h.model()
            .put_version(&h.arn, "bad", Some(&current.to_string()), &[AWSCURRENT]);
        let token = h.begin();
        let err = message(h.step(&token, Step::Create).await);
        assert!(err.contains(needle) && err.contains(&h.arn), "{err}");
        assert!(!err.contains("hunter2"), "value leaked: {err}");
        assert_eq!(h.model().calls(op::PUT), 0);
    }
    let h = harness(Strategy::SingleUser);
    h.model()
        .put_version(&h.arn, "bad", Some("{\"username\": \"hunter2-leak"), &[AWSCURRENT]);
    let token = h.begin();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("not valid JSON") && !err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn password_policy_knobs_reach_get_random_password() {
    let h = harness_with(
        Strategy::SingleUser,
        &[
            ("PASSWORD_LENGTH", "20"),
            ("EXCLUDE_CHARACTERS", "abc"),
            ("EXCLUDE_PUNCTUATION", "true"),
            ("REQUIRE_EACH_INCLUDED_TYPE", "no"),
        ],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let expected = PasswordPolicy {
        length: 20,
        exclude_characters: "abc".into(),
        exclude_punctuation: true,
        require_each_included_type: false,
        ..PasswordPolicy::default()
    };
    assert_eq!(h.model().password_policies(), vec![expected]);
    let password = h.pending_password();
    assert_eq!(password.len(), 20);
    assert!(
        password
            .chars()
            .all(|c| c.is_ascii_alphanumeric() && !"abc".contains(c)),
        "{password}"
    );
}

#[tokio::test]
async fn generated_passwords_with_any_character_are_stored_verbatim() {
    let h = harness(Strategy::SingleUser);
    let tricky = "q'u\\o\"te $$ ;-- %s é ☃ \u{1F511}";
    h.model().script_passwords([tricky]);
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    assert_eq!(h.json(AWSCURRENT)["password"], tricky);
    assert!(h.db.logs_in("app", tricky));
}

#[tokio::test]
async fn create_refuses_a_clone_name_over_63_bytes() {
    let h = harness(Strategy::AlternatingUsers);
    let long = "é".repeat(29);
    let mut current = secret_json(&long, "pw-0");
    current["masterarn"] = json!(h.master_arn);
    h.model()
        .put_version(&h.arn, "long", Some(&current.to_string()), &[AWSCURRENT]);
    let token = h.begin();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("64 bytes") && err.contains("63"), "{err}");
    assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 0);
    assert_eq!(h.model().calls(op::PUT), 0);
}

// ---------------------------------------------------------------------------------------------
// setSecret (§d 15–26).

#[tokio::test]
async fn set_is_a_no_op_when_pending_already_logs_in() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.add_role("app", &h.pending_password(), false);
    assert_eq!(h.step(&token, Step::Set).await.unwrap(), Outcome::PendingAlreadyWorks);
    assert!(h.db.changes().is_empty());
    assert_eq!(h.db.connects().len(), 1, "only the pending login");
}

#[tokio::test]
async fn set_refuses_a_pending_user_other_than_the_one_it_may_change() {
    for (strategy, pending_user, expected) in [
        (Strategy::SingleUser, "admin", "app"),
        (Strategy::AlternatingUsers, "app", "app_clone"),
        (Strategy::AlternatingUsers, "admin", "app_clone"),
    ] {
        let h = harness(strategy);
        let token = h.begin();
        let mut pending = secret_json(pending_user, "new-pw");
        pending["masterarn"] = json!(h.master_arn);
        h.model()
            .put_version(&h.arn, &token, Some(&pending.to_string()), &[AWSPENDING]);
        let err = message(h.step(&token, Step::Set).await);
        assert!(
            err.contains(&format!(
                "attempting to modify user {pending_user} other than {expected}"
            )),
            "{err}"
        );
        assert!(h.db.connects().is_empty(), "no login before the check");
        assert!(h.db.changes().is_empty());
    }
}

#[tokio::test]
async fn set_refuses_a_pending_host_other_than_current_without_connecting_to_it() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    let mut pending = secret_json("app", "new-pw");
    pending["host"] = json!("attacker.example");
    h.model()
        .put_version(&h.arn, &token, Some(&pending.to_string()), &[AWSPENDING]);
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("host attacker.example:5432 other than current host db.internal:5432"),
        "{err}"
    );
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn set_changes_the_password_with_current() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set]).await.unwrap();
    let new = h.pending_password();
    assert!(h.db.logs_in("app", &new));
    assert!(!h.db.logs_in("app", "pw-0"));
    assert_eq!(h.db.changes(), vec!["ALTER app"]);
    let users: Vec<String> = h.db.connects().into_iter().map(|(u, _)| u).collect();
    assert_eq!(users, ["app", "app"], "pending refused, then current");
}

#[tokio::test]
async fn set_falls_back_to_previous_when_current_fails() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "prev",
        Some(&json!({"username": "app", "password": "pw-prev"}).to_string()),
        &[AWSPREVIOUS],
    );
    h.db.add_role("app", "pw-prev", false);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set]).await.unwrap();
    assert!(h.db.logs_in("app", &h.pending_password()));
    assert_eq!(h.db.connects().len(), 3, "pending, current, previous");
}

#[tokio::test]
async fn previous_naming_another_user_or_host_is_never_tried() {
    for previous in [
        json!({"username": "admin", "password": "admin-pw", "host": HOST}),
        json!({"username": "app", "password": "pw-prev", "host": "elsewhere.example"}),
    ] {
        let h = harness(Strategy::SingleUser);
        h.model()
            .put_version(&h.arn, "prev", Some(&previous.to_string()), &[AWSPREVIOUS]);
        h.db.add_role("app", "pw-prev", false);
        let token = h.begin();
        h.step(&token, Step::Create).await.unwrap();
        let err = message(h.step(&token, Step::Set).await);
        assert!(err.contains("not tried"), "{err}");
        assert_eq!(h.db.connects().len(), 2, "pending and current only");
        assert!(h.db.changes().is_empty());
    }
}

#[tokio::test]
async fn set_fails_clearly_when_nothing_logs_in() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "prev",
        Some(&json!({"username": "app", "password": "pw-prev"}).to_string()),
        &[AWSPREVIOUS],
    );
    h.db.add_role("app", "changed-by-someone", false);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(err.contains("unable to log into db.internal:5432 as app"), "{err}");
    for attempt in ["pending: ", "current: ", "previous: "] {
        assert!(err.contains(attempt), "{attempt} missing from {err}");
    }
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("pw-prev") && !err.contains(&h.pending_password()),
        "{err}"
    );
}

#[tokio::test]
async fn missing_or_malformed_previous_does_not_mask_the_real_error() {
    for (previous, why) in [
        (None, "no AWSPREVIOUS version"),
        (Some("{not json"), "AWSPREVIOUS is unusable"),
        (Some("{\"password\":\"pw\"}"), "AWSPREVIOUS is unusable"),
    ] {
        let h = harness(Strategy::SingleUser);
        if let Some(previous) = previous {
            h.model().put_version(&h.arn, "prev", Some(previous), &[AWSPREVIOUS]);
        }
        h.db.add_role("app", "changed-by-someone", false);
        let token = h.begin();
        h.step(&token, Step::Create).await.unwrap();
        let err = message(h.step(&token, Step::Set).await);
        assert!(
            err.contains("current: FATAL 28P01: password authentication failed"),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
    }
    let h = harness(Strategy::SingleUser);
    h.db.add_role("app", "changed-by-someone", false);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.model()
        .fail_next_for_stage(op::GET, AWSPREVIOUS, AwsErrorKind::Throttled);
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("current: FATAL 28P01") && err.contains("AWSPREVIOUS could not be read"),
        "{err}"
    );
}

#[tokio::test]
async fn alternating_first_rotation_creates_the_clone_then_only_changes_passwords() {
    let h = harness(Strategy::AlternatingUsers);
    let first = h.begin();
    h.step(&first, Step::Create).await.unwrap();
    assert_eq!(h.step(&first, Step::Set).await.unwrap(), Outcome::UserCreated);
    h.steps(&first, &[Step::Test, Step::Finish]).await.unwrap();
    h.model().end_rotation(&h.arn);
    assert_eq!(h.db.state().roles["app_clone"].member_of, vec!["app"]);
    assert!(h.db.logs_in("app", "pw-0"), "the original user is untouched");
    assert_eq!(h.json(AWSCURRENT)["username"], "app_clone");

    h.rotate().await;
    assert_eq!(h.json(AWSCURRENT)["username"], "app");
    h.rotate().await;
    assert_eq!(h.json(AWSCURRENT)["username"], "app_clone");
    assert_eq!(h.db.changes(), ["CREATE app_clone", "ALTER app", "ALTER app_clone"]);
    let current = h.json(AWSCURRENT);
    assert!(h.db.logs_in("app_clone", current["password"].as_str().unwrap()));
    let previous = h.json(AWSPREVIOUS);
    assert!(
        h.db.logs_in("app", previous["password"].as_str().unwrap()),
        "the previous user keeps working"
    );
}

#[tokio::test]
async fn alternating_current_login_failure_aborts_before_touching_the_master() {
    let h = harness(Strategy::AlternatingUsers);
    h.db.add_role("app", "changed-by-someone", false);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let gets = h.model().calls(op::GET);
    let err = message(h.step(&token, Step::Set).await);
    assert!(err.contains("unable to log in with the current credentials"), "{err}");
    assert_eq!(
        h.model().calls(op::GET),
        gets + 2,
        "current and pending only, never the master"
    );
    assert!(h.db.connects().iter().all(|(u, _)| u != "admin"));
    assert!(h.db.changes().is_empty());
}

#[tokio::test]
async fn alternating_without_masterarn_is_a_clear_error() {
    let h = harness(Strategy::AlternatingUsers);
    h.model().put_version(
        &h.arn,
        "nomaster",
        Some(&secret_json("app", "pw-0").to_string()),
        &[AWSCURRENT],
    );
    let token = h.begin();
    let writes = h.model().writes();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("no \"masterarn\" key"), "{err}");
    assert_eq!(h.model().writes(), writes, "refused before anything is written");
    assert_eq!(
        h.model().version_value(&h.arn, &token),
        None,
        "the placeholder stays empty"
    );
}

#[tokio::test]
async fn current_without_host_or_rds_identifier_is_refused_before_writing() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "nohost",
        Some(&json!({"engine":"postgres","username":"app","password":"pw-0"}).to_string()),
        &[AWSCURRENT],
    );
    let token = h.begin();
    let writes = h.model().writes();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("no \"host\" key"), "{err}");
    assert_eq!(h.model().writes(), writes);
}

#[tokio::test]
async fn master_on_another_host_is_refused() {
    let h = harness(Strategy::AlternatingUsers);
    h.model().put_version(
        &h.master_arn,
        "m2",
        Some(&json!({"username":"admin","password":"admin-pw","host":"other.example","port":PORT}).to_string()),
        &[AWSCURRENT],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("current database host db.internal is not the host of master secret")
            && err.contains("other.example"),
        "{err}"
    );
    assert!(h.db.connects().iter().all(|(_, host)| !host.starts_with("other")));
}

#[tokio::test]
async fn rds_managed_master_gets_its_endpoint_from_the_rds_api() {
    let h = harness(Strategy::AlternatingUsers);
    h.model().put_version(
        &h.master_arn,
        "managed",
        Some(&json!({"username":"admin","password":"admin-pw"}).to_string()),
        &[AWSCURRENT],
    );
    h.model().set_tags(
        &h.master_arn,
        &[(
            "aws:rds:primaryDBInstanceArn",
            "arn:aws:rds:us-east-1:123456789012:db:itemsdb",
        )],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    assert_eq!(h.step(&token, Step::Set).await.unwrap(), Outcome::UserCreated);
    assert_eq!(*h.rds.0.lock().unwrap(), vec![RdsTarget::Instance("itemsdb".into())]);
    assert!(h.db.connects().contains(&("admin".into(), format!("{HOST}:{PORT}"))));
}

#[tokio::test]
async fn child_secret_whose_host_comes_from_rds_tags_rotates_through_every_step() {
    let h = harness(Strategy::SingleUser);
    let mut no_host = secret_json("app", "pw-0");
    no_host.as_object_mut().unwrap().remove("host");
    h.model()
        .put_version(&h.arn, "tagged", Some(&no_host.to_string()), &[AWSCURRENT]);
    h.model().set_tags(
        &h.arn,
        &[(
            "aws:rds:primaryDBInstanceArn",
            "arn:aws:rds:us-east-1:123456789012:db:itemsdb",
        )],
    );
    let token = h.begin();
    for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
        h.step(&token, step).await.unwrap_or_else(|e| panic!("{step:?}: {e}"));
    }
    assert!(
        h.rds
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|t| *t == RdsTarget::Instance("itemsdb".into()))
    );
    assert!(
        h.db.connects()
            .iter()
            .any(|(u, host)| u == "app" && *host == format!("{HOST}:{PORT}"))
    );
    assert_eq!(
        h.model().version_with(&h.arn, AWSCURRENT).as_deref(),
        Some(token.as_str())
    );
}

#[tokio::test]
async fn permission_denied_on_alter_is_a_clear_error() {
    let h = harness(Strategy::SingleUser);
    h.db.state().restrict_password_commands = true;
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("app is not allowed to change the password of role app on db.internal:5432 (SQLSTATE 42501"),
        "{err}"
    );
    assert!(!err.contains("unable to log"), "{err}");
}

#[tokio::test]
async fn single_user_with_a_masterarn_lets_the_master_set_a_restricted_password() {
    let h = harness(Strategy::SingleUser);
    let mut current = secret_json("app", "pw-0");
    current["masterarn"] = json!(h.master_arn);
    h.model()
        .put_version(&h.arn, "with-master", Some(&current.to_string()), &[AWSCURRENT]);
    h.db.state().restrict_password_commands = true;
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    let now = h.json(AWSCURRENT);
    assert_eq!(now["username"], "app");
    assert!(h.db.logs_in("app", now["password"].as_str().unwrap()));
    let users: Vec<String> = h.db.connects().into_iter().map(|(u, _)| u).collect();
    assert_eq!(
        users,
        ["app", "app", "admin", "app"],
        "pending, current (refused ALTER), master, test"
    );
}

// ---------------------------------------------------------------------------------------------
// testSecret (§d 27–29).

#[tokio::test]
async fn test_passes_with_the_pending_password_and_fails_without_side_effects() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let writes = h.model().writes();
    let err = message(h.step(&token, Step::Test).await);
    assert!(err.contains("unable to log in with the pending credentials"), "{err}");
    assert_eq!(h.model().writes(), writes);
    assert!(h.db.changes().is_empty());
    h.step(&token, Step::Set).await.unwrap();
    assert_eq!(h.step(&token, Step::Test).await.unwrap(), Outcome::Tested);
    assert_eq!(h.db.state().probes, vec!["SELECT 1"]);
}

#[tokio::test]
async fn test_passes_when_pending_equals_current() {
    // RotateImmediately=false: the service tests the configuration with a pending version that
    // carries the current value.
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.model().put_version(
        &h.arn,
        &token,
        Some(&secret_json("app", "pw-0").to_string()),
        &[AWSPENDING],
    );
    let writes = h.model().writes();
    assert_eq!(h.step(&token, Step::Test).await.unwrap(), Outcome::Tested);
    assert_eq!(h.model().writes(), writes);
    assert!(h.db.changes().is_empty());
    assert!(h.db.logs_in("app", "pw-0"));
}

#[tokio::test]
async fn test_query_is_configurable_and_its_failure_is_reported() {
    let h = harness_with(Strategy::SingleUser, &[("TEST_QUERY", "SELECT * FROM missing_table")]);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set]).await.unwrap();
    let err = message(h.step(&token, Step::Test).await);
    assert!(
        err.contains("TEST_QUERY on db.internal:5432 as app failed") && err.contains("42P01"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// finishSecret (§d 30–32).

#[tokio::test]
async fn finish_moves_current_and_marks_previous() {
    let h = harness(Strategy::SingleUser);
    let old = h.model().version_with(&h.arn, AWSCURRENT).unwrap();
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set, Step::Test]).await.unwrap();
    assert_eq!(h.step(&token, Step::Finish).await.unwrap(), Outcome::Finished);
    let stages = h.model().stages(&h.arn);
    assert_eq!(stages[&token], vec![AWSCURRENT, AWSPENDING]);
    assert_eq!(stages[&old], vec![AWSPREVIOUS]);
    assert_eq!(h.step(&token, Step::Finish).await.unwrap(), Outcome::AlreadyCurrent);
    assert_eq!(h.model().calls(op::UPDATE_STAGE), 1);
}

#[tokio::test]
async fn finish_leaves_pending_only_on_the_current_version_and_the_next_rotation_starts_cleanly() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    assert_eq!(h.model().version_with(&h.arn, AWSPENDING), Some(token.clone()));
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token));
    // Without the service's cleanup, too: AWS accepts AWSPENDING on the current version.
    let next = h.begin();
    h.steps(&next, &Step::ALL).await.unwrap();
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(next));
}

#[tokio::test]
async fn concurrent_finish_is_ok() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set, Step::Test]).await.unwrap();
    let event = RotationEvent::new(&h.arn, &token, Step::Finish);
    let failpoints = Failpoints::default();
    let cx = Ctx {
        config: h.rotator.config(),
        secrets: h.model(),
        db: &h.db,
        rds: &h.rds,
        failpoints: &failpoints,
        event: &event,
        deadline: Instant::now() + Duration::from_secs(5),
        progress: Mutex::new(""),
    };
    let stale = check_stages(&cx).await.unwrap().unwrap();
    // Another invocation finishes between our DescribeSecret and our UpdateSecretVersionStage.
    assert_eq!(h.step(&token, Step::Finish).await.unwrap(), Outcome::Finished);
    assert_eq!(finish_secret(&cx, &stale).await.unwrap(), Outcome::FinishedConcurrently);
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token));
}

// ---------------------------------------------------------------------------------------------
// Time bounds, logs, whole rotations (§d 35–37).

#[tokio::test]
async fn unreachable_database_fails_fast_with_a_clear_error() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.state().unreachable = true;
    for step in [Step::Set, Step::Test] {
        let before = h.db.connects().len();
        let err = message(h.step(&token, step).await);
        assert!(
            err.contains("cannot connect to Postgres at db.internal:5432") && err.contains("refused"),
            "{err}"
        );
        assert_eq!(
            h.db.connects().len(),
            before + 1,
            "{step}: one attempt, not one per password"
        );
    }
}

#[tokio::test]
async fn hanging_database_is_bounded_by_the_connect_timeout_and_the_step_budget() {
    let h = harness_with(
        Strategy::SingleUser,
        &[("DB_CONNECT_TIMEOUT_MS", "5000"), ("ROTATION_STEP_TIMEOUT_MS", "1000")],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.state().hang = true;
    for step in [Step::Set, Step::Test] {
        let started = Instant::now();
        let err = message(h.step(&token, step).await);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{step} took {took:?}");
        assert!(err.contains("no answer") || err.contains("within 1000 ms"), "{err}");
    }
    let h = harness_with(Strategy::SingleUser, &[("DB_CONNECT_TIMEOUT_MS", "300")]);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.state().hang = true;
    let started = Instant::now();
    message(h.step(&token, Step::Set).await);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "one timeout, not one per password"
    );
    assert_eq!(h.db.connects().len(), 1);
}

#[tokio::test]
async fn rotation_token_is_forwarded_to_put_secret_value_and_no_secret_is_logged() {
    // With a single scoped dispatcher registered, tracing-core computes a callsite's interest
    // from whichever thread hits it first, so a test thread without a subscriber can switch our
    // callsites off for good. A second registered dispatcher makes it ask every dispatcher.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    let logs = devstack::capture::LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    for step in Step::ALL {
        let payload = json!({
            "SecretId": h.arn, "ClientRequestToken": token, "Step": step.as_str(),
            "RotationToken": "rt-0123-hunter2",
        });
        h.rotator.handle_json(&payload).await.unwrap();
    }
    h.db.state().unreachable = true;
    let next = h.begin();
    h.step(&next, Step::Create).await.unwrap();
    h.step(&next, Step::Set).await.unwrap_err();

    assert_eq!(
        h.model().rotation_tokens(),
        vec![Some("rt-0123-hunter2".to_owned()), None]
    );
    let text = logs.text();
    let current = h.json(AWSCURRENT);
    let pending = h.pending();
    for secret in [
        "rt-0123-hunter2",
        "pw-0",
        current["password"].as_str().unwrap(),
        pending["password"].as_str().unwrap(),
        "\"team\"",
    ] {
        assert!(!text.contains(secret), "{secret} reached the logs:\n{text}");
    }
    for fact in [
        h.arn.as_str(),
        token.as_str(),
        "setSecret",
        "\"user\":\"app\"",
        "db.internal:5432",
        "duration_ms",
    ] {
        assert!(text.contains(fact), "{fact} missing from the logs:\n{text}");
    }
}

#[tokio::test]
async fn full_rotation_twice_in_a_row_single_user() {
    let h = harness(Strategy::SingleUser);
    let mut passwords = vec!["pw-0".to_owned()];
    for _ in 0..2 {
        let before = h.model().version_with(&h.arn, AWSCURRENT).unwrap();
        let token = h.rotate().await;
        let stages = h.model().stages(&h.arn);
        assert_eq!(stages[&token], vec![AWSCURRENT]);
        assert_eq!(stages[&before], vec![AWSPREVIOUS]);
        let password = h.json(AWSCURRENT)["password"].as_str().unwrap().to_owned();
        assert!(h.db.logs_in("app", &password));
        assert!(!passwords.contains(&password));
        passwords.push(password);
    }
    assert!(!h.db.logs_in("app", "pw-0"));
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn stopped_at_every_failpoint_then_retried_with_the_same_token_converges() {
    use crate::failpoint::Failpoint;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for point in Failpoint::ALL {
            let h = harness(strategy);
            let token = h.begin();
            h.rotator.failpoints().arm(Some(point));
            if strategy == Strategy::SingleUser && point == Failpoint::AfterCreateClone {
                // Single user creates no clone: the point is never passed.
                h.steps(&token, &Step::ALL).await.unwrap();
                continue;
            }
            let err = h.steps(&token, &Step::ALL).await.unwrap_err().to_string();
            assert!(err.contains(point.name()), "{strategy} {point:?}: {err}");
            let user = h.json(AWSCURRENT)["username"].as_str().unwrap().to_owned();
            let current = h.json(AWSCURRENT)["password"].as_str().unwrap().to_owned();
            let pending = h.model().value(&h.arn, AWSPENDING);
            let pending = pending.map(|p| serde_json::from_str::<Value>(&p).unwrap());
            let pending_works = pending.as_ref().is_some_and(|p| {
                h.db.logs_in(p["username"].as_str().unwrap(), p["password"].as_str().unwrap())
            });
            assert!(h.db.logs_in(&user, &current) || pending_works, "{strategy} {point:?}");
            h.steps(&token, &Step::ALL).await.unwrap();
            h.model().end_rotation(&h.arn);
            let now = h.json(AWSCURRENT);
            assert!(h.db.logs_in(now["username"].as_str().unwrap(), now["password"].as_str().unwrap()));
            assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), Some(token));
            assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 1, "{strategy} {point:?}");
        }
    }
}
