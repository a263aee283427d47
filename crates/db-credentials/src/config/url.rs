//! `DATABASE_URL`: a `postgres://` URL read into its parts. The URL is never echoed in an error:
//! it may hold a password.

use super::error::ConfigError;
use crate::{
    secret::{DEFAULT_DBNAME, DEFAULT_PORT},
    tls::SslMode,
};
use secrecy::SecretString;
use std::path::PathBuf;

/// What a `postgres://` URL says.
#[derive(Debug)]
pub struct ParsedUrl {
    /// Host name or address (brackets of an IPv6 literal removed).
    pub host: String,
    /// Port, 5432 when the URL has none.
    pub port: u16,
    /// Database, `postgres` when the URL has no path.
    pub dbname: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: SecretString,
    /// `sslmode`.
    pub ssl_mode: Option<SslMode>,
    /// `sslrootcert`.
    pub ssl_root_cert: Option<PathBuf>,
}

const SSLMODE_EXPECTED: &str = "one of disable, prefer, require, verify-ca, verify-full";

/// Parses `raw`.
///
/// # Errors
/// [`ConfigError::InvalidUrl`] saying what is wrong, never quoting the URL.
pub fn parse(raw: &str) -> Result<ParsedUrl, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidUrl {
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw).map_err(|e| ConfigError::InvalidUrl { reason: e.to_string() })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("it has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| bad("a percent-escape in the user, password or database is not valid UTF-8"))
    };
    let user = decode(url.username())?;
    if user.is_empty() {
        return Err(bad("it has no user"));
    }
    let password = decode(url.password().unwrap_or_default())?;
    if password.is_empty() {
        return Err(bad("it has no password"));
    }
    let dbname = match url.path().trim_start_matches('/') {
        "" => DEFAULT_DBNAME.to_owned(),
        path => decode(path)?,
    };
    let mut ssl_mode = None;
    let mut ssl_root_cert = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => {
                ssl_mode = Some(
                    value
                        .parse::<SslMode>()
                        .map_err(|()| bad(&format!("sslmode must be {SSLMODE_EXPECTED}")))?,
                )
            }
            "sslrootcert" => ssl_root_cert = Some(PathBuf::from(value.as_ref())),
            other => {
                return Err(bad(&format!(
                    "parameter {other:?} is not supported (only sslmode and sslrootcert are)"
                )));
            }
        }
    }
    Ok(ParsedUrl {
        host,
        port: url.port().unwrap_or(DEFAULT_PORT),
        dbname,
        user,
        password: SecretString::from(password),
        ssl_mode,
        ssl_root_cert,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}
