//! What a pending version of a secret may name, written once for both functions: the rotation
//! function checks it in setSecret before it changes a password (the confused-deputy guard of
//! AWS's templates), and the items API before it logs in with `AWSPENDING` after `AWSCURRENT` was
//! refused. A pending version must name the same host, port and database as the current one, and
//! the user a rotation may change: the current user (single user) or its alternate (alternating
//! users, `user` ⇄ `user_clone`).

use crate::endpoint::Endpoint;
use std::fmt;

/// Postgres truncates identifiers longer than this many *bytes* (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// What alternating-users rotation appends to the user's name for its twin.
pub const CLONE_SUFFIX: &str = "_clone";

/// `<user>_clone` would not fit in a Postgres identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot make the alternate user of {user}: {user}_clone would be {bytes} bytes and Postgres names are limited to 63 bytes; shorten the user name or use single-user rotation"
)]
pub struct CloneNameTooLong {
    /// The current user.
    pub user: String,
    /// Byte length of the would-be clone name.
    pub bytes: usize,
}

/// `app` → `app_clone`, `app_clone` → `app`, as AWS's multi-user template names them.
///
/// # Errors
/// [`CloneNameTooLong`] when `user_clone` exceeds 63 bytes: Postgres would silently truncate it,
/// and a rotation would create or alter a different role than the secret names.
pub fn alternate_username(user: &str) -> Result<String, CloneNameTooLong> {
    if let Some(base) = user.strip_suffix(CLONE_SUFFIX)
        && !base.is_empty()
    {
        return Ok(base.to_owned());
    }
    let clone = format!("{user}{CLONE_SUFFIX}");
    if clone.len() > MAX_IDENTIFIER_BYTES {
        return Err(CloneNameTooLong {
            user: user.to_owned(),
            bytes: clone.len(),
        });
    }
    Ok(clone)
}

/// The users a pending version may name when the strategy is not known (a reader of the secret):
/// the current user and, when it fits, its alternate.
pub fn users_a_rotation_may_set(current_user: &str) -> Vec<String> {
    let mut users = vec![current_user.to_owned()];
    users.extend(alternate_username(current_user).ok());
    users
}

/// Where a version logs in.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// User.
    pub user: &'a str,
    /// Host and port, resolved (the secret's, else the RDS API's).
    pub endpoint: &'a Endpoint,
    /// Database.
    pub dbname: &'a str,
}

impl fmt::Display for Login<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}/{}", self.user, self.endpoint, self.dbname)
    }
}

/// Why a pending version is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingMismatch {
    /// It names a user no rotation of the current one may change.
    #[error("AWSPENDING names user {pending}, not {}", .expected.join(" or "))]
    User {
        /// The pending version's user.
        pending: String,
        /// The users it may name.
        expected: Vec<String>,
    },
    /// It names another host, port or database. `pending` and `current` are `host:port`, with
    /// `/dbname` when only the database differs.
    #[error("AWSPENDING names {pending}, not {current}")]
    Database {
        /// Where the pending version points.
        pending: String,
        /// Where the current version points.
        current: String,
    },
}

/// The user check alone (a caller may make it before resolving endpoints).
///
/// # Errors
/// [`PendingMismatch::User`].
pub fn check_pending_user(pending_user: &str, expected: &[String]) -> Result<(), PendingMismatch> {
    if expected.iter().any(|u| u == pending_user) {
        return Ok(());
    }
    Err(PendingMismatch::User {
        pending: pending_user.to_owned(),
        expected: expected.to_vec(),
    })
}

/// The host, port and database check alone.
///
/// # Errors
/// [`PendingMismatch::Database`].
pub fn check_pending_database(current: &Login<'_>, pending: &Login<'_>) -> Result<(), PendingMismatch> {
    if current.endpoint != pending.endpoint {
        return Err(PendingMismatch::Database {
            pending: pending.endpoint.to_string(),
            current: current.endpoint.to_string(),
        });
    }
    if current.dbname != pending.dbname {
        return Err(PendingMismatch::Database {
            pending: format!("{}/{}", pending.endpoint, pending.dbname),
            current: format!("{}/{}", current.endpoint, current.dbname),
        });
    }
    Ok(())
}

/// Both checks: `pending` must name one of `expected_users` and `current`'s host, port and database.
///
/// # Errors
/// The first [`PendingMismatch`].
pub fn check_pending(
    current: &Login<'_>,
    pending: &Login<'_>,
    expected_users: &[String],
) -> Result<(), PendingMismatch> {
    check_pending_user(pending.user, expected_users)?;
    check_pending_database(current, pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_username_switches_both_ways_within_63_bytes() {
        assert_eq!(alternate_username("app").unwrap(), "app_clone");
        assert_eq!(alternate_username("app_clone").unwrap(), "app");
        assert_eq!(alternate_username("_clone").unwrap(), "_clone_clone");
        assert_eq!(alternate_username(&"u".repeat(57)).unwrap().len(), 63);
        // 29 characters but 58 bytes: counting characters would accept a name Postgres truncates.
        let err = alternate_username(&"é".repeat(29)).unwrap_err();
        assert_eq!(err.bytes, 64);
        assert!(err.to_string().contains("63 bytes"), "{err}");
        assert_eq!(users_a_rotation_may_set("app"), ["app", "app_clone"]);
        assert_eq!(users_a_rotation_may_set(&"u".repeat(60)), ["u".repeat(60)]);
    }

    #[test]
    fn pending_must_name_the_same_database_and_a_user_the_rotation_may_change() {
        let here = Endpoint {
            host: "db.internal".into(),
            port: 5432,
        };
        let elsewhere = Endpoint {
            host: "attacker.example".into(),
            port: 5432,
        };
        let other_port = Endpoint {
            host: "db.internal".into(),
            port: 6432,
        };
        let login = |user, endpoint, dbname| Login { user, endpoint, dbname };
        let current = login("app", &here, "items");
        let users = users_a_rotation_may_set("app");
        assert_eq!(check_pending(&current, &login("app", &here, "items"), &users), Ok(()));
        assert_eq!(
            check_pending(&current, &login("app_clone", &here, "items"), &users),
            Ok(())
        );
        for (pending, needle) in [
            (login("admin", &here, "items"), "user admin, not app or app_clone"),
            (
                login("app", &elsewhere, "items"),
                "attacker.example:5432, not db.internal:5432",
            ),
            (
                login("app", &other_port, "items"),
                "db.internal:6432, not db.internal:5432",
            ),
            (
                login("app", &here, "postgres"),
                "db.internal:5432/postgres, not db.internal:5432/items",
            ),
        ] {
            let err = check_pending(&current, &pending, &users).unwrap_err();
            assert!(err.to_string().contains(needle), "{pending}: {err}");
        }
    }
}
