//! Opening one Postgres connection with given credentials, and classifying why it failed.

use crate::{
    config::{SessionTarget, SourceKind},
    source::{Credentials, Origin},
    tls::SslMode,
};
use secrecy::ExposeSecret;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::error::SqlState;

/// A live connection: the client plus what it was made with.
pub struct Connection {
    /// The client. Dropping it closes the connection.
    pub client: tokio_postgres::Client,
    /// How it was made.
    pub info: ConnectionInfo,
    read_only: Arc<AtomicBool>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Whether the server has reported this session read-only since it was opened: a standby, or
    /// `default_transaction_read_only` turned on by a reload (a demoted primary after a failover).
    /// Servers from 14 on report both settings as they change (as they do for libpq's
    /// `target_session_attrs`); older ones never set this.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// Ends the session the way a client should: drops the client, so the connection sends
    /// Terminate and closes the socket (TLS close_notify included), and waits up to `within` for
    /// that to be done. The server then logs a normal disconnect rather than an unexpected EOF;
    /// dropping the connection without waiting leaves that to a task a process about to exit may
    /// never run.
    pub async fn close(self, within: Duration) {
        let Self { client, driver, .. } = self;
        drop(client);
        if tokio::time::timeout(within, driver).await.is_err() {
            tracing::debug!("database connection did not close in time");
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// How a connection was made, for health reporting.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// User.
    pub user: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub dbname: String,
    /// TLS mode used.
    pub tls_mode: SslMode,
    /// Whether the session is encrypted.
    pub tls_in_use: bool,
    /// Where the credentials came from.
    pub origin: Origin,
    /// Time from start to an authenticated session.
    pub connect_time: Duration,
    /// When it was opened.
    pub opened_at: Instant,
}

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectErrorKind {
    /// Credentials could not be obtained from their source.
    Credentials,
    /// The server refused the user or password (SQLSTATE 28P01 / 28000).
    Authentication,
    /// TLS handshake or certificate failure, or TLS required but not offered.
    Tls,
    /// No answer within the connect timeout.
    Timeout,
    /// DNS, connection refused, reset.
    Unreachable,
    /// The server refused for another reason (too many connections, starting up, database missing…).
    Server,
    /// A writer was asked for ([`SessionTarget::ReadWrite`]) and the server does not accept writes:
    /// a standby, or a primary made read-only (demoted in a failover). The session was closed.
    ReadOnly,
}

/// A failed connect. Names user, host and credential source; never a password.
#[derive(Debug, Clone)]
pub struct ConnectError {
    /// Classification.
    pub kind: ConnectErrorKind,
    /// User.
    pub user: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Where the credentials came from.
    pub source: SourceKind,
    /// SQLSTATE, when the server sent one.
    pub sqlstate: Option<SqlState>,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ConnectErrorKind::Credentials {
            return write!(
                f,
                "cannot get database credentials (source {}): {}",
                self.source, self.detail
            );
        }
        write!(
            f,
            "cannot connect to Postgres at {}:{} as {} (credentials from {}): {}",
            self.host, self.port, self.user, self.source, self.detail
        )
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// Whether the server refused the credentials.
    pub fn is_auth(&self) -> bool {
        self.kind == ConnectErrorKind::Authentication
    }

    /// An error for credentials that could not be obtained.
    pub fn credentials(source: SourceKind, detail: impl fmt::Display) -> Self {
        Self {
            kind: ConnectErrorKind::Credentials,
            user: String::new(),
            host: String::new(),
            port: 0,
            source,
            sqlstate: None,
            detail: detail.to_string(),
        }
    }

    fn new(creds: &Credentials, kind: ConnectErrorKind, sqlstate: Option<SqlState>, detail: String) -> Self {
        Self {
            kind,
            user: creds.user.clone(),
            host: creds.host.clone(),
            port: creds.port,
            source: creds.origin.source,
            sqlstate,
            detail,
        }
    }
}

/// Opens a connection. `timeout` bounds the whole of TCP, TLS and authentication, so a server
/// that accepts the socket and then says nothing cannot hold the caller.
///
/// # Errors
/// [`ConnectError`] with the failure classified.
pub async fn connect(
    creds: &Credentials,
    timeout: Duration,
    application_name: &str,
) -> Result<Connection, ConnectError> {
    connect_to(creds, timeout, application_name, SessionTarget::Any).await
}

/// [`connect`] to a server that is what `target` asks for. With [`SessionTarget::ReadWrite`] a
/// session on a server that does not accept writes is closed and the connect fails with
/// [`ConnectErrorKind::ReadOnly`], as libpq's `target_session_attrs=read-write` does: from the
/// settings the server reports at login (`in_hot_standby`, `default_transaction_read_only`, 14 and
/// later), else with `SHOW transaction_read_only`.
///
/// # Errors
/// [`ConnectError`] with the failure classified.
pub async fn connect_to(
    creds: &Credentials,
    timeout: Duration,
    application_name: &str,
    target: SessionTarget,
) -> Result<Connection, ConnectError> {
    let started = Instant::now();
    let connector = creds
        .tls
        .connector()
        .map_err(|e| ConnectError::new(creds, ConnectErrorKind::Tls, None, e.to_string()))?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&creds.host)
        .port(creds.port)
        .user(&creds.user)
        .password(creds.password.expose_secret())
        .dbname(&creds.dbname)
        .ssl_mode(creds.tls.postgres_mode())
        .connect_timeout(timeout)
        .application_name(application_name)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let (client, connection) = match tokio::time::timeout(timeout, config.connect(connector)).await {
        Err(_) => {
            return Err(ConnectError::new(
                creds,
                ConnectErrorKind::Timeout,
                None,
                format!("no answer within {} ms", timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => return Err(classify(creds, &e)),
        Ok(Ok(pair)) => pair,
    };
    let reported = reported_read_only(&connection);
    let read_only = Arc::new(AtomicBool::new(reported.is_some()));
    let driver = tokio::spawn(drive(connection, Arc::clone(&read_only)));
    if target == SessionTarget::ReadWrite {
        let why = match reported {
            Some(why) => Some(why),
            None => {
                let rows = client
                    .simple_query("SHOW transaction_read_only")
                    .await
                    .map_err(|e| classify(creds, &e))?;
                let on = rows.iter().any(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("on"),
                    _ => false,
                });
                on.then_some("transaction_read_only is on")
            }
        };
        if let Some(why) = why {
            return Err(ConnectError::new(
                creds,
                ConnectErrorKind::ReadOnly,
                Some(SqlState::READ_ONLY_SQL_TRANSACTION),
                format!("the server does not accept writes ({why}); a writer was asked for"),
            ));
        }
    }
    let tls_in_use = match creds.tls.mode {
        SslMode::Disable => false,
        SslMode::Prefer => {
            let row = client
                .query_opt("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                .await
                .map_err(|e| classify(creds, &e))?;
            row.and_then(|r| r.try_get::<_, bool>(0).ok()).unwrap_or(false)
        }
        _ => true,
    };
    Ok(Connection {
        client,
        read_only,
        driver,
        info: ConnectionInfo {
            user: creds.user.clone(),
            host: creds.host.clone(),
            port: creds.port,
            dbname: creds.dbname.clone(),
            tls_mode: creds.tls.mode,
            tls_in_use,
            origin: creds.origin.clone(),
            connect_time: started.elapsed(),
            opened_at: Instant::now(),
        },
    })
}

/// Why the server says, in the settings it reports, that it does not accept writes (14 and later
/// report both at login and again when a reload changes them).
fn reported_read_only<S, T>(connection: &tokio_postgres::Connection<S, T>) -> Option<&'static str>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    if connection.parameter("in_hot_standby") == Some("on") {
        Some("a standby in recovery")
    } else if connection.parameter("default_transaction_read_only") == Some("on") {
        Some("default_transaction_read_only is on, as on a demoted primary")
    } else {
        None
    }
}

/// Runs the connection, and raises `read_only` as soon as the server reports the session read-only
/// (a reload on a demoted primary sends the new setting before the next answer).
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, read_only: Arc<AtomicBool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let ended = std::future::poll_fn(|cx| {
        let poll = Pin::new(&mut connection).poll(cx);
        if reported_read_only(&connection).is_some() {
            read_only.store(true, Ordering::Relaxed);
        }
        poll
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "database connection ended");
    }
}

/// Whether an error is the server refusing credentials. 28000 is also what RDS Proxy answers
/// for a role it has no credentials for during alternating-users rotation.
pub fn is_auth_error(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
}

/// What the server said, as `SEVERITY SQLSTATE: message` (tokio-postgres's `Display` omits it for
/// database errors), or the client-side error. Never a statement: a statement can hold a verifier.
pub fn server_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn classify(creds: &Credentials, e: &tokio_postgres::Error) -> ConnectError {
    use std::error::Error as _;
    if let Some(db) = e.as_db_error() {
        let kind = if is_auth_error(e) {
            ConnectErrorKind::Authentication
        } else {
            ConnectErrorKind::Server
        };
        return ConnectError::new(creds, kind, Some(db.code().clone()), server_message(e));
    }
    // tokio-postgres's Display omits the cause ("error performing TLS handshake"); the chain has
    // the useful part ("certificate verify failed…").
    let mut detail = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        detail.push_str(": ");
        detail.push_str(&c.to_string());
        cause = c.source();
    }
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<native_tls::Error>() {
            return ConnectError::new(creds, ConnectErrorKind::Tls, None, detail);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let kind = match io.kind() {
                std::io::ErrorKind::TimedOut => ConnectErrorKind::Timeout,
                _ => ConnectErrorKind::Unreachable,
            };
            return ConnectError::new(creds, kind, None, detail);
        }
        source = s.source();
    }
    // "server does not support TLS" has no typed source.
    let kind = if detail.contains("TLS") {
        ConnectErrorKind::Tls
    } else {
        ConnectErrorKind::Server
    };
    ConnectError::new(creds, kind, None, detail)
}
