//! What every integration test needs: a rotator wired to a stack, an in-process step runner,
//! logins, and the secret's versions.

use db_credentials::{
    ConnectError, Credentials, SslMode, TlsSettings,
    aws::AwsError,
    config::Vars,
    connect,
    secrets_manager::{PasswordPolicy, ReadSecrets, SdkSecrets, SecretDescription, SecretValue, Stage},
};
use devstack::{RotationDriver, Stack, StepRunner, rotation_driver::RotationEvent};
use rotation::{Config, Rotator, Strategy, db::PgLogins, secrets::SecretsApi};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// The SDK, except that GetRandomPassword can be told what to return, to prove passwords no
/// generator would produce survive the whole path.
pub struct Scripted {
    pub inner: SdkSecrets,
    pub passwords: Mutex<VecDeque<String>>,
    /// Secrets Manager calls made by the function.
    pub calls: AtomicUsize,
}

impl Scripted {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl ReadSecrets for Scripted {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, AwsError> {
        self.count();
        self.inner.describe(secret_id).await
    }
    async fn get_value(
        &self,
        secret_id: &str,
        stage: Stage,
        version_id: Option<&str>,
    ) -> Result<SecretValue, AwsError> {
        self.count();
        self.inner.get_value(secret_id, stage, version_id).await
    }
}

impl SecretsApi for Scripted {
    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> Result<(), AwsError> {
        self.count();
        self.inner.put_pending(secret_id, token, value, rotation_token).await
    }
    async fn update_stage(
        &self,
        secret_id: &str,
        stage: Stage,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), AwsError> {
        self.count();
        self.inner.update_stage(secret_id, stage, move_to, remove_from).await
    }
    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, AwsError> {
        self.count();
        let scripted = self.passwords.lock().unwrap().pop_front();
        match scripted {
            Some(p) => {
                devstack::evidence::record_secret(&p);
                Ok(SecretString::from(p))
            }
            None => self.inner.random_password(policy).await,
        }
    }
}

pub type TestRotator = Rotator<Scripted, PgLogins, db_credentials::rds::RdsApi>;

/// Runs each step by calling the handler directly with the JSON the service would send.
pub struct InProcess<'a>(pub &'a TestRotator);

