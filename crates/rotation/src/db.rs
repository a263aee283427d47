//! The database side of rotation: log in, set a password, create the alternate user, probe.
//!
//! Passwords are never sent to Postgres: the function computes what the server stores itself (a
//! SCRAM-SHA-256 verifier with the server's iteration count, or an md5 hash on an md5 server:
//! [`crate::verifier`]) and sends that, so the plaintext cannot reach the server, its log
//! (`log_statement=all`, `log_min_error_statement`), pgaudit or `pg_stat_statements`. `ALTER ROLE
//! … PASSWORD $1` cannot be bound as a parameter, so the statement is built from the escaped
//! identifier and the escaped verifier, neither of which can contain anything the server would
//! interpret.

use crate::verifier::{PasswordEncryption, stored_password_literal};
use db_credentials::{ConnectError, Credentials, connect, server_message};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use secrecy::{ExposeSecret, SecretString};
use std::{fmt, future::Future, time::Duration};
use tokio_postgres::error::SqlState;

/// `application_name` of the function's sessions, so a DBA can tell them apart.
pub const APPLICATION_NAME: &str = "secretsmanager-rotation";

/// Opens sessions. [`PgLogins`] in production; a fake in unit tests.
pub trait Logins: Send + Sync {
    /// A logged-in session.
    type Session: Session;

    /// Logs in with `creds` within `timeout` (TCP, TLS and authentication together).
    fn connect(
        &self,
        creds: &Credentials,
        timeout: Duration,
    ) -> impl Future<Output = Result<Self::Session, ConnectError>> + Send;
}

/// What rotation does once logged in.
pub trait Session: Send {
    /// `ALTER ROLE <role> WITH PASSWORD <stored form>`.
    fn set_password(
        &mut self,
        role: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<(), StatementError>> + Send;

    /// Alternating users, as the master: makes `clone` the alternate user of `base` with
    /// `password`, in one transaction. A missing clone is created with LOGIN, membership in
    /// `base` and `SET role = base` (so its sessions act as `base`, and whatever it creates
    /// belongs to `base`). An existing one is checked first and refused
    /// ([`StatementError::UnsafeClone`]) when it is a superuser or has rights `base` lacks;
    /// otherwise LOGIN, the membership and the role setting are re-applied where missing, and
    /// its password set. A clone another session creates meanwhile is treated as existing.
    fn ensure_clone(
        &mut self,
        clone: &str,
        base: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<RoleChange, StatementError>> + Send;

    /// Runs `query` in a transaction that is rolled back, so even a write probe changes nothing.
    fn probe(&mut self, query: &str) -> impl Future<Output = Result<(), StatementError>> + Send;
}

/// What [`Session::ensure_clone`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// The role was created with its password, membership and role setting.
    Created,
    /// The role existed: its password changed, and what it lacked was re-applied (`LOGIN`,
    /// `membership`, `SET role`), if anything.
    PasswordSet {
        /// What was missing and is now in place.
        repaired: Vec<&'static str>,
    },
}

/// The server's own words for a failed statement: message, `DETAIL` and `HINT`. Never the
/// statement, which holds the stored password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    /// The primary message.
    pub message: String,
    /// `DETAIL`, when the server sent one.
    pub detail: Option<String>,
    /// `HINT`, when the server sent one.
    pub hint: Option<String>,
}

impl ServerMessage {
    fn from_db(db: &tokio_postgres::error::DbError) -> Self {
        Self {
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            hint: db.hint().map(str::to_owned),
        }
    }

    /// Whether the server says the ADMIN option on a role is what is missing (Postgres 16+).
    pub fn wants_admin_option(&self) -> bool {
        [Some(&self.message), self.detail.as_ref(), self.hint.as_ref()]
            .into_iter()
            .flatten()
            .any(|t| t.contains("ADMIN option"))
    }
}

impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, "; DETAIL: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; HINT: {hint}")?;
        }
        Ok(())
    }
}

