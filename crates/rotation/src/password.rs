//! How new passwords are asked for: GetRandomPassword with the knobs of AWS's rotation templates,
//! read from the same environment variables with the same defaults.

use crate::config::{ConfigError, Vars};
use db_credentials::config::{bool_var, number_var};

/// Default `PASSWORD_LENGTH`.
pub const DEFAULT_LENGTH: u32 = 32;
/// Default `EXCLUDE_CHARACTERS`: `:` breaks `.pgpass`, `/ @` break URLs, quotes and backslash break
/// naive quoting in clients.
pub const DEFAULT_EXCLUDE_CHARACTERS: &str = ":/@\"'\\";

/// GetRandomPassword's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// `PASSWORD_LENGTH` (1–4096; default 32).
    pub length: u32,
    /// `EXCLUDE_CHARACTERS` (default `:/@"'\`).
    pub exclude_characters: String,
    /// `EXCLUDE_NUMBERS`.
    pub exclude_numbers: bool,
    /// `EXCLUDE_PUNCTUATION`.
    pub exclude_punctuation: bool,
    /// `EXCLUDE_UPPERCASE`.
    pub exclude_uppercase: bool,
    /// `EXCLUDE_LOWERCASE`.
    pub exclude_lowercase: bool,
    /// `REQUIRE_EACH_INCLUDED_TYPE` (default true).
    pub require_each_included_type: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: DEFAULT_LENGTH,
            exclude_characters: DEFAULT_EXCLUDE_CHARACTERS.to_owned(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            require_each_included_type: true,
        }
    }
}

/// Every variable this module reads.
pub const VARS: [&str; 7] = [
    "PASSWORD_LENGTH",
    "EXCLUDE_CHARACTERS",
    "EXCLUDE_NUMBERS",
    "EXCLUDE_PUNCTUATION",
    "EXCLUDE_UPPERCASE",
    "EXCLUDE_LOWERCASE",
    "REQUIRE_EACH_INCLUDED_TYPE",
];

impl PasswordPolicy {
    /// Reads the knobs. An unset `EXCLUDE_CHARACTERS` means the default set; set to the empty
    /// string it excludes nothing, as in AWS's templates.
    ///
    /// # Errors
    /// [`ConfigError`] for a length out of range, a boolean that is not one, or a policy
    /// that excludes every character class.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let flag = |var: &'static str, default: bool| bool_var(vars, var, default);
        let length = number_var(vars, "PASSWORD_LENGTH", "characters", 1, 4096)?
            .map_or(DEFAULT_LENGTH, |n| u32::try_from(n).unwrap_or(DEFAULT_LENGTH));
        let policy = Self {
            length,
            exclude_characters: vars
                .get("EXCLUDE_CHARACTERS")
                .cloned()
                .unwrap_or_else(|| DEFAULT_EXCLUDE_CHARACTERS.to_owned()),
            exclude_numbers: flag("EXCLUDE_NUMBERS", false)?,
            exclude_punctuation: flag("EXCLUDE_PUNCTUATION", false)?,
            exclude_uppercase: flag("EXCLUDE_UPPERCASE", false)?,
            exclude_lowercase: flag("EXCLUDE_LOWERCASE", false)?,
            require_each_included_type: flag("REQUIRE_EACH_INCLUDED_TYPE", true)?,
        };
        if policy.exclude_numbers && policy.exclude_punctuation && policy.exclude_uppercase && policy.exclude_lowercase
        {
            return Err(ConfigError::invalid(
                "EXCLUDE_NUMBERS",
                "at least one character class left (numbers, punctuation, upper or lower case)",
                "every class excluded",
            ));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_match_aws_templates() {
        let p = PasswordPolicy::from_vars(&Vars::new()).unwrap();
        assert_eq!(p, PasswordPolicy::default());
        assert_eq!(p.length, 32);
        assert_eq!(p.exclude_characters, ":/@\"'\\");
        assert!(p.require_each_included_type);
        assert!(!p.exclude_numbers && !p.exclude_punctuation && !p.exclude_uppercase && !p.exclude_lowercase);
    }

    #[test]
    fn booleans_parse_like_aws() {
        for (v, want) in [("TRUE", true), ("y", true), ("", false), ("no", false)] {
            let p = PasswordPolicy::from_vars(&vars(&[("EXCLUDE_NUMBERS", v)])).unwrap();
            assert_eq!(p.exclude_numbers, want, "{v:?}");
        }
        let err = PasswordPolicy::from_vars(&vars(&[("EXCLUDE_NUMBERS", "treu")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("EXCLUDE_NUMBERS") && err.contains("treu"), "{err}");
    }

    #[test]
    fn knobs_are_read() {
        let p = PasswordPolicy::from_vars(&vars(&[
            ("PASSWORD_LENGTH", "48"),
            ("EXCLUDE_CHARACTERS", ""),
            ("EXCLUDE_PUNCTUATION", "yes"),
            ("REQUIRE_EACH_INCLUDED_TYPE", "false"),
        ]))
        .unwrap();
        assert_eq!(p.length, 48);
        assert_eq!(p.exclude_characters, "");
        assert!(p.exclude_punctuation && !p.require_each_included_type);
    }

    #[test]
    fn bad_length_and_empty_alphabet_are_refused() {
        for bad in ["0", "4097", "-1", "x"] {
            assert!(
                PasswordPolicy::from_vars(&vars(&[("PASSWORD_LENGTH", bad)])).is_err(),
                "{bad}"
            );
        }
        let all = vars(&[
            ("EXCLUDE_NUMBERS", "1"),
            ("EXCLUDE_PUNCTUATION", "1"),
            ("EXCLUDE_UPPERCASE", "1"),
            ("EXCLUDE_LOWERCASE", "1"),
        ]);
        assert!(PasswordPolicy::from_vars(&all).is_err());
    }
}
