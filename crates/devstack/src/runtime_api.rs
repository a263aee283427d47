//! The Lambda Runtime API on a free loopback port, as the Lambda service offers it to a function
//! process: `GET /2018-06-01/runtime/invocation/next` hands out one event (with the
//! `Lambda-Runtime-Aws-Request-Id` and `Lambda-Runtime-Deadline-Ms` headers), and
//! `POST /2018-06-01/runtime/invocation/<id>/response` (or `/error`) takes the answer.
//!
//! It runs a function's *built* binary, release or not, which `cargo lambda watch` cannot (it
//! runs `cargo run`): the benchmarks use it to time a fresh process to its first answer and to
//! read the CPU and memory of the process serving the events. Timestamps are taken the way
//! Lambda bills: an invocation's duration runs from handing the event out to receiving the
//! complete answer.

use crate::{DevstackError, guard::Guardian};
use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Mutex, mpsc, oneshot},
};

/// Deadline given with every event: far enough that the function never sees it pass.
pub const DEADLINE: Duration = Duration::from_secs(900);
/// Largest request head or body the emulator accepts (Lambda's payload limit is 6 MB).
pub const MAX_BODY: usize = 6 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;
const PREFIX: &str = "/2018-06-01/runtime/";

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

/// A parsed HTTP/1.1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Path (with query, if any).
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (chunked bodies de-chunked).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// What a route means to the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET …/invocation/next`.
    Next,
    /// `POST …/invocation/<id>/response`.
    Response(String),
    /// `POST …/invocation/<id>/error`.
    Error(String),
    /// `POST …/init/error`.
    InitError,
    /// Anything else.
    Unknown,
}

impl Route {
    /// Classifies a method and path.
    pub fn of(method: &str, path: &str) -> Self {
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Self::Unknown;
        };
        match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
            ("GET", ["invocation", "next"]) => Self::Next,
            ("POST", ["invocation", id, "response"]) if !id.is_empty() => Self::Response((*id).to_owned()),
            ("POST", ["invocation", id, "error"]) if !id.is_empty() => Self::Error((*id).to_owned()),
            ("POST", ["init", "error"]) => Self::InitError,
            _ => Self::Unknown,
        }
    }
}

/// Reads one request from `reader`; `Ok(None)` when the peer closed the connection cleanly
/// before sending anything.
///
/// # Errors
/// A malformed request (`InvalidData`) or an I/O error.
pub async fn read_request<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<HttpRequest>> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    // Tolerate blank lines between requests (RFC 9112 §2.2).
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not HTTP/1.x"));
    }
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    let mut head_len = line.len();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(invalid("connection closed inside the request head"));
        }
        head_len += line.len();
        if head_len > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').ok_or_else(|| invalid("malformed header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(reader).await?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        if len > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok(Some(request))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        line.clear();
        reader.read_line(&mut line).await?;
    }
}

