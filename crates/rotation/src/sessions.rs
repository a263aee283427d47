//! What preflight and revoke ask of a Postgres session besides the four steps: the server's
//! settings, setSecret's statements rehearsed in a transaction that is rolled back, and ending the
//! sessions of one user.

use crate::db::{Attempt, PgSession, StatementError, alter_password_sql};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::time::SystemTime;

/// The server's settings that matter to a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerFacts {
    /// `server_version`, e.g. `15.14 (Debian 15.14-0+deb12u1)`.
    pub version: String,
    /// How new passwords are stored: what the rotation computes and sends.
    pub password_encryption: String,
    /// `log_statement` (`none`, `ddl`, `mod`, `all`), or `unknown` when the user may not read it.
    pub log_statement: String,
    /// Whether the session's user is a superuser.
    pub superuser: bool,
}

impl ServerFacts {
    /// Whether the server logs `ALTER ROLE` and `CREATE ROLE` statements (`ddl` and `all` do).
    pub fn logs_role_statements(&self) -> bool {
        matches!(self.log_statement.as_str(), "ddl" | "all")
    }
}

/// One session [`crate::db::Session::end_sessions`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndedSession {
    /// Backend process id.
    pub pid: i32,
    /// The session's user.
    pub user: String,
    /// When it began (UTC, RFC 3339).
    pub began: String,
    /// Its `application_name`.
    pub application: String,
    /// Whether the backend was gone within the wait (`pg_terminate_backend`'s answer).
    pub ended: bool,
}

const FACTS: &str = "SELECT current_setting('server_version'), current_setting('log_statement', true), \
     (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)";

/// The sessions of `$1` other than ours, begun before `$2` (all of them when NULL), each ended:
/// `pg_terminate_backend` waits up to 5 s for the backend to exit (Postgres 14+), so the report
/// says whether it is really gone.
const END_SESSIONS: &str = "
SELECT pid, usename::text,
  to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS began,
  coalesce(application_name, '') AS application,
  pg_catalog.pg_terminate_backend(pid, 5000) AS ended
FROM pg_catalog.pg_stat_activity
WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
  AND ($2::timestamptz IS NULL OR backend_start < $2::timestamptz)
ORDER BY backend_start";

pub(crate) async fn server_facts(session: &mut PgSession) -> Result<ServerFacts, StatementError> {
    let settings = session.settings().await?;
    let row = session
        .conn
        .client
        .query_one(FACTS, &[])
        .await
        .map_err(|e| StatementError::from_pg(&e, ""))?;
    Ok(ServerFacts {
        version: row.get(0),
        password_encryption: settings.encryption.to_string(),
        log_statement: row.get::<_, Option<String>>(1).unwrap_or_else(|| "unknown".to_owned()),
        superuser: row.get::<_, Option<bool>>(2).unwrap_or(false),
    })
}

pub(crate) async fn rehearse(
    session: &mut PgSession,
    role: &str,
    clone_of: Option<&str>,
    password: &SecretString,
) -> Result<(), StatementError> {
    let settings = session.settings().await?;
    if let Some(base) = clone_of {
        return match session.try_ensure_clone(role, base, password, settings, false).await {
            Ok(_) => Ok(()),
            Err(Attempt::Failed(e)) => Err(e),
            // Another session created it meanwhile: a rotation is running right now.
            Err(Attempt::Raced) => Err(StatementError::Failed(format!(
                "role {role} was created by another session during the rehearsal"
            ))),
        };
    }
    let sql = alter_password_sql(role, password, settings.encryption);
    let tx = session
        .conn
        .client
        .transaction()
        .await
        .map_err(|e| StatementError::from_pg(&e, role))?;
    tx.batch_execute(sql.expose_secret())
        .await
        .map_err(|e| StatementError::from_pg(&e, role))?;
    tx.rollback().await.map_err(|e| StatementError::from_pg(&e, role))
}

pub(crate) async fn end_sessions(
    session: &mut PgSession,
    role: &str,
    began_before: Option<SystemTime>,
) -> Result<Vec<EndedSession>, StatementError> {
    let rows = session
        .conn
        .client
        .query(END_SESSIONS, &[&role, &began_before])
        .await
        .map_err(|e| StatementError::from_pg(&e, role))?;
    Ok(rows
        .iter()
        .map(|r| EndedSession {
            pid: r.get(0),
            user: r.get(1),
            began: r.get::<_, Option<String>>(2).unwrap_or_default(),
            application: r.get(3),
            ended: r.get::<_, Option<bool>>(4).unwrap_or(false),
        })
        .collect())
}