/// A statement failed, or was not run. Carries the SQLSTATE and the server's message, never the
/// statement (which holds the stored password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// SQLSTATE 42501: the session user lacks a privilege on `on_role`.
    #[error("permission denied: {server}")]
    PermissionDenied {
        /// The role the refused statement acted on (created, altered or granted).
        on_role: String,
        /// What the server said.
        server: ServerMessage,
    },
    /// An existing clone has rights its base role lacks; nothing was changed.
    #[error("the existing alternate user {}", .reasons.join("; "))]
    UnsafeClone {
        /// Each right, as "is a superuser", "has CREATEDB", ….
        reasons: Vec<String>,
    },
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl StatementError {
    fn from_pg(e: &tokio_postgres::Error, on_role: &str) -> Self {
        match e.as_db_error() {
            Some(db) if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE => Self::PermissionDenied {
                on_role: on_role.to_owned(),
                server: ServerMessage::from_db(db),
            },
            _ => Self::Failed(server_message(e)),
        }
    }
}

/// `ALTER ROLE "<role>" WITH PASSWORD '<stored form>'`. Secret: on an md5 server the stored form
/// logs in by itself.
pub fn alter_password_sql(role: &str, password: &SecretString, encryption: PasswordEncryption) -> SecretString {
    SecretString::from(format!(
        "ALTER ROLE {} WITH PASSWORD {}",
        escape_identifier(role),
        stored_password_literal(role, password, encryption).expose_secret()
    ))
}

/// `CREATE ROLE "<role>" WITH LOGIN PASSWORD '<stored form>'`.
pub fn create_role_sql(role: &str, password: &SecretString, encryption: PasswordEncryption) -> SecretString {
    SecretString::from(format!(
        "CREATE ROLE {} WITH LOGIN PASSWORD {}",
        escape_identifier(role),
        stored_password_literal(role, password, encryption).expose_secret(),
    ))
}

/// `GRANT "<base>" TO "<clone>"`, on Postgres 16+ with the INHERIT and SET options spelled out:
/// the clone needs both (its privileges for CONNECT at login, SET for its role setting).
pub fn grant_membership_sql(base: &str, clone: &str, server_version_num: i32) -> String {
    let options = if server_version_num >= 160_000 {
        " WITH INHERIT TRUE, SET TRUE"
    } else {
        ""
    };
    format!(
        "GRANT {} TO {}{options}",
        escape_identifier(base),
        escape_identifier(clone)
    )
}

/// `ALTER ROLE "<clone>" SET role = '<base>'`: every session of the clone starts as `base`.
pub fn acts_as_sql(clone: &str, base: &str) -> String {
    format!(
        "ALTER ROLE {} SET role = {}",
        escape_identifier(clone),
        escape_literal(base)
    )
}

/// Everything [`Session::ensure_clone`] checks, in one query: `$1` the clone, `$2` the base
/// role, `$3` the privilege that lets the clone `SET ROLE` to it (`SET` on 16+, `MEMBER` before).
/// Objects the clone owns or holds privileges on directly count from `pg_shdepend`, in every
/// database (role memberships, recorded there on 16+, are checked separately).
const CLONE_FACTS: &str = "
SELECT c.oid AS clone_oid, c.rolsuper, c.rolcanlogin,
  array_remove(ARRAY[
    CASE WHEN c.rolcreaterole AND NOT b.rolcreaterole THEN 'CREATEROLE' END,
    CASE WHEN c.rolcreatedb AND NOT b.rolcreatedb THEN 'CREATEDB' END,
    CASE WHEN c.rolreplication AND NOT b.rolreplication THEN 'REPLICATION' END,
    CASE WHEN c.rolbypassrls AND NOT b.rolbypassrls THEN 'BYPASSRLS' END], NULL) AS extra_attributes,
  ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
        WHERE m.member = c.oid AND m.roleid <> b.oid AND NOT pg_has_role(b.oid, m.roleid, 'MEMBER')
        ORDER BY 1) AS extra_roles,
  (SELECT count(*) FROM pg_catalog.pg_shdepend d
    WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = c.oid AND d.deptype IN ('o', 'a')
      AND d.classid <> 'pg_catalog.pg_auth_members'::regclass) AS direct_objects,
  pg_has_role(c.oid, b.oid, 'USAGE') AND pg_has_role(c.oid, b.oid, $3) AS member,
  EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s
          WHERE s.setrole = c.oid AND s.setdatabase = 0 AND ('role=' || b.rolname) = ANY (s.setconfig)) AS acts_as_base
