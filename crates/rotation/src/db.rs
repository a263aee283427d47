//! The database side of rotation: log in, set a password, create the alternate user, probe.
//!
//! Passwords are never sent to Postgres: the function computes what the server stores itself (a
//! SCRAM-SHA-256 verifier with the server's iteration count, or an md5 hash on an md5 server:
//! [`crate::verifier`]) and sends that, so the plaintext cannot reach the server, its log
//! (`log_statement=all`, `log_min_error_statement`), pgaudit or `pg_stat_statements`. `ALTER ROLE
//! … PASSWORD $1` cannot be bound as a parameter, so the statement is built from the escaped
//! identifier and the escaped verifier, neither of which can contain anything the server would
//! interpret.
//!
//! Every statement the function sends is in this file (about 730 lines before its tests), on
//! purpose: they are what a security review of rotation reads, and they read best in one place.

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
    /// ([`StatementError::Unsafe`]) when it is a superuser or has rights `base` lacks;
    /// otherwise LOGIN, the membership and the role setting are re-applied where missing, and
    /// its password set. A clone another session creates meanwhile is treated as existing.
    fn ensure_clone(
        &mut self,
        clone: &str,
        base: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<RoleChange, StatementError>> + Send;

    /// The `Custom::DatabaseRole` resource, as the master logged into the application's
    /// database, in one transaction: `role` with LOGIN (created with `password` if missing; an
    /// existing one gets `password` only when `reset_password`), CONNECT on this database (PUBLIC's
    /// access to it revoked), its own schema named like it and owned by it, and, where an earlier
    /// version left an `items` table in `public` owned by someone else, what the API needs on it.
    /// Changes only what is missing: on a role that has all of it, nothing. An existing role that
    /// is a superuser, has CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, or is a member of
    /// `rds_superuser` is refused ([`StatementError::Unsafe`]).
    fn ensure_app_role(
        &mut self,
        role: &str,
        password: Option<&SecretString>,
        reset_password: bool,
    ) -> impl Future<Output = Result<AppRoleChange, StatementError>> + Send;

    /// Runs `query` in a transaction that is rolled back, so even a write probe changes nothing.
    fn probe(&mut self, query: &str) -> impl Future<Output = Result<(), StatementError>> + Send;

    /// Preflight: what setSecret would run, in a transaction that is rolled back. `clone_of`
    /// `Some(base)`: [`Self::ensure_clone`]'s statements for `role` as the alternate user of
    /// `base`; `None`: [`Self::set_password`] on `role`.
    fn rehearse_password_change(
        &mut self,
        role: &str,
        clone_of: Option<&str>,
        password: &SecretString,
    ) -> impl Future<Output = Result<(), StatementError>> + Send;

    /// Preflight: the server's settings that matter to a rotation.
    fn server_facts(&mut self) -> impl Future<Output = Result<crate::sessions::ServerFacts, StatementError>> + Send;

    /// Revoke: ends every other session whose user is `role` and, when `began_before` is given,
    /// that began before it; returns what was ended. Never any other user's session.
    fn end_sessions(
        &mut self,
        role: &str,
        began_before: Option<std::time::SystemTime>,
    ) -> impl Future<Output = Result<Vec<crate::sessions::EndedSession>, StatementError>> + Send;
}

