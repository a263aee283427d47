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
            // The password revoke hands a user so that nobody holds it, and preflight's thrown-away
            // one, join the leak check like every other.
            None => {
                let p = self.inner.random_password(policy).await?;
                devstack::evidence::record_secret(secrecy::ExposeSecret::expose_secret(&p));
                Ok(p)
            }
        }
    }
    async fn version_created(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Option<std::time::SystemTime>, AwsError> {
        self.count();
        self.inner.version_created(secret_id, version_id).await
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

/// A session over TLS (verify-full) as `user`.
pub async fn connect_as(stack: &Stack, user: &str, password: &str, dbname: &str) -> db_credentials::Connection {
    try_connect(stack, user, password, dbname)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
}

/// The version id holding `stage`.
pub async fn version_id(stack: &Stack, secret: &str, stage: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let desc = sm.describe_secret().secret_id(secret).send().await.unwrap();
    desc.version_ids_to_stages()
        .unwrap()
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == stage))
        .map(|(v, _)| v.clone())
        .unwrap_or_else(|| panic!("no version holds {stage}"))
}

async fn try_connect(
    stack: &Stack,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<db_credentials::Connection, ConnectError> {
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
    connect(&creds, Duration::from_secs(5), "rotation-test").await
}

/// Logs in over TLS (verify-full) and runs `SELECT 1`.
pub async fn login(stack: &Stack, user: &str, password: &str, dbname: &str) -> Result<(), ConnectError> {
    let conn = try_connect(stack, user, password, dbname).await?;
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

/// Logs in with a client that can do md5 authentication and nothing else (no SCRAM), over TLS
/// verified against the cluster's CA when the cluster has TLS: it succeeds only if the server
/// asks for md5, which it does only when `pg_hba.conf` says md5 *and* the role's stored password
/// is an md5 hash.
pub async fn md5_only_login(stack: &Stack, user: &str, password: &str, dbname: &str) -> Result<(), String> {
    use bytes::BytesMut;
    use postgres_protocol::message::{backend::Message, frontend};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        user: &str,
        password: &str,
        dbname: &str,
    ) -> Result<(), String> {
        let mut buf = BytesMut::new();
        frontend::startup_message([("user", user), ("database", dbname)], &mut buf).map_err(|e| e.to_string())?;
        s.write_all(&buf).await.map_err(|e| e.to_string())?;
        let mut input = BytesMut::new();
        loop {
            let message = loop {
                if let Some(m) = Message::parse(&mut input).map_err(|e| e.to_string())? {
                    break m;
                }
                if s.read_buf(&mut input).await.map_err(|e| e.to_string())? == 0 {
                    return Err("the server closed the connection".into());
                }
            };
            match message {
                Message::AuthenticationMd5Password(body) => {
                    let hash =
                        postgres_protocol::authentication::md5_hash(user.as_bytes(), password.as_bytes(), body.salt());
                    buf.clear();
                    frontend::password_message(hash.as_bytes(), &mut buf).map_err(|e| e.to_string())?;
                    s.write_all(&buf).await.map_err(|e| e.to_string())?;
                }
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationSasl(_) => {
                    return Err("the server asked for SCRAM-SHA-256; this client can only do md5".into());
                }
                Message::ErrorResponse(body) => {
                    use fallible_iterator::FallibleIterator;
                    let fields: Vec<String> = body
                        .fields()
                        .map(|f| Ok(String::from_utf8_lossy(f.value_bytes()).into_owned()))
                        .collect()
                        .map_err(|e: std::io::Error| e.to_string())?;
                    return Err(fields.join(" "));
                }
                _ => return Err("unexpected message during authentication".into()),
            }
        }
    }

    let mut tcp = tokio::net::TcpStream::connect((stack.postgres.host(), stack.postgres.port()))
        .await
        .map_err(|e| e.to_string())?;
    if !stack.postgres.tls() {
        return authenticate(tcp, user, password, dbname).await;
    }
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
    if answer[0] != b'S' {
        return Err("the server refused TLS".into());
    }
    let ca = std::fs::read(stack.postgres.ca_cert()).map_err(|e| e.to_string())?;
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&ca).map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| e.to_string())?;
    let tls = tokio_native_tls::TlsConnector::from(connector)
        .connect(stack.postgres.host(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    authenticate(tls, user, password, dbname).await
}