FROM pg_catalog.pg_roles b LEFT JOIN pg_catalog.pg_roles c ON c.rolname = $1
WHERE b.rolname = $2";

/// What the server is: how it stores passwords, and its version.
#[derive(Debug, Clone, Copy)]
struct ServerSettings {
    encryption: PasswordEncryption,
    version_num: i32,
}

/// [`SETTINGS_QUERY`] plus the server's version, in one round trip.
const SESSION_SETTINGS: &str = "SELECT current_setting('password_encryption'), current_setting('scram_iterations', true), current_setting('server_version_num')::int";

/// Why one attempt at [`Session::ensure_clone`] did not finish.
enum Attempt {
    /// Another session created the clone between our check and our `CREATE ROLE` (42710, or
    /// 23505 when our insert waited on its uncommitted one).
    Raced,
    Failed(StatementError),
}

impl From<StatementError> for Attempt {
    fn from(e: StatementError) -> Self {
        Self::Failed(e)
    }
}

/// [`Logins`] over tokio-postgres, through db-credentials' connect (TLS per design §6, one
/// timeout over TCP + TLS + authentication, classified errors).
#[derive(Debug, Clone, Default)]
pub struct PgLogins;

/// A tokio-postgres session.
#[derive(Debug)]
pub struct PgSession {
    conn: db_credentials::Connection,
    /// The server's settings, read on first use.
    settings: Option<ServerSettings>,
}

impl PgSession {
    /// How this server stores passwords and its version, read once per session.
    async fn settings(&mut self) -> Result<ServerSettings, StatementError> {
        if let Some(s) = self.settings {
            return Ok(s);
        }
        let row = self
            .conn
            .client
            .query_one(SESSION_SETTINGS, &[])
            .await
            .map_err(|e| StatementError::from_pg(&e, ""))?;
        let encryption = PasswordEncryption::from_settings(row.get(0), row.get::<_, Option<&str>>(1))
            .map_err(|e| StatementError::Failed(e.to_string()))?;
        tracing::debug!(%encryption, "server password settings");
        let settings = ServerSettings {
            encryption,
            version_num: row.get(2),
        };
        self.settings = Some(settings);
        Ok(settings)
    }