/// A response head and body as bytes.
pub fn response_bytes(status: u16, reason: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

struct Queued {
    request_id: String,
    payload: Vec<u8>,
    enqueued: Instant,
    answer: oneshot::Sender<Invocation>,
}

struct InFlight {
    enqueued: Instant,
    handed_out: Instant,
    answer: oneshot::Sender<Invocation>,
}

#[derive(Default)]
struct Polls {
    first: Option<Instant>,
    count: u64,
    init_error: Option<String>,
}

struct Shared {
    function_arn: String,
    queue: Mutex<mpsc::UnboundedReceiver<Queued>>,
    in_flight: StdMutex<HashMap<String, InFlight>>,
    polls: StdMutex<Polls>,
    polled: tokio::sync::Notify,
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
    /// When no port can be bound.
    pub async fn start(function_name: &str) -> Result<Self, DevstackError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| DevstackError::io("bind the runtime API", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| DevstackError::io("bind the runtime API", e))?
            .port();
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{function_name}",
                crate::moto::REGION,
                crate::moto::ACCOUNT
            ),
            queue: Mutex::new(receiver),
            in_flight: StdMutex::default(),
            polls: StdMutex::default(),
            polled: tokio::sync::Notify::new(),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
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
        let (answer, answered) = oneshot::channel();
        self.sender
            .send(Queued {
                request_id: request_id.clone(),
                payload,
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

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, shared.clone()));
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Ok(Some(request)) = read_request(&mut reader).await {
        let close = request.wants_close();
        let response = match Route::of(&request.method, &request.path) {
            Route::Next => {
                let Some(queued) = next_event(&shared).await else {
                    return;
                };
                let deadline = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    + DEADLINE;
                let bytes = response_bytes(
                    200,
                    "OK",
                    &[
                        ("Content-Type", "application/json".to_owned()),
                        ("Lambda-Runtime-Aws-Request-Id", queued.request_id.clone()),
                        ("Lambda-Runtime-Deadline-Ms", deadline.as_millis().to_string()),
                        ("Lambda-Runtime-Invoked-Function-Arn", shared.function_arn.clone()),
                        (
                            "Lambda-Runtime-Trace-Id",
                            format!(
                                "Root=1-00000000-{};Sampled=0",
                                &queued.request_id.replace('-', "")[..24]
                            ),
                        ),
                    ],
                    &queued.payload,
                );
                let request_id = queued.request_id.clone();
                // Registered before the write, so an answer can never arrive for an unknown id;
                // the clock starts once the event is written, as Lambda's does.
                if let Ok(mut in_flight) = shared.in_flight.lock() {
                    in_flight.insert(
                        queued.request_id,
                        InFlight {
                            enqueued: queued.enqueued,
                            handed_out: Instant::now(),
                            answer: queued.answer,
                        },
                    );
                }
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
                if let Ok(mut in_flight) = shared.in_flight.lock()
                    && let Some(f) = in_flight.get_mut(&request_id)
                {
                    f.handed_out = Instant::now();
                }
                continue;
            }
            Route::Response(id) | Route::Error(id) => {
                let answered_at = Instant::now();
                let is_error = request.path.ends_with("/error");
                let entry = shared.in_flight.lock().ok().and_then(|mut m| m.remove(&id));
                match entry {
                    Some(f) => {
                        let _ = f.answer.send(Invocation {
                            request_id: id,
                            body: request.body,
                            is_error,
                            queued: f.handed_out.saturating_duration_since(f.enqueued),
                            duration: answered_at.saturating_duration_since(f.handed_out),
                            answered_at,
                        });
                        response_bytes(202, "Accepted", &[], br#"{"status":"OK"}"#)
                    }
                    None => response_bytes(
                        400,
                        "Bad Request",
                        &[],
                        br#"{"errorType":"InvalidRequestID","errorMessage":"unknown request id"}"#,
                    ),
                }
            }
            Route::InitError => {
                if let Ok(mut polls) = shared.polls.lock() {
                    polls.init_error = Some(String::from_utf8_lossy(&request.body).into_owned());
                }
                shared.polled.notify_waiters();
                response_bytes(202, "Accepted", &[], br#"{"status":"OK"}"#)
            }
            Route::Unknown => response_bytes(404, "Not Found", &[], b"{}"),
        };
        if write.write_all(&response).await.is_err() || close {
            return;
        }
    }
}

/// Waits for the next queued event, counting the poll.
async fn next_event(shared: &Shared) -> Option<Queued> {
    if let Ok(mut polls) = shared.polls.lock() {
        polls.count += 1;
        if polls.first.is_none() {
            polls.first = Some(Instant::now());
        }
    }
    shared.polled.notify_waiters();
    shared.queue.lock().await.recv().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> std::io::Result<Option<HttpRequest>> {
        read_request(&mut BufReader::new(raw)).await
    }

    #[test]
    fn routes_are_classified() {
        assert_eq!(Route::of("GET", "/2018-06-01/runtime/invocation/next"), Route::Next);
        assert_eq!(
            Route::of("POST", "/2018-06-01/runtime/invocation/abc-1/response"),
            Route::Response("abc-1".into())
        );
        assert_eq!(
            Route::of("POST", "/2018-06-01/runtime/invocation/abc-1/error"),
            Route::Error("abc-1".into())
        );
        assert_eq!(Route::of("POST", "/2018-06-01/runtime/init/error"), Route::InitError);
        assert_eq!(Route::of("POST", "/2018-06-01/runtime/invocation/next"), Route::Unknown);
        assert_eq!(
            Route::of("POST", "/2018-06-01/runtime/invocation//response"),
            Route::Unknown
        );
        assert_eq!(Route::of("GET", "/other"), Route::Unknown);
    }

    #[tokio::test]
    async fn reads_content_length_and_chunked_bodies() {
        let plain = parse(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((plain.method.as_str(), plain.path.as_str()), ("POST", "/x"));
        assert_eq!(plain.header("host"), Some("a"));
        assert_eq!(plain.body, b"hello");

        let chunked = parse(
            b"POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(chunked.body, b"Wikipedia");

        let no_body = parse(b"GET /z HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap()
            .unwrap();
        assert!(no_body.body.is_empty() && no_body.wants_close());
    }

    #[tokio::test]
    async fn refuses_malformed_requests_and_ends_cleanly_at_eof() {
        assert!(parse(b"").await.unwrap().is_none());
        assert!(parse(b"GARBAGE\r\n\r\n").await.is_err());
        assert!(parse(b"GET / SPDY/3\r\n\r\n").await.is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").await.is_err());
        assert!(parse(b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n").await.is_err());
        assert!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")
                .await
                .is_err()
        );
        assert!(parse(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab").await.is_err());
    }

    /// A function's view: poll, get the event with its headers, answer; the caller gets the answer.
    #[tokio::test]
    async fn hands_out_an_event_and_returns_the_answer() {
        let api = RuntimeApi::start("probe").await.unwrap();
        let invoke = api.invoke(br#"{"ping":1}"#.to_vec(), Duration::from_secs(30));
        let function = async {
            let stream = TcpStream::connect(api.address()).await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            write
                .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut status = String::new();
            reader.read_line(&mut status).await.unwrap();
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            let (mut id, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(": ").unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "lambda-runtime-aws-request-id" => id = v.to_owned(),
                    "content-length" => length = v.parse().unwrap(),
                    "lambda-runtime-deadline-ms" => assert!(v.parse::<u64>().is_ok()),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            assert_eq!(body, br#"{"ping":1}"#);
            let answer = format!(
                "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nContent-Length: 10\r\n\r\n{{\"pong\":1}}"
            );
            write.write_all(answer.as_bytes()).await.unwrap();
            let mut accepted = String::new();
            reader.read_line(&mut accepted).await.unwrap();
            assert!(accepted.starts_with("HTTP/1.1 202"), "{accepted}");
            id
        };
        let (invocation, id) = tokio::join!(invoke, function);
        let invocation = invocation.unwrap();
        assert_eq!(invocation.request_id, id);
        assert_eq!(invocation.body, br#"{"pong":1}"#);
        assert!(!invocation.is_error);
        assert!(api.first_poll().is_some());
    }
}
