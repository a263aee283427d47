//! One function per stage of the diagnosis. Each returns what it found, or a [`Failure`] saying
//! what is wrong and what to do.

use super::Failure;
use crate::{
    aws::{AwsError, AwsErrorKind},
    config::{Config, SourceConfig, SourceKind},
    source::{CredentialError, Credentials},
    tls::SslMode,
};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub(super) async fn aws_credentials(sdk: &SdkConfig) -> Result<String, Failure> {
    let fix = "Unable to locate AWS credentials. In Lambda: the function needs an execution role. Locally: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned();
    let Some(provider) = sdk.credentials_provider() else {
        return Err(Failure::new("no AWS credentials provider is configured", fix));
    };
    match provider.provide_credentials().await {
        Ok(c) => Ok(format!(
            "found AWS credentials (access key {}…); region {}",
            c.access_key_id().chars().take(4).collect::<String>(),
            sdk.region().map_or("not set", |r| r.as_ref())
        )),
        Err(e) => Err(Failure::new(format!("no AWS credentials: {e}"), fix)),
    }
}

pub(super) async fn aws_endpoint(sdk: &SdkConfig, kind: SourceKind) -> Result<String, Failure> {
    let service = if kind == SourceKind::Ssm {
        "ssm"
    } else {
        "secretsmanager"
    };
    let region = sdk
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned());
    let url = sdk
        .endpoint_url()
        .map_or_else(|| format!("https://{service}.{region}.amazonaws.com"), str::to_owned);
    let parsed = url::Url::parse(&url)
        .map_err(|e| Failure::new(format!("endpoint {url} is not a URL: {e}"), "fix AWS_ENDPOINT_URL"))?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let fix = format!(
        "no route to {host}:{port}. In a VPC without a NAT gateway, add an interface VPC endpoint com.amazonaws.{region}.{service} with private DNS enabled and allow HTTPS (443) from the function's security group to the endpoint's"
    );
    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(format!("{url} reachable")),
        Ok(Err(e)) => Err(Failure::new(format!("cannot reach {url}: {e}"), fix)),
        Err(_) => Err(Failure::new(format!("cannot reach {url}: no answer within 3 s"), fix)),
    }
}

pub(super) fn credential_fix(e: &CredentialError, config: &Config) -> String {
    let target = match &config.source {
        SourceConfig::SecretsManager { secret_id } => secret_id.clone(),
        SourceConfig::Ssm { prefix } => format!("{prefix}*"),
        _ => String::new(),
    };
    match e.aws().map(|a: &AwsError| a.kind) {
        Some(AwsErrorKind::NotFound) => format!(
            "{target} does not exist in this account and region: check DB_SECRET_ARN / DB_SSM_PREFIX and AWS_REGION"
        ),
        Some(AwsErrorKind::AccessDenied) => format!(
            "the role may not read {target}: allow secretsmanager:GetSecretValue and secretsmanager:DescribeSecret (ssm:GetParameters for SSM) on it, and kms:Decrypt on its key if it uses a customer-managed key"
        ),
        Some(AwsErrorKind::NoCredentials) => "no AWS credentials: see aws-credentials".to_owned(),
        Some(k) if k.is_transient() => {
            "the AWS endpoint did not answer: see aws-endpoint (VPC endpoint or NAT)".to_owned()
        }
        _ => match e {
            CredentialError::NoHost { .. } => "add a host to the secret or set DATABASE_HOST".to_owned(),
            CredentialError::Tls(_) => "fix DB_SSLMODE / DB_SSL_ROOT_CERT as the message says".to_owned(),
            CredentialError::SsmMissing { .. } => {
                "create the listed parameters (db-password as a SecureString)".to_owned()
            }
            _ => "see the message above".to_owned(),
        },
    }
}

pub(super) async fn dns(creds: &Credentials) -> Result<String, Failure> {
    match tokio::net::lookup_host((creds.host.as_str(), creds.port)).await {
        Ok(addrs) => {
            let addrs: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            Ok(format!("{} resolves to {}", creds.host, addrs.join(", ")))
        }
        Err(e) => Err(Failure::new(
            format!("cannot resolve {}: {e}", creds.host),
            "check the host in the secret (or DATABASE_HOST); in a VPC, enable DNS resolution and DNS hostnames"
                .to_owned(),
        )),
    }
}

pub(super) async fn tcp(creds: &Credentials, timeout: Duration) -> Result<String, Failure> {
    let target = format!("{}:{}", creds.host, creds.port);
    match tokio::time::timeout(timeout, TcpStream::connect((creds.host.as_str(), creds.port))).await {
        Ok(Ok(_)) => Ok(format!("{target} accepts connections")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Failure::new(
            format!("{target} refused the connection"),
            "nothing listens there: check the port and that the database is running".to_owned(),
        )),
        Ok(Err(e)) => Err(Failure::new(
            format!("cannot connect to {target}: {e}"),
            network_fix(creds.port),
        )),
        Err(_) => Err(Failure::new(
            format!("no answer from {target} within {} ms", timeout.as_millis()),
            network_fix(creds.port),
        )),
    }
}

