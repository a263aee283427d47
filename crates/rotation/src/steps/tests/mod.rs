//! The steps against the in-memory Secrets Manager model and a fake database: one test per case
//! of rotation-anchors.md §d that does not need a real server.

mod create;
mod custom_resource;
mod finish;
mod set;
mod stages;
mod test;
mod whole;

use super::*;
use crate::{
    Rotator, StepError,
    db::{AppRoleChange, RoleChange, ServerMessage, Session},
    strategy::Strategy,
};
use db_credentials::{
    config::Vars,
    rds::RdsTarget,
    secrets_manager::{
        AWSCURRENT, AWSPENDING, AWSPREVIOUS, PasswordPolicy,
        model::{SecretsModel, op},
    },
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
        sqlstate: sqlstate.map(tokio_postgres::error::SqlState::from_code),
        detail: detail.to_owned(),
    }
}

struct FakeSession {
    db: FakeDb,
    user: String,
}

impl Logins for FakeDb {
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

fn denied(on_role: &str, message: &str) -> StatementError {
    StatementError::PermissionDenied {
        on_role: on_role.to_owned(),
        server: ServerMessage {
            message: message.to_owned(),
            detail: None,
            hint: None,
        },
    }
}

impl Session for FakeSession {
    async fn rehearse_password_change(
        &mut self,
        role: &str,
        clone_of: Option<&str>,
        _password: &SecretString,
    ) -> Result<(), StatementError> {
        let s = self.db.state();
        let superuser = s.roles.get(&self.user).is_some_and(|r| r.superuser);
        let allowed = superuser || (clone_of.is_none() && role == self.user && !s.restrict_password_commands);
        if allowed {
            Ok(())
        } else {
            Err(denied(role, "permission denied to alter role"))
        }
    }

    async fn server_facts(&mut self) -> Result<crate::sessions::ServerFacts, StatementError> {
        Ok(crate::sessions::ServerFacts {
            version: "15.0 (fake)".into(),
            password_encryption: "scram-sha-256 (4096 iterations)".into(),
            log_statement: "none".into(),
            superuser: self.db.state().roles.get(&self.user).is_some_and(|r| r.superuser),
        })
    }

    async fn end_sessions(
        &mut self,
        _role: &str,
        _began_before: Option<std::time::SystemTime>,
    ) -> Result<Vec<crate::sessions::EndedSession>, StatementError> {
        Ok(Vec::new())
    }

    async fn set_password(&mut self, role: &str, password: &SecretString) -> Result<(), StatementError> {
        let mut s = self.db.state();
        let superuser = s.roles.get(&self.user).is_some_and(|r| r.superuser);
        if (s.restrict_password_commands || role != self.user) && !superuser {
            return Err(denied(role, "permission denied to alter role"));
        }
        let r = s
            .roles
            .get_mut(role)
            .ok_or_else(|| StatementError::Failed("role does not exist".into()))?;
        r.password = password.expose_secret().to_owned();
        s.changes.push(format!("ALTER {role}"));
        Ok(())
    }

    async fn ensure_clone(
        &mut self,
        clone: &str,
        base: &str,
        password: &SecretString,
    ) -> Result<RoleChange, StatementError> {
        let superuser = self.db.state().roles.get(&self.user).is_some_and(|r| r.superuser);
        if !superuser {
            return Err(denied(clone, "permission denied to create role"));
        }
        let existing = self.db.state().roles.get(clone).cloned();
        if let Some(role) = existing {
            if role.superuser {
                return Err(StatementError::Unsafe {
                    reasons: vec!["is a superuser".into()],
                });
            }
            self.set_password(clone, password).await?;
            let mut repaired = Vec::new();
            let mut s = self.db.state();
            let member_of = &mut s.roles.get_mut(clone).unwrap().member_of;
            if !member_of.iter().any(|m| m == base) {
                member_of.push(base.to_owned());
                repaired.push("membership");
            }
            return Ok(RoleChange::PasswordSet { repaired });
        }
        let mut s = self.db.state();
        s.roles.insert(
            clone.to_owned(),
            Role {
                password: password.expose_secret().to_owned(),
                member_of: vec![base.to_owned()],
                superuser: false,
            },
        );
        s.changes.push(format!("CREATE {clone}"));
        Ok(RoleChange::Created)
    }

    async fn ensure_app_role(
        &mut self,
        role: &str,
        password: Option<&SecretString>,
        reset_password: bool,
    ) -> Result<AppRoleChange, StatementError> {
        let superuser = self.db.state().roles.get(&self.user).is_some_and(|r| r.superuser);
        if !superuser {
            return Err(denied(role, "permission denied to create role"));
        }
        let mut s = self.db.state();
        match s.roles.get_mut(role) {
            Some(r) if r.superuser => Err(StatementError::Unsafe {
                reasons: vec!["is a superuser".into()],
            }),
            Some(r) => {
                let mut change = AppRoleChange::default();
                if let (true, Some(p)) = (reset_password, password) {
                    r.password = p.expose_secret().to_owned();
                    s.changes.push(format!("ALTER {role}"));
                    change.changes.push("password".into());
                }
                Ok(change)
            }
            None => {
                let password = password.ok_or_else(|| StatementError::Failed("no password".into()))?;
                s.roles.insert(
                    role.to_owned(),
                    Role {
                        password: password.expose_secret().to_owned(),
                        member_of: Vec::new(),
                        superuser: false,
                    },
                );
                s.changes.push(format!("CREATE {role}"));
                Ok(AppRoleChange {
                    created: true,
                    changes: vec![format!("created role {role} with LOGIN")],
                })
            }
        }
    }

    async fn probe(&mut self, query: &str) -> Result<(), StatementError> {
        self.db.state().probes.push(query.to_owned());
        if query.contains("missing_table") {
            return Err(StatementError::Failed(
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
