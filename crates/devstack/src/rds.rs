//! An RDS-like master user: the login RDS gives the customer, which is *not* a superuser.
//!
//! What is modelled, and from where:
//! * The master's attributes are those of AWS's "Understanding the rds_superuser role" (RDS and
//!   Aurora PostgreSQL user guides): `CREATE ROLE postgres WITH LOGIN NOSUPERUSER INHERIT CREATEDB
//!   CREATEROLE NOREPLICATION VALID UNTIL 'infinity'`, and a member of `rds_superuser`.
//! * `rds_superuser` (NOLOGIN) lets its members see every session in `pg_stat_activity` and end
//!   them with `pg_terminate_backend`/`pg_cancel_backend` (same page): modelled by granting it
//!   `pg_monitor` and `pg_signal_backend`. Its members may grant `rds_superuser`, `rds_password`
//!   and `rds_replication` to other roles (same page): modelled by those roles existing and being
//!   granted to the master `WITH ADMIN OPTION`.
//! * The superuser RDS keeps for itself (`rdsadmin`) is played by the cluster's bootstrap
//!   superuser `postgres`, which the customer never logs in as; so the master here needs another
//!   name than RDS's default `postgres` (see [`DEFAULT_MASTER`]).
//! * Since Postgres 16, `CREATEROLE` reaches only roles the acting role has `ADMIN OPTION` on
//!   (release notes of 16, "Restrict the privileges of CREATEROLE"); a role it creates gets that
//!   option implicitly (`createrole_self_grant` left empty, as RDS leaves it: ADMIN only, neither
//!   INHERIT nor SET). Stock Postgres enforces this, so roles the master creates
//!   ([`Postgres::create_role_as`]) are within its reach on 16+, and roles someone else created
//!   ([`Postgres::create_role`], by the bootstrap superuser: a role restored from a dump, or made
//!   by another admin) are not, until `GRANT <role> TO <master> WITH ADMIN OPTION`.
//!   A maintainer of an RDS integration reports that on RDS 16+ a member of `rds_superuser` can
//!   still grant roles it has no ADMIN OPTION on (gravitational/teleport PR #48897, "RDS is not
//!   consistent with OSS postgres"): RDS may be more lenient than this model, never stricter, so
//!   code that passes here passes there.

use crate::{DevstackError, Postgres};
use postgres_protocol::escape::escape_identifier;

/// The name of the master that [`crate::Stack::master`] creates.
pub const DEFAULT_MASTER: &str = "rds_master";

/// The environment variable choosing which master the tests use: `superuser` (the default) or
/// `rds`.
pub const MASTER_ENV: &str = "DEVSTACK_MASTER";

/// Which login plays the master user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MasterKind {
    /// The cluster's superuser `postgres` (a self-managed server).
    #[default]
    Superuser,
    /// An RDS-like master: `CREATEROLE`, `CREATEDB`, a member of `rds_superuser`, not superuser.
    RdsLike,
}

impl MasterKind {
    /// What `DEVSTACK_MASTER` says (`superuser` when unset).
    ///
    /// # Errors
    /// When it holds anything but `superuser` or `rds`.
    pub fn from_env() -> Result<Self, DevstackError> {
        match std::env::var(MASTER_ENV).as_deref() {
            Err(_) | Ok("" | "superuser") => Ok(Self::Superuser),
            Ok("rds") => Ok(Self::RdsLike),
            Ok(_) => Err(DevstackError::Missing {
                tool: "a valid DEVSTACK_MASTER",
                install: "set DEVSTACK_MASTER to superuser or rds",
            }),
        }
    }
}

/// A master login: its name and password (test material only).
#[derive(Debug, Clone)]
pub struct MasterLogin {
    /// Which kind of master.
    pub kind: MasterKind,
    /// Login name.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl Postgres {
    /// Creates the roles RDS has on every instance (`rds_superuser`, `rds_password`,
    /// `rds_replication`, if missing) and an RDS-like master `username` with `password` (stored
    /// as a SCRAM verifier, or an md5 hash on an md5 server). See the module's documentation for
    /// what is modelled.
    ///
    /// # Errors
    /// When a statement fails (for instance, the role exists).
    pub async fn create_rds_master(&self, username: &str, password: &str) -> Result<MasterLogin, DevstackError> {
        crate::evidence::record_secret(password);
        let master = escape_identifier(username);
        // One implicit transaction; the advisory lock makes concurrent callers (tests making
        // masters of their own beside the shared one) take turns at creating RDS's roles.
        let sql = format!(
            "SELECT pg_advisory_xact_lock(727022);
             DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_superuser') THEN
                 CREATE ROLE rds_superuser NOLOGIN;
                 GRANT pg_monitor, pg_signal_backend TO rds_superuser;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_password') THEN
                 CREATE ROLE rds_password NOLOGIN;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_replication') THEN
                 CREATE ROLE rds_replication NOLOGIN;
               END IF;
             END $$;
             CREATE ROLE {master} WITH LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION
               VALID UNTIL 'infinity' PASSWORD {password};
             GRANT rds_superuser, rds_password, rds_replication TO {master} WITH ADMIN OPTION;",
            password = self.password_literal(username, password).await?
        );
        self.admin()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(e.to_string()))?;
        Ok(MasterLogin {
            kind: MasterKind::RdsLike,
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Creates a login role as `creator` (for instance an RDS-like master), so that on Postgres
    /// 16+ the creator holds ADMIN OPTION on it, as it would on RDS had it created the role.
    ///
    /// # Errors
    /// When `creator` may not create roles, or the statement fails.
    pub async fn create_role_as(&self, creator: &str, role: &str, password: &str) -> Result<(), DevstackError> {
        crate::evidence::record_secret(password);
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            escape_identifier(role),
            self.password_literal(role, password).await?
        );
        self.connect_as(creator, "postgres")
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(e.to_string()))
    }
}