/// What [`Session::ensure_app_role`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppRoleChange {
    /// The role did not exist and was created.
    pub created: bool,
    /// Each change made, as a phrase ("CONNECT on database items"); empty when nothing changed.
    pub changes: Vec<String>,
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
    /// An existing role has rights it must not have (a clone: rights its base role lacks; the
    /// application role: superuser, CREATEROLE, CREATEDB…); nothing was changed.
    #[error("the existing role {}", .reasons.join("; "))]
    Unsafe {
        /// Each right, as "is a superuser", "has CREATEDB", ….
        reasons: Vec<String>,
    },
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl StatementError {
    pub(crate) fn from_pg(e: &tokio_postgres::Error, on_role: &str) -> Self {
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
pub(crate) struct ServerSettings {
    pub(crate) encryption: PasswordEncryption,
    pub(crate) version_num: i32,
}

/// [`SETTINGS_QUERY`] plus the server's version, in one round trip.
const SESSION_SETTINGS: &str = "SELECT current_setting('password_encryption'), current_setting('scram_iterations', true), current_setting('server_version_num')::int";

/// Why one attempt at [`Session::ensure_clone`] did not finish.
pub(crate) enum Attempt {
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
    pub(crate) conn: db_credentials::Connection,
    /// The server's settings, read on first use.
    settings: Option<ServerSettings>,
}

impl PgSession {
    /// How this server stores passwords and its version, read once per session.
    pub(crate) async fn settings(&mut self) -> Result<ServerSettings, StatementError> {
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

    /// One transaction of [`Session::ensure_clone`]; rolled back instead of committed when
    /// `commit` is false (preflight's rehearsal, [`Session::rehearse_password_change`]).
    pub(crate) async fn try_ensure_clone(
        &mut self,
        clone: &str,
        base: &str,
        password: &SecretString,
        settings: ServerSettings,
        commit: bool,
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
            finish(tx, commit).await.map_err(on(clone))?;
            return Ok(RoleChange::Created);
        }
        let reasons = unsafe_clone_reasons(&facts, base);
        if !reasons.is_empty() {
            return Err(StatementError::Unsafe { reasons }.into());
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
        finish(tx, commit).await.map_err(on(clone))?;
        Ok(RoleChange::PasswordSet { repaired })
    }
}

/// Everything [`Session::ensure_app_role`] checks first: `$1` the role, `$2` the privilege that
/// lets the session `SET ROLE` to it (`SET` on 16+, `MEMBER` before). The role may not exist: its
/// columns are then NULL.
const APP_ROLE_FACTS: &str = "
SELECT r.oid AS role_oid, r.rolsuper, r.rolcanlogin,
  array_remove(ARRAY[
    CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
    CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
    CASE WHEN r.rolreplication THEN 'REPLICATION' END,
    CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END], NULL) AS attributes,
  coalesce(pg_has_role(r.oid, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser'), 'MEMBER'), false)
    AS in_rds_superuser,
  current_database()::text AS dbname,
  EXISTS (SELECT 1 FROM pg_catalog.pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
          WHERE d.datname = current_database() AND a.grantee = r.oid AND a.privilege_type = 'CONNECT') AS granted_connect,
  EXISTS (SELECT 1 FROM pg_catalog.pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
          WHERE d.datname = current_database() AND a.grantee = 0) AS public_on_database,
  EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = x.name) AS schema_exists,
  EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = x.name AND n.nspowner = r.oid) AS owns_schema,
  to_regclass('public.items') IS NOT NULL AS legacy_items
FROM (SELECT $1::text AS name) x LEFT JOIN pg_catalog.pg_roles r ON r.rolname = x.name";

/// What the role has on an `items` table an earlier version left in `public`.
const LEGACY_ITEMS: &str = "
SELECT c.relowner = r.oid AS owns,
  has_table_privilege(r.oid, c.oid, 'SELECT') AND has_table_privilege(r.oid, c.oid, 'INSERT')
    AND has_table_privilege(r.oid, c.oid, 'UPDATE') AND has_table_privilege(r.oid, c.oid, 'DELETE') AS dml,
  has_schema_privilege(r.oid, c.relnamespace, 'USAGE') AS usage
FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
WHERE c.oid = 'public.items'::regclass AND r.rolname = $1";

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

impl PgSession {
    /// One transaction of [`Session::ensure_app_role`].
    async fn try_ensure_app_role(
        &mut self,
        role: &str,
        password: Option<&SecretString>,
        reset_password: bool,
        settings: ServerSettings,
    ) -> Result<AppRoleChange, Attempt> {
        let on = |r: &str| {
            let r = r.to_owned();
            move |e: tokio_postgres::Error| Attempt::Failed(StatementError::from_pg(&e, &r))
        };
        let modern = settings.version_num >= 160_000;
        let set_privilege = if modern { "SET" } else { "MEMBER" };
        let tx = self.conn.client.transaction().await.map_err(on(role))?;
        let facts = tx.query_one(APP_ROLE_FACTS, &[&role]).await.map_err(on(role))?;
        let dbname: String = facts.get("dbname");
        let (quoted, database) = (escape_identifier(role), escape_identifier(&dbname));
        let mut change = AppRoleChange::default();
        if facts.get::<_, Option<u32>>("role_oid").is_none() {
            let password = password.ok_or_else(|| {
                StatementError::Failed(format!(
                    "role {role} does not exist, and the secret's AWSCURRENT is for another user, so there is no password to create it with"
                ))
            })?;
            match tx
                .batch_execute(create_role_sql(role, password, settings.encryption).expose_secret())
                .await
            {
                Ok(()) => {}
                Err(e) if matches!(e.code(), Some(c) if *c == SqlState::DUPLICATE_OBJECT || *c == SqlState::UNIQUE_VIOLATION) =>
                {
                    return Err(Attempt::Raced);
                }
                Err(e) => return Err(on(role)(e)),
            }
            change.created = true;
            change.changes.push(format!("created role {role} with LOGIN"));
        } else {
            let mut reasons = Vec::new();
            if facts.get::<_, Option<bool>>("rolsuper").unwrap_or(false) {
                reasons.push("is a superuser".to_owned());
            }
            for attribute in facts.get::<_, Option<Vec<String>>>("attributes").unwrap_or_default() {
                reasons.push(format!("has {attribute}"));
            }
            if facts.get::<_, bool>("in_rds_superuser") {
                reasons.push("is a member of rds_superuser".to_owned());
            }
            if !reasons.is_empty() {
                return Err(StatementError::Unsafe { reasons }.into());
            }
            if !facts.get::<_, Option<bool>>("rolcanlogin").unwrap_or(false) {
                tx.batch_execute(&format!("ALTER ROLE {quoted} LOGIN"))
                    .await
                    .map_err(on(role))?;
                change.changes.push("LOGIN".to_owned());
            }
            if let (true, Some(password)) = (reset_password, password) {
                tx.batch_execute(alter_password_sql(role, password, settings.encryption).expose_secret())
                    .await
                    .map_err(on(role))?;
                change
                    .changes
                    .push("its password set to the secret's AWSCURRENT, which it did not accept".to_owned());
            }
        }
        if facts.get::<_, bool>("public_on_database") {
            // Other roles reach this database only through explicit grants (the master owns it).
            tx.batch_execute(&format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC"))
                .await
                .map_err(on(role))?;
            change
                .changes
                .push(format!("PUBLIC's CONNECT and TEMPORARY on database {dbname} revoked"));
        }
        if !facts.get::<_, bool>("granted_connect") {
            tx.batch_execute(&format!("GRANT CONNECT ON DATABASE {database} TO {quoted}"))
                .await
                .map_err(on(role))?;
            change.changes.push(format!("CONNECT on database {dbname}"));
        }
        // GRANT by a role without the grant option only warns: check the outcome.
        let connects: bool = tx
            .query_one(
                "SELECT has_database_privilege($1, current_database(), 'CONNECT')",
                &[&role],
            )
            .await
            .map_err(on(role))?
            .get(0);
        if !connects {
            return Err(StatementError::Failed(format!(
                "the master may not grant CONNECT on database {dbname} (it neither owns it nor holds the grant option): as its owner, run GRANT CONNECT ON DATABASE {database} TO {quoted}"
            ))
            .into());
        }
        match (
            facts.get::<_, bool>("schema_exists"),
            facts.get::<_, bool>("owns_schema"),
        ) {
            (true, true) => {}
            (true, false) => {
                return Err(StatementError::Failed(format!(
                    "schema {role} exists in database {dbname} and belongs to another role; the application role must own its schema: ALTER SCHEMA {quoted} OWNER TO {quoted}, or drop it"
                ))
                .into());
            }
            (false, _) => {
                // AUTHORIZATION another role needs the right to become it: SET (16+) or
                // membership (15). A master that created the role holds only ADMIN on 16+, so
                // it takes SET for this statement and gives it back.
                let can_set: bool = tx
                    .query_one("SELECT pg_has_role(current_user, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1), $2)", &[&role, &set_privilege])
                    .await
                    .map_err(on(role))?
                    .get(0);
                if !can_set {
                    let options = if modern { " WITH INHERIT FALSE, SET TRUE" } else { "" };
                    tx.batch_execute(&format!("GRANT {quoted} TO CURRENT_USER{options}"))
                        .await
                        .map_err(on(role))?;
                }
                tx.batch_execute(&format!("CREATE SCHEMA {quoted} AUTHORIZATION {quoted}"))
                    .await
                    .map_err(on(role))?;
                if !can_set {
                    tx.batch_execute(&format!("REVOKE {quoted} FROM CURRENT_USER"))
                        .await
                        .map_err(on(role))?;
                }
                change.changes.push(format!("schema {role} owned by {role}"));
            }
        }
        if facts.get::<_, bool>("legacy_items") {
            legacy_items_access(&tx, role, &quoted, &mut change).await?;
        }
        tx.commit().await.map_err(on(role))?;
        Ok(change)
    }
}

/// An `items` table in `public` that an earlier version created as the master: the role gets what
/// the API does with it (read, insert, update, delete; identity columns need nothing more), and
/// the check after the grant catches a master that did not own it.
async fn legacy_items_access(
    tx: &tokio_postgres::Transaction<'_>,
    role: &str,
    quoted: &str,
    change: &mut AppRoleChange,
) -> Result<(), Attempt> {
    let on = |e: tokio_postgres::Error| Attempt::Failed(StatementError::from_pg(&e, role));
    let row = tx.query_one(LEGACY_ITEMS, &[&role]).await.map_err(on)?;
    if row.get::<_, bool>("owns") {
        return Ok(());
    }
    if !row.get::<_, bool>("usage") {
        tx.batch_execute(&format!("GRANT USAGE ON SCHEMA public TO {quoted}"))
            .await
            .map_err(on)?;
        change.changes.push("USAGE on schema public".to_owned());
    }
    if !row.get::<_, bool>("dml") {
        tx.batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.items TO {quoted}"
        ))
        .await
        .map_err(on)?;
        change
            .changes
            .push("SELECT, INSERT, UPDATE, DELETE on public.items (made by an earlier version)".to_owned());
    }
    let row = tx.query_one(LEGACY_ITEMS, &[&role]).await.map_err(on)?;
    if !(row.get::<_, bool>("dml") && row.get::<_, bool>("usage")) {
        return Err(StatementError::Failed(format!(
            "public.items exists (made by an earlier version) but the master may not grant {role} access to it: as its owner, run GRANT USAGE ON SCHEMA public TO {quoted}; GRANT SELECT, INSERT, UPDATE, DELETE ON public.items TO {quoted}"
        ))
        .into());
    }
    Ok(())
}

/// Commits, or rolls back a rehearsal.
async fn finish(tx: tokio_postgres::Transaction<'_>, commit: bool) -> Result<(), tokio_postgres::Error> {
    if commit { tx.commit().await } else { tx.rollback().await }
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
        match self.try_ensure_clone(clone, base, password, settings, true).await {
            Ok(change) => Ok(change),
            Err(Attempt::Failed(e)) => Err(e),
            // The transaction is rolled back; the role now exists, so the second attempt checks
            // it like any existing clone.
            Err(Attempt::Raced) => {
                tracing::info!("the alternate user was created concurrently; checking it");
                match self.try_ensure_clone(clone, base, password, settings, true).await {
                    Ok(change) => Ok(change),
                    Err(Attempt::Failed(e)) => Err(e),
                    Err(Attempt::Raced) => Err(StatementError::Failed(format!(
                        "role {clone} was reported as created concurrently, but is not visible"
                    ))),
                }
            }
        }
    }

    async fn ensure_app_role(
        &mut self,
        role: &str,
        password: Option<&SecretString>,
        reset_password: bool,
    ) -> Result<AppRoleChange, StatementError> {
        let settings = self.settings().await?;
        for _ in 0..2 {
            match self.try_ensure_app_role(role, password, reset_password, settings).await {
                Ok(change) => return Ok(change),
                Err(Attempt::Failed(e)) => return Err(e),
                // Another invocation made it meanwhile: check it like any existing role.
                Err(Attempt::Raced) => tracing::info!("the role was created concurrently; checking it"),
            }
        }
        Err(StatementError::Failed(format!(
            "role {role} was reported as created concurrently, but is not visible"
        )))
    }

    async fn rehearse_password_change(
        &mut self,
        role: &str,
        clone_of: Option<&str>,
        password: &SecretString,
    ) -> Result<(), StatementError> {
        crate::sessions::rehearse(self, role, clone_of, password).await
    }

    async fn server_facts(&mut self) -> Result<crate::sessions::ServerFacts, StatementError> {
        crate::sessions::server_facts(self).await
    }

    async fn end_sessions(
        &mut self,
        role: &str,
        began_before: Option<std::time::SystemTime>,
    ) -> Result<Vec<crate::sessions::EndedSession>, StatementError> {
        crate::sessions::end_sessions(self, role, began_before).await
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
