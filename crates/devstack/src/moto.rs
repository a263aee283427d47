//! `moto_server` on a free loopback port: Secrets Manager, SSM, RDS, IAM and a Lambda registry,
//! reached by the real AWS SDK over HTTP.

use crate::{DevstackError, free_port, guard::Guardian, guard::sh_quote, random_token};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The account moto answers as.
pub const ACCOUNT: &str = "123456789012";
/// The region everything runs in.
pub const REGION: &str = "us-east-1";

/// How to start moto.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Enforce IAM after this many unauthenticated requests (moto's
    /// `INITIAL_NO_AUTH_ACTION_COUNT`); the free requests create users and keys.
    pub enforce_iam_after: Option<u32>,
}

/// A running moto server. Dropping it stops the server.
#[derive(Debug)]
pub struct Moto {
    port: u16,
    child: Child,
    dir: PathBuf,
    guardian: Guardian,
}

/// A moto server reached by port: the control API and raw calls, without owning the process
/// (`make rotate` attaches to the server `make run` started).
#[derive(Debug, Clone, Copy)]
pub struct MotoEndpoint {
    /// Port on 127.0.0.1.
    pub port: u16,
}

impl MotoEndpoint {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SDK configuration with moto's test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_as("test", "test").await
    }

    /// SDK configuration with given access keys (for IAM-enforcing servers). Timeouts match
    /// what the functions use in production, so an outage looks the same.
    pub async fn sdk_config_as(&self, access_key: &str, secret_key: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(8))
                    .build(),
            )
            .endpoint_url(self.url())
            .region(Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                access_key, secret_key, None, None, "devstack",
            ))
            .load()
            .await
    }

    /// SDK configuration for arranging a test (creating instances, secrets to rotate): no
    /// retries and a generous timeout. Under load moto can take seconds to answer; with the
    /// functions' 3 s attempt timeout the SDK would send the call again and moto, which already
    /// made the resource, would answer `AlreadyExists` to the retry.
    pub async fn setup_sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(120))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .endpoint_url(self.url())
            .region(Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "devstack",
            ))
            .load()
            .await
    }

    /// A moto control call (`/moto-api/...`).
    ///
    /// # Errors
    /// When moto answers with an error status.
    pub fn api(&self, method: &str, path: &str, body: &str) -> Result<(), DevstackError> {
        match http(self.port, method, path, body) {
            Ok((status, _)) if status < 300 => Ok(()),
            Ok((status, text)) => Err(DevstackError::Tool {
                step: "moto api",
                detail: format!("{path}: HTTP {status}: {text}"),
            }),
            Err(e) => Err(DevstackError::io("call moto", e)),
        }
    }

    /// A raw AWS call, for services the devstack has no SDK crate for (IAM, Lambda). moto reads
    /// the service from the credential scope and does not check the signature.
    ///
    /// # Errors
    /// When moto answers with an error status.
    pub fn aws_call(
        &self,
        service: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<String, DevstackError> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let headers = format!("Authorization: {auth}\r\nContent-Type: {content_type}\r\n");
        match http_with(self.port, method, path, &headers, body) {
            Ok((status, text)) if status < 300 => Ok(text),
            Ok((status, text)) => Err(DevstackError::Tool {
                step: "moto",
                detail: format!("{service} {path}: HTTP {status}: {text}"),
            }),
            Err(e) => Err(DevstackError::io("call moto", e)),
        }
    }
}

/// One request moto recorded.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// `X-Amz-Target`, e.g. `secretsmanager.GetSecretValue` (empty for non-JSON protocols).
    pub target: String,
    /// Request body.
    pub body: String,
}

impl Moto {
    /// Starts moto and waits until it answers (under a second when warm).
    ///
    /// # Errors
    /// [`DevstackError::Missing`] when `moto_server` is not installed, or a start failure with the
    /// tail of its log.
    pub fn start(options: &MotoOptions) -> Result<Self, DevstackError> {
        let dir = std::env::temp_dir().join(format!("devstack-moto-{}", random_token()));
        std::fs::create_dir_all(&dir).map_err(|e| DevstackError::io("create moto directory", e))?;
        let log = std::fs::File::create(dir.join("moto.log")).map_err(|e| DevstackError::io("create moto log", e))?;
        let log_err = log.try_clone().map_err(|e| DevstackError::io("clone moto log", e))?;
        let port = free_port()?;
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env_remove("AWS_ENDPOINT_URL")
            // The recorder writes to ./moto_recording by default, shared by every server started
            // in the same directory.
            .env("MOTO_RECORDER_FILEPATH", dir.join("recording.jsonl"));
        if let Some(n) = options.enforce_iam_after {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DevstackError::Missing {
                tool: "moto_server",
                install: "pip install 'moto[server]==5.2.1' (or run `make deps`)",
            },
            _ => DevstackError::io("start moto_server", e),
        })?;
        let pid = child.id();
        let guardian = Guardian::spawn(
            &crate::guard::if_cmdline(
                pid,
                "moto_server",
                &format!("kill {pid}\ni=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done\nkill -9 {pid} 2>/dev/null"),
            ),
            &format!(
                "{}\nrm -rf {}",
                crate::evidence::copy_line(&dir.join("moto.log"), "moto"),
                sh_quote(&dir.to_string_lossy())
            ),
        )
        .map_err(|e| DevstackError::io("start the cleanup guardian", e))?;
        let mut moto = Self {
            port,
            child,
            dir,
            guardian,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if http(port, "GET", "/moto-api/", "").is_ok_and(|(status, _)| status == 200) {
                return Ok(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(DevstackError::Tool {
                    step: "moto_server",
                    detail: format!("exited with {status}:\n{}", moto.log()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(DevstackError::Tool {
            step: "moto_server",
            detail: format!("did not answer within 30 s:\n{}", moto.log()),
        })
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Everything moto logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("moto.log")).unwrap_or_default()
    }

    /// SDK configuration pointing at this server with moto's test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_as("test", "test").await
    }

    /// SDK configuration with given access keys (for IAM-enforcing servers).
    pub async fn sdk_config_as(&self, access_key: &str, secret_key: &str) -> SdkConfig {
        self.handle().sdk_config_as(access_key, secret_key).await
    }

    /// SDK configuration for arranging a test: see [`MotoEndpoint::setup_sdk_config`].
    pub async fn setup_sdk_config(&self) -> SdkConfig {
        self.handle().setup_sdk_config().await
    }

    /// The endpoint handle: control API and raw calls, without owning the process.
    pub fn handle(&self) -> MotoEndpoint {
        MotoEndpoint { port: self.port }
    }

    /// Environment for a process that should talk to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Starts moto's request recorder.
    ///
    /// # Errors
    /// When moto does not answer.
    pub fn start_recording(&self) -> Result<(), DevstackError> {
        self.api("POST", "/moto-api/recorder/start-recording", "")
    }

    /// Every request recorded so far whose body mentions `needle` (a secret name, say), so tests
    /// sharing one server count only their own calls.
    ///
    /// # Errors
    /// When moto does not answer.
    pub fn recorded_calls(&self, needle: &str) -> Result<Vec<RecordedCall>, DevstackError> {
        let (_, body) = http(self.port, "GET", "/moto-api/recorder/download-recording", "")
            .map_err(|e| DevstackError::io("download moto's recording", e))?;
        Ok(body
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                let raw = v.get("body").and_then(|b| b.as_str()).unwrap_or_default();
                let body = if v
                    .get("body_encoded")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false)
                {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    raw.to_owned()
                };
                let target = v
                    .get("headers")
                    .and_then(|h| h.get("X-Amz-Target").or_else(|| h.get("x-amz-target")))
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_owned();
                body.contains(needle).then_some(RecordedCall { target, body })
            })
            .collect())
    }

