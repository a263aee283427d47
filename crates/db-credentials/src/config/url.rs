//! `DATABASE_URL`: a `postgres://` URL read as libpq reads a connection URI
//! (`postgresql://[user[:password]@][host][:port][/dbname][?param=value&…]`), or refused by name
//! where we do not do what libpq would. The URL is never echoed in an error: it may hold a
//! password.
//!
//! As in libpq: every part is percent-decoded and nothing else (`+` is a plus, not a space as in
//! an HTML form); no path means the database named like the user; `sslrootcert=system` is the
//! operating system's store; `connect_timeout` is whole seconds, 1 meaning 2. Refused: several
//! hosts, a Unix-domain socket, `options`, `sslmode=allow`, a target that may be read-only, waiting
//! forever, and every other parameter, each by name.

use super::SessionTarget;
use super::error::ConfigError;
use crate::{secret::DEFAULT_PORT, tls::SslMode};
use secrecy::SecretString;
use std::{path::PathBuf, time::Duration};

/// What a `postgres://` URL says.
#[derive(Debug)]
pub struct ParsedUrl {
    /// Host name or address (brackets of an IPv6 literal removed).
    pub host: String,
    /// Port, 5432 when the URL has none.
    pub port: u16,
    /// Database; the user's name when the URL has no path (libpq's default).
    pub dbname: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: SecretString,
    /// `sslmode`.
    pub ssl_mode: Option<SslMode>,
    /// `sslrootcert` (`system`: the operating system's store).
    pub ssl_root_cert: Option<PathBuf>,
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `target_session_attrs`.
    pub target_session_attrs: Option<SessionTarget>,
}

const SSLMODE_EXPECTED: &str = "one of disable, prefer, require, verify-ca, verify-full";
/// The parameters understood; any other is refused by name.
const PARAMETERS: &str = "sslmode, sslrootcert, connect_timeout, application_name, target_session_attrs";
/// Longest connect timeout, as for `DB_CONNECT_TIMEOUT_MS`.
const MAX_CONNECT_TIMEOUT_SECS: u64 = 60;

/// Parses `raw`.
///
/// # Errors
/// [`ConfigError::InvalidUrl`] saying what is wrong, never quoting the URL.
pub fn parse(raw: &str) -> Result<ParsedUrl, ConfigError> {
    let bad = |reason: String| ConfigError::InvalidUrl { reason };
    const NO_HOST: &str = "it has no host (to libpq that means a local Unix-domain socket, which is not supported)";
    let url = url::Url::parse(raw).map_err(|e| match e {
        url::ParseError::EmptyHost => bad(NO_HOST.into()),
        e => bad(e.to_string()),
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad("the scheme must be postgres:// or postgresql://".into()));
    }
    let decode = |s: &str, what: &str| {
        percent_decode(s).ok_or_else(|| bad(format!("a percent-escape in the {what} is not valid UTF-8")))
    };
    // postgres: is not a scheme the URL standard knows, so the host is opaque (still escaped).
    let host = decode(url.host_str().unwrap_or_default(), "host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(bad(NO_HOST.into()));
    }
    if host.starts_with('/') {
        return Err(bad(
            "a Unix-domain socket (a host starting with /) is not supported; give a host name".into(),
        ));
    }
    let user = decode(url.username(), "user")?;
    if user.is_empty() {
        return Err(bad("it has no user".into()));
    }
    let password = decode(url.password().unwrap_or_default(), "password")?;
    if password.is_empty() {
        return Err(bad("it has no password (no .pgpass file is read)".into()));
    }
    let dbname = match url.path().strip_prefix('/').unwrap_or(url.path()) {
        "" => user.clone(),
        path => decode(path, "database")?,
    };
    let mut parsed = ParsedUrl {
        host,
        port: url.port().unwrap_or(DEFAULT_PORT),
        dbname,
        user,
        password: SecretString::from(password),
        ssl_mode: None,
        ssl_root_cert: None,
        connect_timeout: None,
        application_name: None,
        target_session_attrs: None,
    };
    let mut seen: Vec<String> = Vec::new();
    // Not `query_pairs()`: it decodes as an HTML form does, turning `+` into a space.
    for pair in url.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key, "parameter names")?;
        let value = decode(value, "parameter values")?;
        if seen.contains(&key) {
            return Err(bad(format!("parameter {key} is given more than once")));
        }
        parsed.set(&key, &value).map_err(bad)?;
        seen.push(key);
    }
    Ok(parsed)
}

impl ParsedUrl {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "sslmode" => {
                self.ssl_mode = Some(match value.parse::<SslMode>() {
                    Ok(mode) => mode,
                    Err(()) if value == "allow" => {
                        return Err(
                            "sslmode=allow tries plaintext first and is not supported; use require or better".into(),
                        );
                    }
                    Err(()) => return Err(format!("sslmode must be {SSLMODE_EXPECTED}")),
                });
            }
            "sslrootcert" => self.ssl_root_cert = Some(PathBuf::from(value)),
            "connect_timeout" => {
                let secs = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| "connect_timeout must be a whole number of seconds".to_owned())?;
                if secs <= 0 {
                    return Err(format!(
                        "connect_timeout={secs} means waiting forever to libpq, which is not supported; give 2 to {MAX_CONNECT_TIMEOUT_SECS} seconds"
                    ));
                }
                let secs = secs.unsigned_abs();
                if secs > MAX_CONNECT_TIMEOUT_SECS {
                    return Err(format!(
                        "connect_timeout must be at most {MAX_CONNECT_TIMEOUT_SECS} seconds"
                    ));
                }
                // libpq: "The minimum allowed timeout is 2 seconds, therefore a value of 1 is
                // interpreted as 2."
                self.connect_timeout = Some(Duration::from_secs(secs.max(2)));
            }
            "application_name" => self.application_name = Some(value.to_owned()),
            "target_session_attrs" => {
                self.target_session_attrs = Some(match value {
                    "any" => SessionTarget::Any,
                    // `primary` (not in recovery) is weaker than `read-write` (accepts writes): a
                    // demoted primary is the first and not the second, and this API writes.
                    "read-write" | "primary" => SessionTarget::ReadWrite,
                    "read-only" | "standby" | "prefer-standby" => {
                        return Err(format!(
                            "target_session_attrs={value} asks for a server that may refuse writes; use read-write, primary or any"
                        ));
                    }
                    _ => return Err("target_session_attrs must be any, read-write or primary".into()),
                });
            }
            "options" => {
                return Err(
                    "parameter options is not supported: set such settings on the role or database (ALTER ROLE … SET …)"
                        .into(),
                );
            }
            other => return Err(format!("parameter {other} is not supported (only {PARAMETERS} are)")),
        }
        Ok(())
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}