    /// One transaction of [`Session::ensure_clone`].
    async fn try_ensure_clone(
        &mut self,
        clone: &str,
        base: &str,
        password: &SecretString,
        settings: ServerSettings,
    ) -> Result<RoleChange, Attempt> {
        let on = |role: &str| {
            let role = role.to_owned();
            move |e: tokio_postgres::Error| Attempt::Failed(StatementError::from_pg(&e, &role))
        };
        let set_privilege = if settings.version_num >= 160_000 {
            "SET"
        } else {
            "MEMBER"
        };
        let tx = self.conn.client.transaction().await.map_err(on(clone))?;
        let facts = tx
            .query_opt(CLONE_FACTS, &[&clone, &base, &set_privilege])
            .await
            .map_err(on(clone))?
            .ok_or_else(|| StatementError::Failed(format!("role {base} does not exist")))?;
        let grant = grant_membership_sql(base, clone, settings.version_num);
        if facts.get::<_, Option<u32>>("clone_oid").is_none() {
            match tx
                .batch_execute(create_role_sql(clone, password, settings.encryption).expose_secret())
                .await
            {
                Ok(()) => {}
                Err(e) if matches!(e.code(), Some(c) if *c == SqlState::DUPLICATE_OBJECT || *c == SqlState::UNIQUE_VIOLATION) =>
                {
                    return Err(Attempt::Raced);
                }
                Err(e) => return Err(on(clone)(e)),
            }
            tx.batch_execute(&grant).await.map_err(on(base))?;
            tx.batch_execute(&acts_as_sql(clone, base)).await.map_err(on(clone))?;
            tx.commit().await.map_err(on(clone))?;
            return Ok(RoleChange::Created);
        }
        let reasons = unsafe_clone_reasons(&facts, base);
        if !reasons.is_empty() {
            return Err(StatementError::UnsafeClone { reasons }.into());
        }
        let mut repaired = Vec::new();
        if !facts.get::<_, bool>("rolcanlogin") {
            repaired.push("LOGIN");
        }
        // LOGIN and INHERIT every time: idempotent, and the password goes in the same statement.
        let alter = format!(
            "ALTER ROLE {} WITH LOGIN INHERIT PASSWORD {}",
            escape_identifier(clone),
            stored_password_literal(clone, password, settings.encryption).expose_secret()
        );
        tx.batch_execute(&alter).await.map_err(on(clone))?;
        if !facts.get::<_, Option<bool>>("member").unwrap_or(false) {
            tx.batch_execute(&grant).await.map_err(on(base))?;
            repaired.push("membership");
        }
        if !facts.get::<_, bool>("acts_as_base") {
            tx.batch_execute(&acts_as_sql(clone, base)).await.map_err(on(clone))?;
            repaired.push("SET role");
        }
        tx.commit().await.map_err(on(clone))?;
        Ok(RoleChange::PasswordSet { repaired })
    }
}

/// Every right an existing clone has that its base role lacks, as sentences.
fn unsafe_clone_reasons(facts: &tokio_postgres::Row, base: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    if facts.get::<_, bool>("rolsuper") {
        reasons.push("is a superuser".to_owned());
    }
    for attribute in facts.get::<_, Vec<String>>("extra_attributes") {
        reasons.push(format!("has {attribute}, which {base} lacks"));
    }
    let roles = facts.get::<_, Vec<String>>("extra_roles");
    if !roles.is_empty() {
        reasons.push(format!("is a member of {}, which {base} is not", roles.join(", ")));
    }
    match facts.get::<_, i64>("direct_objects") {
        0 => {}
        n => reasons.push(format!(
            "owns or holds privileges on {n} object{} directly rather than through {base}",
            if n == 1 { "" } else { "s" }
        )),
    }
    reasons
}

impl Logins for PgLogins {
    type Session = PgSession;

    async fn connect(&self, creds: &Credentials, timeout: Duration) -> Result<PgSession, ConnectError> {
        let conn = connect(creds, timeout, APPLICATION_NAME).await?;
        Ok(PgSession { conn, settings: None })
    }
}

impl Session for PgSession {
    async fn set_password(&mut self, role: &str, password: &SecretString) -> Result<(), StatementError> {
        let settings = self.settings().await?;
        self.conn
            .client
            .batch_execute(alter_password_sql(role, password, settings.encryption).expose_secret())
            .await
            .map_err(|e| StatementError::from_pg(&e, role))
    }

    async fn ensure_clone(
        &mut self,
        clone: &str,
        base: &str,
        password: &SecretString,
    ) -> Result<RoleChange, StatementError> {
        let settings = self.settings().await?;
        match self.try_ensure_clone(clone, base, password, settings).await {
            Ok(change) => Ok(change),
            Err(Attempt::Failed(e)) => Err(e),
            // The transaction is rolled back; the role now exists, so the second attempt checks
            // it like any existing clone.
            Err(Attempt::Raced) => {
                tracing::info!("the alternate user was created concurrently; checking it");
                match self.try_ensure_clone(clone, base, password, settings).await {
                    Ok(change) => Ok(change),
                    Err(Attempt::Failed(e)) => Err(e),
                    Err(Attempt::Raced) => Err(StatementError::Failed(format!(
                        "role {clone} was reported as created concurrently, but is not visible"
                    ))),
                }
            }
        }
    }