    /// Counts recorded calls to `operation` (e.g. `GetSecretValue`) mentioning `needle`.
    ///
    /// # Errors
    /// When moto does not answer.
    pub fn count_calls(&self, operation: &str, needle: &str) -> Result<usize, DevstackError> {
        let suffix = format!(".{operation}");
        Ok(self
            .recorded_calls(needle)?
            .iter()
            .filter(|c| c.target.ends_with(&suffix))
            .count())
    }

    /// Creates an IAM user with an inline policy and returns its access key pair. On a server
    /// started with [`MotoOptions::enforce_iam_after`], this takes three of the free requests.
    ///
    /// # Errors
    /// When moto refuses.
    pub fn create_iam_user(&self, name: &str, policy: &serde_json::Value) -> Result<(String, String), DevstackError> {
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", url_encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        };
        let call = |body: String| self.aws_call("iam", "POST", "/", "application/x-www-form-urlencoded", &body);
        call(form(&[
            ("Action", "CreateUser"),
            ("Version", "2010-05-08"),
            ("UserName", name),
        ]))?;
        call(form(&[
            ("Action", "PutUserPolicy"),
            ("Version", "2010-05-08"),
            ("UserName", name),
            ("PolicyName", "devstack"),
            ("PolicyDocument", &policy.to_string()),
        ]))?;
        let xml = call(form(&[
            ("Action", "CreateAccessKey"),
            ("Version", "2010-05-08"),
            ("UserName", name),
        ]))?;
        let tag = |t: &str| {
            let open = format!("<{t}>");
            let start = xml.find(&open)? + open.len();
            let end = xml[start..].find(&format!("</{t}>"))? + start;
            Some(xml[start..end].to_owned())
        };
        match (tag("AccessKeyId"), tag("SecretAccessKey")) {
            (Some(a), Some(s)) => Ok((a, s)),
            _ => Err(DevstackError::Aws(format!(
                "CreateAccessKey answered without keys: {xml}"
            ))),
        }
    }

    /// Freezes the server (SIGSTOP): calls hang until [`Self::resume`], as in an AWS outage.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn pause(&self) -> Result<(), DevstackError> {
        signal(self.pid(), "STOP")
    }

    /// Thaws the server (SIGCONT).
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn resume(&self) -> Result<(), DevstackError> {
        signal(self.pid(), "CONT")
    }

    /// Stops the server now.
    pub fn stop(self) {
        drop(self);
    }

    /// A moto control call (see [`MotoEndpoint::api`]).
    ///
    /// # Errors
    /// When moto answers with an error status.
    pub fn api(&self, method: &str, path: &str, body: &str) -> Result<(), DevstackError> {
        self.handle().api(method, path, body)
    }

    /// A raw AWS call (see [`MotoEndpoint::aws_call`]).
    ///
    /// # Errors
    /// When moto answers with an error status.
    pub fn aws_call(
        &self,
        service: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<String, DevstackError> {
        self.handle().aws_call(service, method, path, content_type, body)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Stopped and reaped here, then the guardian is told only the cleanup is left.
        let _ = self.resume();
        crate::guard::stop_and_reap(&mut self.child, Duration::from_secs(3));
        self.guardian.fire_reaped();
    }
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn signal(pid: u32, sig: &str) -> Result<(), DevstackError> {
    if crate::signal::process(pid, sig) {
        Ok(())
    } else {
        Err(DevstackError::Tool {
            step: "kill",
            detail: format!("cannot send SIG{sig} to {pid}"),
        })
    }
}

fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_with(port, method, path, "Content-Type: application/json\r\n", body)
}

/// Minimal HTTP/1.1 for moto's control API; moto closes each connection after one answer.
fn http_with(port: u16, method: &str, path: &str, headers: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
