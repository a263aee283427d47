//! The database side of rotation: log in, set a password, create the alternate user, probe.
//!
//! Passwords are never sent to Postgres: the function computes the SCRAM-SHA-256 verifier itself
//! and sends that, so the plaintext cannot reach the server, its log (`log_statement=all`,
//! `log_min_error_statement`), pgaudit or `pg_stat_statements`. `ALTER ROLE … PASSWORD $1` cannot
//! be bound as a parameter, so the statement is built from the escaped identifier and the escaped
//! verifier, neither of which can contain anything the server would interpret.

use db_credentials::{ConnectError, Credentials, connect, server_message};
use postgres_protocol::{
    escape::{escape_identifier, escape_literal},
    password::scram_sha_256,
};
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

/// The SCRAM-SHA-256 verifier of `password` (fresh salt each time), as a SQL string literal.
pub fn verifier_literal(password: &SecretString) -> String {
    escape_literal(&scram_sha_256(password.expose_secret().as_bytes()))
}

/// `ALTER ROLE "<role>" WITH PASSWORD '<verifier>'`.
pub fn alter_password_sql(role: &str, password: &SecretString) -> String {
    format!(
        "ALTER ROLE {} WITH PASSWORD {}",
        escape_identifier(role),
        verifier_literal(password)
    )
}

/// `CREATE ROLE "<role>" WITH LOGIN PASSWORD '<verifier>'; GRANT "<member_of>" TO "<role>"`.
pub fn create_role_sql(role: &str, member_of: &str, password: &SecretString) -> String {
    format!(
        "CREATE ROLE {role} WITH LOGIN PASSWORD {}; GRANT {} TO {role}",
        verifier_literal(password),
        escape_identifier(member_of),
        role = escape_identifier(role),
    )
}

/// [`Logins`] over tokio-postgres, through db-credentials' connect (TLS per design §6, one
/// timeout over TCP + TLS + authentication, classified errors).
#[derive(Debug, Clone, Default)]
pub struct PgLogins;

/// A tokio-postgres session.
#[derive(Debug)]
pub struct PgSession {
    conn: db_credentials::Connection,
}

impl Logins for PgLogins {
    type Session = PgSession;

    async fn connect(&self, creds: &Credentials, timeout: Duration) -> Result<PgSession, ConnectError> {
        let conn = connect(creds, timeout, APPLICATION_NAME).await?;
        Ok(PgSession { conn })
    }
}

impl Session for PgSession {
    async fn set_password(&mut self, role: &str, password: &SecretString) -> Result<(), StatementError> {
        self.conn
            .client
            .batch_execute(&alter_password_sql(role, password))
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
        let tx = self.conn.client.transaction().await.map_err(pg)?;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(pg)?
            .is_some();
        if exists {
            tx.batch_execute(&alter_password_sql(role, password))
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            return Ok(RoleChange::PasswordSet);
        }
        let created = tx.batch_execute(&create_role_sql(role, member_of, password)).await;
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
    fn statements_carry_a_quoted_role_and_a_verifier_never_the_password() {
        let password = SecretString::from("pa'ss\"; DROP ROLE x; -- $$ % é".to_owned());
        for role in ["app", "App", "my-user", "a\"b", "select"] {
            let sql = alter_password_sql(role, &password);
            assert!(sql.starts_with(&format!(
                "ALTER ROLE {} WITH PASSWORD 'SCRAM-SHA-256$4096:",
                escape_identifier(role)
            )));
            assert!(!sql.contains(password.expose_secret()), "{sql}");
            assert!(!sql.contains("DROP ROLE"), "{sql}");
        }
        assert!(alter_password_sql("a\"b", &password).starts_with("ALTER ROLE \"a\"\"b\" "));
        let create = create_role_sql("app_clone", "app", &password);
        assert!(create.starts_with("CREATE ROLE \"app_clone\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(create.ends_with("; GRANT \"app\" TO \"app_clone\""), "{create}");
        assert!(!create.contains("DROP ROLE"));
    }

    #[test]
    fn each_verifier_has_a_fresh_salt() {
        let password = SecretString::from("same".to_owned());
        assert_ne!(verifier_literal(&password), verifier_literal(&password));
    }
}
