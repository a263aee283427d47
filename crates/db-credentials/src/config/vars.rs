//! The variables a process reads, as one snapshot ([`Vars`]), and the typed readers every function
//! of the workspace uses, so a boolean or a number means the same everywhere.

use super::error::ConfigError;
use std::{collections::BTreeMap, time::Duration};

/// A snapshot of variables.
pub type Vars = BTreeMap<String, String>;

/// The variables a process starts with: its environment, plus `.env` in the working directory
/// when `ENVIRONMENT` is `local` (or unset). A `.env` value never overrides a variable that is set.
#[derive(Debug, Clone, Default)]
pub struct LoadedVars {
    /// The merged snapshot.
    pub vars: Vars,
    /// Whether `.env` contributed anything.
    pub dotenv_loaded: bool,
}

impl LoadedVars {
    /// Reads the process environment and, on a developer machine, `.env`.
    ///
    /// # Errors
    /// [`ConfigError::DotEnv`] when `.env` exists but cannot be read or parsed (the message never
    /// quotes the file: a line of it may hold a password).
    pub fn load() -> Result<Self, ConfigError> {
        let mut vars: Vars = std::env::vars().collect();
        let local = vars
            .get("ENVIRONMENT")
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("local"));
        let mut dotenv_loaded = false;
        if local {
            match dotenvy::from_filename_iter(".env") {
                Ok(iter) => {
                    for item in iter {
                        let (k, v) = item.map_err(|e| ConfigError::DotEnv(dotenv_reason(&e)))?;
                        vars.entry(k).or_insert(v);
                        dotenv_loaded = true;
                    }
                }
                Err(e) if e.not_found() => {}
                Err(e) => return Err(ConfigError::DotEnv(dotenv_reason(&e))),
            }
        }
        Ok(Self { vars, dotenv_loaded })
    }
}

fn dotenv_reason(e: &dotenvy::Error) -> String {
    // dotenvy's parse errors quote the offending line, which may hold a password.
    match e {
        dotenvy::Error::LineParse(_, index) => format!("syntax error at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "unreadable".to_owned(),
    }
}

/// A variable's value, trimmed; `None` when unset or blank.
pub fn var<'a>(vars: &'a Vars, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Reads a boolean the way AWS's rotation templates do (`value.lower() in ['true', '1', 'y',
/// 'yes']`): those are true; `false`, `0`, `n`, `no` and the empty string are false; anything else
/// is a typo and an error naming the variable, never a silent false. Every function of this
/// workspace reads booleans with this.
///
/// # Errors
/// [`ConfigError::Invalid`].
pub fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Ok(true),
        "false" | "0" | "n" | "no" | "" => Ok(false),
        _ => Err(ConfigError::invalid(var, "true/1/y/yes or false/0/n/no", value)),
    }
}

/// A boolean variable, `default` when unset.
///
/// # Errors
/// [`ConfigError::Invalid`], as [`parse_bool`].
pub fn bool_var(vars: &Vars, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    vars.get(name).map_or(Ok(default), |v| parse_bool(name, v))
}

/// A whole number from `min` to `max` counting `unit`, `None` when unset or blank.
///
/// # Errors
/// [`ConfigError::OutOfRange`], naming the variable, the unit and the range.
pub fn number_var(
    vars: &Vars,
    name: &'static str,
    unit: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = var(vars, name) else { return Ok(None) };
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::OutOfRange {
            var: name,
            unit,
            min,
            max,
            got: v.to_owned(),
        }),
    }
}

/// A duration given in milliseconds (the `*_MS` variables), `None` when unset or blank.
///
/// # Errors
/// [`ConfigError::OutOfRange`].
pub fn millis_var(vars: &Vars, name: &'static str, min: u64, max: u64) -> Result<Option<Duration>, ConfigError> {
    Ok(number_var(vars, name, "milliseconds", min, max)?.map(Duration::from_millis))
}

/// A port number (1-65535).
///
/// # Errors
/// [`ConfigError::Invalid`] naming the variable.
pub fn parse_port(var: &'static str, v: &str) -> Result<u16, ConfigError> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ConfigError::invalid(var, "a port number from 1 to 65535", v))
}

/// Variables under one of `prefixes` that are not in `known`: likely typos (`DB_SECRET_TLL_SECS`),
/// which would otherwise be ignored without a word.
pub fn unknown_vars(vars: &Vars, prefixes: &[&str], known: &[&str]) -> Vec<String> {
    vars.keys()
        .filter(|k| prefixes.iter().any(|p| k.starts_with(p)) && !known.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Logs each unknown variable once, at start (both functions do this).
pub fn warn_unknown(unknown: &[String]) {
    for variable in unknown {
        tracing::warn!(variable = %variable, "unknown setting ignored; check its spelling");
    }
}
