//! Which user a rotation changes: the secret's own user (single user) or the other of a pair of
//! users that take turns (alternating users, `user` ⇄ `user_clone`).

use crate::error::Error;
// The rule itself lives in db-credentials, beside the guard the items API applies to AWSPENDING.
pub use db_credentials::pending::{CLONE_SUFFIX, MAX_IDENTIFIER_BYTES};
use std::{fmt, str::FromStr};

/// The rotation strategy (`ROTATION_STRATEGY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The user changes its own password. Between setSecret and finishSecret the old password no
    /// longer works, which clients ride out by retrying with `AWSPENDING`.
    #[default]
    SingleUser,
    /// A privileged user (the `masterarn` secret) sets the password of the *other* user of the
    /// pair, so the current credentials keep working throughout.
    AlternatingUsers,
}

impl Strategy {
    /// The name as written in `ROTATION_STRATEGY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleUser => "single-user",
            Self::AlternatingUsers => "alternating-users",
        }
    }

    /// The user the pending version must name, given the current one.
    ///
    /// # Errors
    /// [`Error::CloneNameTooLong`] when the alternate name would not fit in a Postgres identifier.
    pub fn pending_username(self, current: &str) -> Result<String, Error> {
        match self {
            Self::SingleUser => Ok(current.to_owned()),
            Self::AlternatingUsers => alternate_username(current),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "single-user" | "single_user" | "singleuser" => Ok(Self::SingleUser),
            "alternating-users" | "alternating_users" | "alternatingusers" | "multi-user" => Ok(Self::AlternatingUsers),
            _ => Err(()),
        }
    }
}

/// `app` → `app_clone`, `app_clone` → `app`, as AWS's multi-user template names them
/// ([`db_credentials::alternate_username`]).
///
/// # Errors
/// [`Error::CloneNameTooLong`] when `user_clone` exceeds 63 bytes: Postgres would silently
/// truncate it and the rotation would create or alter a different role than the secret names.
pub fn alternate_username(user: &str) -> Result<String, Error> {
    db_credentials::alternate_username(user).map_err(|e| Error::CloneNameTooLong {
        user: e.user,
        bytes: e.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_username_switches_both_ways() {
        assert_eq!(alternate_username("app").unwrap(), "app_clone");
        assert_eq!(alternate_username("app_clone").unwrap(), "app");
        assert_eq!(alternate_username("a\"b").unwrap(), "a\"b_clone");
        assert_eq!(
            alternate_username("_clone").unwrap(),
            "_clone_clone",
            "a bare suffix is a name, not a clone"
        );
    }

    #[test]
    fn clone_name_over_63_bytes_is_refused() {
        let fits = "u".repeat(57);
        assert_eq!(alternate_username(&fits).unwrap().len(), 63);
        let err = alternate_username(&"u".repeat(58)).unwrap_err();
        assert!(err.to_string().contains("64 bytes"), "{err}");
        assert_eq!(alternate_username(&"é".repeat(28)).unwrap().len(), 62);
        // 29 characters but 58 bytes: counting characters, as AWS's template does, would accept it.
        let too_long = "é".repeat(29);
        assert!(too_long.chars().count() + CLONE_SUFFIX.len() < 63);
        assert!(matches!(
            alternate_username(&too_long),
            Err(Error::CloneNameTooLong { bytes: 64, .. })
        ));
    }

    #[test]
    fn strategy_names_parse() {
        assert_eq!("single-user".parse(), Ok(Strategy::SingleUser));
        assert_eq!("Alternating-Users".parse(), Ok(Strategy::AlternatingUsers));
        assert!("both".parse::<Strategy>().is_err());
        assert_eq!(Strategy::default(), Strategy::SingleUser);
        assert_eq!(Strategy::AlternatingUsers.pending_username("app").unwrap(), "app_clone");
        assert_eq!(Strategy::SingleUser.pending_username("app").unwrap(), "app");
    }
}