impl StepRunner for InProcess<'_> {
    async fn run(&self, event: &RotationEvent) -> Result<(), String> {
        self.0
            .handle_json(&event.payload())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Environment for a rotator on `stack`: TLS verified against the cluster's CA.
pub fn vars(stack: &Stack, strategy: Strategy, extra: &[(&str, &str)]) -> Vars {
    let mut vars: Vars = [
        ("ROTATION_STRATEGY", strategy.as_str().to_owned()),
        ("DB_SSLMODE", "verify-full".to_owned()),
        ("DB_SSL_ROOT_CERT", stack.postgres.ca_cert().display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if !stack.postgres.tls() {
        vars.remove("DB_SSLMODE");
        vars.remove("DB_SSL_ROOT_CERT");
    }
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

pub async fn new_rotator(stack: &Stack, vars: &Vars) -> TestRotator {
    let sdk = stack.moto.sdk_config().await;
    let config = Config::from_vars(vars).unwrap();
    let secrets = Scripted {
        inner: SdkSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk)),
        passwords: Mutex::new(VecDeque::new()),
        calls: AtomicUsize::new(0),
    };
    Rotator::new(config, secrets, PgLogins, db_credentials::rds::RdsApi::new(&sdk))
}

/// A role with exactly this name, its password and a database it owns.
/// Created by the master (`DEVSTACK_MASTER`), as on RDS, so an RDS-like master administers it.
pub async fn create_role(stack: &Stack, role: &str, password: &str) -> String {
    stack.create_role_by_master(role, password).await.unwrap();
    let dbname = format!("db_{}", &devstack::random_token()[..12]);
    stack.postgres.create_database(&dbname, role).await.unwrap();
    dbname
}

/// The secret RDS would hold for `role` on this stack.
pub fn secret_json(stack: &Stack, role: &str, password: &str, dbname: &str) -> Value {
    json!({
        "engine": "postgres",
        "host": stack.postgres.host(),
        "port": stack.postgres.port(),
        "username": role,
        "password": password,
        "dbname": dbname,
        "note": "kept by rotation",
    })
}

/// A master secret, as alternating-users rotation needs: the cluster's superuser, or an RDS-like
/// master with `DEVSTACK_MASTER=rds` (see devstack's `rds` module).
pub async fn master_secret(stack: &Stack) -> String {
    let master = stack.master().await.unwrap();
    let json = json!({
        "engine": "postgres",
        "host": stack.postgres.host(),
        "port": stack.postgres.port(),
        "username": master.username,
        "password": master.password,
    });
    stack
        .create_secret(&Stack::secret_name("rotation-master"), &json)
        .await
        .unwrap()
}

pub async fn driver(stack: &Stack) -> RotationDriver {
    RotationDriver::new(&stack.moto).await.unwrap()
}

/// The JSON of the version holding `stage`; `None` only when no version with a value holds it
/// (Secrets Manager answers ResourceNotFound). Any other failure fails the test: a read error
/// taken for "no such version" would let a check pass on nothing.
pub async fn version(stack: &Stack, secret: &str, stage: &str) -> Option<Value> {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    match sm
        .get_secret_value()
        .secret_id(secret)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => {
            let text = out
                .secret_string()
                .unwrap_or_else(|| panic!("{stage} of {secret} has no SecretString"));
            Some(serde_json::from_str(text).unwrap_or_else(|e| panic!("{stage} of {secret} is not JSON: {e}")))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!(
            "reading {stage} of {secret}: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
        ),
    }
}

pub async fn current(stack: &Stack, secret: &str) -> Value {
    version(stack, secret, "AWSCURRENT").await.unwrap()
}

pub fn user_and_password(v: &Value) -> (String, String) {
    (
        v["username"].as_str().unwrap().to_owned(),
        v["password"].as_str().unwrap().to_owned(),
    )
}

/// Logs in over TLS (verify-full) and runs `SELECT 1`.
pub async fn login(stack: &Stack, user: &str, password: &str, dbname: &str) -> Result<(), ConnectError> {
    let tls = if stack.postgres.tls() {
        TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(stack.postgres.ca_cert()),
        }
    } else {
        TlsSettings {
            mode: SslMode::Disable,
            root_cert: None,
        }
    };
    let creds = Credentials::new(
        user,
        SecretString::from(password.to_owned()),
        stack.postgres.host(),
        stack.postgres.port(),
        dbname,
        tls,
    );
    let conn = connect(&creds, Duration::from_secs(5), "rotation-test").await?;
    conn.client.simple_query("SELECT 1").await.unwrap();
    Ok(())
}

/// Whether a version's credentials log in.
pub async fn logs_in(stack: &Stack, v: &Value) -> bool {
    let (user, password) = user_and_password(v);
    login(stack, &user, &password, v["dbname"].as_str().unwrap_or("postgres"))
        .await
        .is_ok()
}

/// A version's credentials are refused by the server as wrong (SQLSTATE 28P01/28000), not
/// failing for any other reason.
pub async fn assert_refused(stack: &Stack, v: &Value, what: &str) {
    let (user, password) = user_and_password(v);
    match login(stack, &user, &password, v["dbname"].as_str().unwrap_or("postgres")).await {
        Ok(()) => panic!("{what}: {user} still logs in"),
        Err(e) if e.is_auth() => {}
        Err(e) => panic!("{what}: {user} fails to log in, but not because the password is refused: {e}"),
    }
}

/// The stored verifier of a role.
pub async fn rolpassword(stack: &Stack, role: &str) -> Option<String> {
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_opt("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .and_then(|r| r.get(0))
}

/// No password of any version of `secret`, in any form (SQL literal, escaped, encoded), appears
/// in the server log.
pub async fn assert_no_password_in_server_log(stack: &Stack, secret: &str, also: &[&str]) {
    let log = stack.postgres.server_log();
    assert!(
        log.contains("statement: ALTER ROLE") || log.contains("statement: CREATE ROLE"),
        "log_statement=all is on"
    );
    let mut passwords: Vec<String> = also.iter().map(|s| (*s).to_owned()).collect();
    for stage in ["AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"] {
        if let Some(v) = version(stack, secret, stage).await {
            passwords.push(user_and_password(&v).1);
        }
    }
    let sightings = devstack::capture::secret_sightings(&log, &passwords);
    assert!(sightings.is_empty(), "a password reached the server log: {sightings:?}");
}
