//! SSM Parameter Store: `<prefix>db-endpoint`, `db-username`, `db-password` (SecureString,
//! decrypted), optional `db-name` and `db-port`, read together and kept for the secret TTL.

use super::{CredentialError, Credentials, Origin};
use crate::{
    aws::AwsError,
    config::{Config, Overrides, SourceKind, StaticCredentials},
    secret::{DEFAULT_DBNAME, DEFAULT_PORT},
    tls::TlsEnv,
};
use aws_config::SdkConfig;
use secrecy::SecretString;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

struct SsmEntry {
    creds: StaticCredentials,
    version: String,
    fetched: Instant,
}

pub(super) struct SsmSource {
    client: aws_sdk_ssm::Client,
    prefix: String,
    ttl: Duration,
    overrides: Overrides,
    tls: TlsEnv,
    entry: Mutex<Option<SsmEntry>>,
}

impl SsmSource {
    pub(super) fn new(config: &Config, prefix: &str, sdk: &SdkConfig) -> Self {
        Self {
            client: aws_sdk_ssm::Client::new(sdk),
            prefix: prefix.to_owned(),
            ttl: config.secret_ttl,
            overrides: config.overrides.clone(),
            tls: config.tls.clone(),
            entry: Mutex::new(None),
        }
    }

    /// The parameters, read again when `force` or older than the TTL.
    pub(super) async fn current(&self, force: bool) -> Result<Credentials, CredentialError> {
        let tls = self.tls.settings(None)?;
        let mut guard = self.entry.lock().await;
        let fresh = guard.as_ref().is_some_and(|e| e.fetched.elapsed() < self.ttl);
        let entry = match guard.take() {
            Some(e) if fresh && !force => e,
            kept => match fetch(&self.client, &self.prefix, &self.overrides).await {
                Ok(e) => e,
                Err(err) => {
                    // A failed read keeps what was there for the next caller.
                    *guard = kept;
                    return Err(err);
                }
            },
        };
        let c = &entry.creds;
        let mut creds = Credentials::new(&c.user, c.password.clone(), &c.host, c.port, &c.dbname, tls);
        creds.origin = Origin {
            source: SourceKind::Ssm,
            secret_id: Some(self.prefix.clone()),
            version_id: Some(entry.version.clone()),
            stage: None,
            stale: false,
        };
        *guard = Some(entry);
        Ok(creds)
    }
}

async fn fetch(client: &aws_sdk_ssm::Client, prefix: &str, o: &Overrides) -> Result<SsmEntry, CredentialError> {
    let name = |n: &str| format!("{prefix}{n}");
    let names = ["db-endpoint", "db-username", "db-password", "db-name", "db-port"].map(name);
    let out = client
        .get_parameters()
        .set_names(Some(names.to_vec()))
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| CredentialError::Aws {
            what: format!("parameters under {prefix} from SSM Parameter Store"),
            error: AwsError::from_sdk("GetParameters", &e),
        })?;
    let find = |n: &str| out.parameters().iter().find(|p| p.name() == Some(n));
    let missing: Vec<&str> = names[..3]
        .iter()
        .filter(|n| find(n).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(CredentialError::SsmMissing {
            names: missing.join(", "),
        });
    }
    let value = |n: &str| find(n).and_then(|p| p.value()).unwrap_or_default().to_owned();
    let password_param = find(&names[2]);
    let version = format!("ssm-v{}", password_param.map(|p| p.version()).unwrap_or_default());
    // RDS console endpoints are often copied with ":5432".
    let (host, endpoint_port) = split_endpoint(&value(&names[0])).ok_or_else(|| CredentialError::SsmInvalid {
        name: names[0].clone(),
        expected: "a host name or address, optionally with :port (an IPv6 address with a port in brackets)",
    })?;
    let port = match find(&names[4]).and_then(|p| p.value()) {
        Some(p) => Some(parse_port(p).ok_or_else(|| CredentialError::SsmInvalid {
            name: names[4].clone(),
            expected: "a port number from 1 to 65535",
        })?),
        None => endpoint_port,
    };
    let creds = StaticCredentials {
        host: o.host.clone().unwrap_or(host),
        port: o.port.or(port).unwrap_or(DEFAULT_PORT),
        dbname: o
            .dbname
            .clone()
            .or_else(|| find(&names[3]).and_then(|p| p.value()).map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_DBNAME.to_owned()),
        user: value(&names[1]),
        password: SecretString::from(value(&names[2])),
    };
    Ok(SsmEntry {
        creds,
        version,
        fetched: Instant::now(),
    })
}

fn parse_port(p: &str) -> Option<u16> {
    p.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// `host`, `host:port`, `[v6]:port`, `[v6]` or a bare IPv6 address; `None` when empty or the
/// port is not one.
fn split_endpoint(endpoint: &str) -> Option<(String, Option<u16>)> {
    let endpoint = endpoint.trim();
    if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return Some((host.to_owned(), port)).filter(|(h, _)| !h.is_empty());
    }
    let (host, port) = match endpoint.rsplit_once(':') {
        // Two colons or more: a bare IPv6 address, which cannot carry a port without brackets.
        Some((h, _)) if h.contains(':') => (endpoint, None),
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (endpoint, None),
    };
    Some((host.to_owned(), port)).filter(|(h, _)| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::split_endpoint;

    #[test]
    fn ssm_endpoints_with_and_without_port() {
        let ok = |s: &str, host: &str, port: Option<u16>| {
            assert_eq!(split_endpoint(s), Some((host.to_owned(), port)), "{s}");
        };
        ok("db.example.com", "db.example.com", None);
        ok("db.example.com:6432", "db.example.com", Some(6432));
        ok(" 10.0.0.5:5432 ", "10.0.0.5", Some(5432));
        ok("2001:db8::1", "2001:db8::1", None);
        ok("[2001:db8::1]:5433", "2001:db8::1", Some(5433));
        ok("[::1]", "::1", None);
        for bad in [
            "",
            "db:0",
            "db:65536",
            "db:port",
            ":5432",
            "[::1]5432",
            "[::1]:0",
            "[]:5432",
        ] {
            assert_eq!(split_endpoint(bad), None, "{bad}");
        }
    }
}
