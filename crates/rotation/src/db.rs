//! The database side of rotation: log in, set a password, create the alternate user, probe.
//!
//! Passwords are never sent to Postgres: the function computes what the server stores itself (a
//! SCRAM-SHA-256 verifier with the server's iteration count, or an md5 hash on an md5 server:
//! [`crate::verifier`]) and sends that, so the plaintext cannot reach the server, its log
//! (`log_statement=all`, `log_min_error_statement`), pgaudit or `pg_stat_statements`. `ALTER ROLE
//! … PASSWORD $1` cannot be bound as a parameter, so the statement is built from the escaped
//! identifier and the escaped verifier, neither of which can contain anything the server would
//! interpret.

use crate::verifier::{PasswordEncryption, SETTINGS_QUERY, stored_password_literal};
use db_credentials::{ConnectError, Credentials, connect, server_message};
use postgres_protocol::escape::escape_identifier;
use secrecy::{ExposeSecret, SecretString};
use std::{future::Future, time::Duration};
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
    /// `ALTER ROLE <role> WITH PASSWORD <verifier>`.
    fn set_password(
        &mut self,
        role: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<(), StatementError>> + Send;

    /// Alternating users: in one transaction, create `role` with LOGIN, the password and
    /// membership in `member_of` if it does not exist, else only set its password.
    fn create_or_set_password(
        &mut self,
        role: &str,
        member_of: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<RoleChange, StatementError>> + Send;

    /// Runs `query` in a transaction that is rolled back, so even a write probe changes nothing.
    fn probe(&mut self, query: &str) -> impl Future<Output = Result<(), StatementError>> + Send;
}

/// What [`Session::create_or_set_password`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The role was created with its password and membership.
    Created,
    /// The role existed; only its password changed.
    PasswordSet,
}

/// A statement failed. Carries the SQLSTATE and the server's message, never the statement (which
/// holds the verifier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// SQLSTATE 42501: the session user lacks the privilege.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl StatementError {
    fn from_pg(e: &tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE => {
                Self::PermissionDenied(db.message().to_owned())
            }
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

/// `CREATE ROLE "<role>" WITH LOGIN PASSWORD '<stored form>'; GRANT "<member_of>" TO "<role>"`.
pub fn create_role_sql(
    role: &str,
    member_of: &str,
    password: &SecretString,
    encryption: PasswordEncryption,
) -> SecretString {
    SecretString::from(format!(
        "CREATE ROLE {role} WITH LOGIN PASSWORD {}; GRANT {} TO {role}",
        stored_password_literal(role, password, encryption).expose_secret(),
        escape_identifier(member_of),
        role = escape_identifier(role),
    ))
}

/// [`Logins`] over tokio-postgres, through db-credentials' connect (TLS per design §6, one
/// timeout over TCP + TLS + authentication, classified errors).
#[derive(Debug, Clone, Default)]
pub struct PgLogins;

/// A tokio-postgres session.
#[derive(Debug)]
pub struct PgSession {
    conn: db_credentials::Connection,
    /// The server's password settings, read on first use.
    encryption: Option<PasswordEncryption>,
}

impl PgSession {
    /// How this server stores passwords ([`SETTINGS_QUERY`]), read once per session.
    async fn encryption(&mut self) -> Result<PasswordEncryption, StatementError> {
        if let Some(e) = self.encryption {
            return Ok(e);
        }
        let row = self
            .conn
            .client
            .query_one(SETTINGS_QUERY, &[])
            .await
            .map_err(|e| StatementError::from_pg(&e))?;
        let encryption = PasswordEncryption::from_settings(row.get(0), row.get::<_, Option<&str>>(1))
            .map_err(|e| StatementError::Failed(e.to_string()))?;
        tracing::debug!(%encryption, "server password settings");
        self.encryption = Some(encryption);
        Ok(encryption)
    }
}

impl Logins for PgLogins {
    type Session = PgSession;

    async fn connect(&self, creds: &Credentials, timeout: Duration) -> Result<PgSession, ConnectError> {
        let conn = connect(creds, timeout, APPLICATION_NAME).await?;
        Ok(PgSession { conn, encryption: None })
    }
}

impl Session for PgSession {
    async fn set_password(&mut self, role: &str, password: &SecretString) -> Result<(), StatementError> {
        let encryption = self.encryption().await?;
        self.conn
            .client
            .batch_execute(alter_password_sql(role, password, encryption).expose_secret())
            .await
            .map_err(|e| StatementError::from_pg(&e))
    }

    async fn create_or_set_password(
        &mut self,
        role: &str,
        member_of: &str,
        password: &SecretString,
    ) -> Result<RoleChange, StatementError> {
        let pg = |e: tokio_postgres::Error| StatementError::from_pg(&e);
        let encryption = self.encryption().await?;
        let tx = self.conn.client.transaction().await.map_err(pg)?;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(pg)?
            .is_some();
        if exists {
            tx.batch_execute(alter_password_sql(role, password, encryption).expose_secret())
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            return Ok(RoleChange::PasswordSet);
        }
        let created = tx
            .batch_execute(create_role_sql(role, member_of, password, encryption).expose_secret())
            .await;
        match created {
            Ok(()) => {
                tx.commit().await.map_err(pg)?;
                Ok(RoleChange::Created)
            }
            // Another invocation created it between our check and our CREATE: the transaction
            // is aborted, so set the password on its own.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
                drop(tx);
                self.set_password(role, password).await?;
                Ok(RoleChange::PasswordSet)
            }
            Err(e) => Err(pg(e)),
        }
    }

    async fn probe(&mut self, query: &str) -> Result<(), StatementError> {
        let pg = |e: tokio_postgres::Error| StatementError::from_pg(&e);
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
        let create = create_role_sql("app_clone", "app", &password, scram);
        let create = create.expose_secret();
        assert!(create.starts_with("CREATE ROLE \"app_clone\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(create.ends_with("; GRANT \"app\" TO \"app_clone\""), "{create}");
        assert!(!create.contains("DROP ROLE"));
        let iterations = create_role_sql(
            "app_clone",
            "app",
            &password,
            PasswordEncryption::ScramSha256 { iterations: 9000 },
        );
        assert!(iterations.expose_secret().contains("'SCRAM-SHA-256$9000:"));
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
