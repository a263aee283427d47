//! The Lambda Runtime API on a free loopback port, as the Lambda service offers it to a function
//! process: `GET /2018-06-01/runtime/invocation/next` hands out one event (with the
//! `Lambda-Runtime-Aws-Request-Id` and `Lambda-Runtime-Deadline-Ms` headers), and
//! `POST /2018-06-01/runtime/invocation/<id>/response` (or `/error`) takes the answer;
//! `POST /2018-06-01/runtime/init/error` reports a failed init. HTTP/1.1 is hyper's.
//!
//! It runs a function's *built* binary, release or not, which `cargo lambda watch` cannot (it
//! runs `cargo run`): the benchmarks use it to time a fresh process to its first answer and to
//! read the CPU and memory of the process serving the events. Timestamps are taken the way
//! Lambda bills: an invocation's duration runs from handing the event out to receiving the
//! complete answer.

mod server;

pub use server::Route;

use crate::{DevstackError, guard::Guardian};
use hyper::{
    body::Bytes,
    header::{HeaderName, HeaderValue},
};
use server::{Queued, Shared};
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

/// Deadline given with every event: far enough that the function never sees it pass.
pub const DEADLINE: Duration = Duration::from_secs(900);
/// Largest answer body the emulator accepts (Lambda's payload limit is 6 MB).
pub const MAX_BODY: usize = 6 * 1024 * 1024;

/// One answered invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The request id it was handed out with.
    pub request_id: String,
    /// The function's answer (the JSON of its response or of its error).
    pub body: Vec<u8>,
    /// Whether the function reported an error (`/error`) rather than a response.
    pub is_error: bool,
    /// From [`RuntimeApi::invoke`] until a `GET /next` took the event.
    pub queued: Duration,
    /// From handing the event out to receiving the whole answer: what Lambda bills.
    pub duration: Duration,
    /// When the answer arrived.
    pub answered_at: Instant,
}

/// A running Runtime API. Dropping it stops serving (the function process is a [`Function`]).
pub struct RuntimeApi {
    port: u16,
    sender: mpsc::UnboundedSender<Queued>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl RuntimeApi {
    /// Starts serving on 127.0.0.1 for a function called `function_name`.
    ///
    /// # Errors
    /// When `function_name` cannot go in a header, or no port can be bound.
    pub async fn start(function_name: &str) -> Result<Self, DevstackError> {
        let function_arn = HeaderValue::try_from(format!(
            "arn:aws:lambda:{}:{}:function:{function_name}",
            crate::moto::REGION,
            crate::moto::ACCOUNT
        ))
        .map_err(|_| tool(&format!("function name {function_name:?} cannot go in an HTTP header")))?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| DevstackError::io("bind the runtime API", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| DevstackError::io("bind the runtime API", e))?
            .port();
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(function_arn, receiver));
        let server = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(Self {
            port,
            sender,
            shared,
            server,
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The environment the Lambda service gives a function process (memory size as configured
    /// in the SAM template by default).
    pub fn env(&self, function_name: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function_name}")),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "devstack".to_owned()),
            ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Queues `payload` for the next `GET /next` and waits (at most `timeout`) for its answer.
    ///
    /// # Errors
    /// A timeout, or the emulator stopped.
    pub async fn invoke(&self, payload: Vec<u8>, timeout: Duration) -> Result<Invocation, DevstackError> {
        let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request_id = format!("{:08x}-0000-4000-8000-{:012x}", self.port, n);
        let trace_id = format!("Root=1-00000000-{};Sampled=0", &request_id.replace('-', "")[..24]);
        let header = |name: &'static str, value: &str| {
            HeaderValue::try_from(value)
                .map(|v| (HeaderName::from_static(name), v))
                .map_err(|_| tool(&format!("{name} {value:?} cannot go in an HTTP header")))
        };
        let headers = [
            header("lambda-runtime-aws-request-id", &request_id)?,
            header("lambda-runtime-trace-id", &trace_id)?,
        ];
        let (answer, answered) = oneshot::channel();
        self.sender
            .send(Queued {
                request_id: request_id.clone(),
                headers,
                payload: Bytes::from(payload),
                enqueued: Instant::now(),
                answer,
            })
            .map_err(|_| tool("the runtime API has stopped"))?;
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(invocation)) => Ok(invocation),
            Ok(Err(_)) => Err(tool("the runtime API dropped the invocation")),
            Err(_) => Err(tool(&format!(
                "invocation {request_id} got no answer within {timeout:?}"
            ))),
        }
    }

    /// Waits until the function has asked for its first event (its init is over); returns when
    /// that happened.
    ///
    /// # Errors
    /// A timeout, or the function reported an init error.
    pub async fn wait_for_first_poll(&self, timeout: Duration) -> Result<Instant, DevstackError> {
        let wait = async {
            loop {
                let notified = self.shared.polled.notified();
                {
                    let polls = self
                        .shared
                        .polls
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(e) = &polls.init_error {
                        return Err(tool(&format!("the function failed its init: {e}")));
                    }
                    if let Some(first) = polls.first {
                        return Ok(first);
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| tool(&format!("the function did not poll for an event within {timeout:?}")))?
    }

    /// When the function first asked for an event, if it has.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared
            .polls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first
    }

    /// Starts `binary` as the function process, with only `env` and this API's variables in its
    /// environment (as in Lambda, nothing is inherited), its output appended to `log`.
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub fn spawn(
        &self,
        binary: &Path,
        function_name: &str,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Function, DevstackError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| DevstackError::io("open the function log", e))?;
        let err = out
            .try_clone()
            .map_err(|e| DevstackError::io("open the function log", e))?;
        let started_at = SystemTime::now();
        let started = Instant::now();
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TZ", ":UTC")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(self.env(function_name))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| DevstackError::io("start the function binary", e))?;
        let pid = child.id();
        let needle = binary.to_string_lossy();
        let guardian = Guardian::spawn(
            &crate::guard::if_cmdline(
                pid,
                &needle,
                &format!(
                    "kill {pid} 2>/dev/null\ni=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done\nkill -9 {pid} 2>/dev/null"
                ),
            ),
            "",
        )
        .map_err(|e| DevstackError::io("start the cleanup guardian", e))?;
        Ok(Function {
            child,
            guardian,
            started,
            started_at,
        })
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A function process started by [`RuntimeApi::spawn`]. Dropping it stops the process.
#[derive(Debug)]
pub struct Function {
    child: Child,
    guardian: Guardian,
    /// When it was started (monotonic).
    pub started: Instant,
    /// When it was started (wall clock, to compare with times the process reports itself).
    pub started_at: SystemTime,
}

impl Function {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops it (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // Stopped and reaped here, then the guardian is told nothing is left to kill.
        crate::guard::stop_and_reap(&mut self.child, Duration::from_secs(3));
        self.guardian.fire_reaped();
    }
}

fn tool(detail: &str) -> DevstackError {
    DevstackError::Tool {
        step: "runtime API",
        detail: detail.to_owned(),
    }
}