fn network_fix(port: u16) -> String {
    format!(
        "the database's security group must allow TCP {port} from the function's security group, and the function must run in subnets that route to the database"
    )
}

/// The TLS handshake the connection will make. `Ok(None)`: the server offers no TLS and sslmode
/// prefer will go on without it.
pub(super) async fn tls(creds: &Credentials, timeout: Duration) -> Result<Option<String>, Failure> {
    let handshake = async {
        let mut stream = TcpStream::connect((creds.host.as_str(), creds.port))
            .await
            .map_err(|e| Failure::new(e.to_string(), ""))?;
        // SSLRequest: length 8, code 80877103.
        stream
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(|e| Failure::new(e.to_string(), ""))?;
        let mut answer = [0u8; 1];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| Failure::new(e.to_string(), ""))?;
        if answer[0] != b'S' {
            if creds.tls.mode == SslMode::Prefer {
                return Ok(None);
            }
            return Err(Failure::new(
                "server does not support TLS".to_owned(),
                "the server does not offer TLS: enable ssl on the server (RDS always offers it); DB_SSLMODE=disable is only for local use".to_owned(),
            ));
        }
        let connector = creds
            .tls
            .native_connector()
            .map_err(|e| Failure::new(e.to_string(), "fix DB_SSL_ROOT_CERT"))?;
        let connector = tokio_native_tls::TlsConnector::from(connector);
        match connector.connect(&creds.host, stream).await {
            Ok(_) => Ok(Some(format!(
                "handshake OK, sslmode {}{}",
                creds.tls.mode,
                creds
                    .tls
                    .root_cert
                    .as_ref()
                    .map(|p| format!(", CA {}", p.display()))
                    .unwrap_or_default()
            ))),
            Err(e) => {
                let msg = e.to_string();
                let fix = if msg.contains("hostname") || msg.contains("IP address mismatch") {
                    format!(
                        "the certificate does not name {}: connect with the name in the certificate (the RDS endpoint, not a CNAME), or use DB_SSLMODE=verify-ca",
                        creds.host
                    )
                } else if msg.contains("certificate") {
                    "the server's certificate is not signed by a trusted CA: set DB_SSL_ROOT_CERT to the CA bundle (for RDS, global-bundle.pem from truststore.pki.rds.amazonaws.com)".to_owned()
                } else {
                    "the TLS handshake failed; check the server's TLS configuration".to_owned()
                };
                Err(Failure::new(
                    format!("TLS handshake with {} failed: {msg}", creds.host),
                    fix,
                ))
            }
        }
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            "no TLS answer within the connect timeout",
            network_fix(creds.port),
        )),
    }
}

/// The login and the role it acts as (they differ for an alternating-users clone, which acts as
/// its base user): neither should be a superuser, have CREATEROLE or CREATEDB, or be a member of
/// RDS's `rds_superuser`. `Err` is a warning, never a failure: the API works, with more rights
/// than it needs.
pub(super) async fn privileges(client: &tokio_postgres::Client) -> Result<String, Failure> {
    const QUERY: &str = "
SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb,
       coalesce(pg_has_role(r.oid, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser'), 'MEMBER'), false)
FROM pg_catalog.pg_roles r WHERE r.rolname IN (session_user, current_user) ORDER BY r.rolname = session_user DESC";
    let rows = client.query(QUERY, &[]).await.map_err(|e| {
        Failure::new(
            format!("could not read the user's attributes: {e}"),
            "check by hand: SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
        )
    })?;
    let mut findings = Vec::new();
    let mut users = Vec::new();
    for row in &rows {
        let user: String = row.get(0);
        let mut rights = Vec::new();
        for (flag, what) in [
            (1, "is a superuser"),
            (2, "has CREATEROLE"),
            (3, "has CREATEDB"),
            (4, "is a member of rds_superuser"),
        ] {
            if row.get::<_, bool>(flag) {
                rights.push(what);
            }
        }
        if !rights.is_empty() {
            findings.push(format!("{user} {}", rights.join(", ")));
        }
        users.push(user);
    }
    if findings.is_empty() {
        return Ok(format!(
            "{}: not a superuser, no CREATEROLE or CREATEDB, not in rds_superuser",
            users.join(" acting as ")
        ));
    }
    Err(Failure::new(
        format!(
            "the API's database user has more rights than it needs: {}",
            findings.join("; ")
        ),
        "log the API in as an application role with LOGIN, CONNECT on its database and its own schema only (the stack's AppDatabaseRole makes one; design §11), never as the master; or remove the rights: ALTER ROLE … NOSUPERUSER NOCREATEROLE NOCREATEDB, REVOKE rds_superuser FROM …",
    ))
}