    async fn probe(&mut self, query: &str) -> Result<(), StatementError> {
        let user = self.conn.info.user.clone();
        let pg = |e: tokio_postgres::Error| StatementError::from_pg(&e, &user);
        let tx = self.conn.client.transaction().await.map_err(pg)?;
        // The extended protocol: exactly one statement. The simple protocol would run
        // "...; COMMIT; ..." as written and commit what the rollback below is meant to undo.
        tx.execute(query, &[]).await.map_err(pg)?;
        tx.rollback().await.map_err(pg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_carry_a_quoted_role_and_a_stored_form_never_the_password() {
        let password = SecretString::from("pa'ss\"; DROP ROLE x; -- $$ % é".to_owned());
        let scram = PasswordEncryption::default();
        for role in ["app", "App", "my-user", "a\"b", "select"] {
            let sql = alter_password_sql(role, &password, scram);
            let sql = sql.expose_secret();
            assert!(sql.starts_with(&format!(
                "ALTER ROLE {} WITH PASSWORD 'SCRAM-SHA-256$4096:",
                escape_identifier(role)
            )));
            assert!(!sql.contains(password.expose_secret()), "{sql}");
            assert!(!sql.contains("DROP ROLE"), "{sql}");
            let md5 = alter_password_sql(role, &password, PasswordEncryption::Md5);
            assert!(
                md5.expose_secret().contains(" WITH PASSWORD 'md5"),
                "{}",
                md5.expose_secret()
            );
            assert!(!md5.expose_secret().contains("DROP ROLE"));
        }
        assert!(
            alter_password_sql("a\"b", &password, scram)
                .expose_secret()
                .starts_with("ALTER ROLE \"a\"\"b\" ")
        );
        let create = create_role_sql("app_clone", &password, scram);
        let create = create.expose_secret();
        assert!(create.starts_with("CREATE ROLE \"app_clone\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(!create.contains("DROP ROLE"));
        let iterations = create_role_sql(
            "app_clone",
            &password,
            PasswordEncryption::ScramSha256 { iterations: 9000 },
        );
        assert!(iterations.expose_secret().contains("'SCRAM-SHA-256$9000:"));
    }

    #[test]
    fn membership_and_role_setting_are_quoted_and_spelled_per_version() {
        assert_eq!(
            grant_membership_sql("app", "app_clone", 150_000),
            "GRANT \"app\" TO \"app_clone\""
        );
        assert_eq!(
            grant_membership_sql("a\"b", "a\"b_clone", 180_000),
            "GRANT \"a\"\"b\" TO \"a\"\"b_clone\" WITH INHERIT TRUE, SET TRUE"
        );
        assert_eq!(
            acts_as_sql("it's_clone", "it's"),
            "ALTER ROLE \"it's_clone\" SET role = 'it''s'"
        );
    }

    #[test]
    fn server_messages_keep_detail_and_hint() {
        let m = ServerMessage {
            message: "permission denied to grant role \"app\"".into(),
            detail: Some("Only roles with the ADMIN option on role \"app\" may grant this role.".into()),
            hint: None,
        };
        assert_eq!(
            m.to_string(),
            "permission denied to grant role \"app\"; DETAIL: Only roles with the ADMIN option on role \"app\" may grant this role."
        );
        assert!(m.wants_admin_option());
    }

    #[test]
    fn the_md5_form_is_salted_with_the_role_it_is_for() {
        let password = SecretString::from("same".to_owned());
        assert_ne!(
            alter_password_sql("a", &password, PasswordEncryption::Md5).expose_secret()[20..],
            alter_password_sql("b", &password, PasswordEncryption::Md5).expose_secret()[20..]
        );
    }
}
