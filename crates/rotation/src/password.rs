//! How new passwords are asked for: GetRandomPassword with the knobs of AWS's rotation templates,
//! read from the same environment variables with the same defaults.

use db_credentials::{
    ConfigError,
    config::{Vars, bool_var, number_var},
    secrets_manager::PasswordPolicy,
};

/// Default `PASSWORD_LENGTH`.
pub const DEFAULT_LENGTH: u32 = PasswordPolicy::DEFAULT_LENGTH;
/// Default `EXCLUDE_CHARACTERS`.
pub const DEFAULT_EXCLUDE_CHARACTERS: &str = PasswordPolicy::DEFAULT_EXCLUDE_CHARACTERS;

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

/// Reads the knobs. An unset `EXCLUDE_CHARACTERS` means the default set; set to the empty string
/// it excludes nothing, as in AWS's templates.
///
/// # Errors
/// [`ConfigError`] for a length out of range, a boolean that is not one, or a policy that excludes
/// every character class.
pub fn policy_from_vars(vars: &Vars) -> Result<PasswordPolicy, ConfigError> {
    let flag = |var: &'static str, default: bool| bool_var(vars, var, default);
    let length = number_var(vars, "PASSWORD_LENGTH", "characters", 1, 4096)?
        .map_or(DEFAULT_LENGTH, |n| u32::try_from(n).unwrap_or(DEFAULT_LENGTH));
    let policy = PasswordPolicy {
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
    if policy.exclude_numbers && policy.exclude_punctuation && policy.exclude_uppercase && policy.exclude_lowercase {
        return Err(ConfigError::invalid(
            "EXCLUDE_NUMBERS",
            "at least one character class left (numbers, punctuation, upper or lower case)",
            "every class excluded",
        ));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_match_aws_templates() {
        let p = policy_from_vars(&Vars::new()).unwrap();
        assert_eq!(p, PasswordPolicy::default());
        assert_eq!(p.length, 32);
        assert_eq!(p.exclude_characters, ":/@\"'\\");
        assert!(p.require_each_included_type);
        assert!(!p.exclude_numbers && !p.exclude_punctuation && !p.exclude_uppercase && !p.exclude_lowercase);
    }

    #[test]
    fn booleans_parse_like_aws() {
        for (v, want) in [("TRUE", true), ("y", true), ("", false), ("no", false)] {
            let p = policy_from_vars(&vars(&[("EXCLUDE_NUMBERS", v)])).unwrap();
            assert_eq!(p.exclude_numbers, want, "{v:?}");
        }
        let err = policy_from_vars(&vars(&[("EXCLUDE_NUMBERS", "treu")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("EXCLUDE_NUMBERS") && err.contains("treu"), "{err}");
    }

    #[test]
    fn knobs_are_read() {
        let p = policy_from_vars(&vars(&[
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
            assert!(policy_from_vars(&vars(&[("PASSWORD_LENGTH", bad)])).is_err(), "{bad}");
        }
        let all = vars(&[
            ("EXCLUDE_NUMBERS", "1"),
            ("EXCLUDE_PUNCTUATION", "1"),
            ("EXCLUDE_UPPERCASE", "1"),
            ("EXCLUDE_LOWERCASE", "1"),
        ]);
        assert!(policy_from_vars(&all).is_err());
    }
}
