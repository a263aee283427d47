//! The Runtime API as a function sees it: a fake function (a hyper client here, or a bash script
//! started by `RuntimeApi::spawn`) polls `/invocation/next`, answers or fails, and the harness
//! gets the answer with the timestamps the benchmarks read.

use devstack::runtime_api::{MAX_BODY, RuntimeApi};
use http_body_util::{BodyExt, Full};
use hyper::{
    HeaderMap, Method, Request, StatusCode,
    body::Bytes,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const TIMEOUT: Duration = Duration::from_secs(30);

/// One keep-alive connection of a fake function.
async fn connect(api: &RuntimeApi) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(api.address()).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn call(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "lambda")
        .body(Full::new(body.into()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap().to_str().unwrap()
}

fn answer_path(id: &str, kind: &str) -> String {
    format!("/2018-06-01/runtime/invocation/{id}/{kind}")
}

/// A function that takes an event, works for `work`, and answers `{"echo":<event>}`, `events`
/// times, all on one keep-alive connection. Returns the request ids it saw.
async fn echo_function(api: &RuntimeApi, events: usize, work: Duration) -> Vec<String> {
    let mut conn = connect(api).await;
    let mut ids = Vec::new();
    for _ in 0..events {
        let (status, headers, event) = call(&mut conn, Method::GET, NEXT, Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        let id = header(&headers, "lambda-runtime-aws-request-id").to_owned();
        tokio::time::sleep(work).await;
        let answer = [b"{\"echo\":".as_slice(), &event, b"}"].concat();
        let (status, _, _) = call(&mut conn, Method::POST, &answer_path(&id, "response"), answer).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn hands_out_an_event_with_lambdas_headers() {
    let api = RuntimeApi::start("probe").await.unwrap();
    let invoke = api.invoke(br#"{"ping":1}"#.to_vec(), TIMEOUT);
    let function = async {
        let mut conn = connect(&api).await;
        let (status, headers, event) = call(&mut conn, Method::GET, NEXT, Bytes::new()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&event[..], br#"{"ping":1}"#);
        assert_eq!(header(&headers, "content-type"), "application/json");
        assert_eq!(
            header(&headers, "lambda-runtime-invoked-function-arn"),
            "arn:aws:lambda:us-east-1:123456789012:function:probe"
        );
        assert!(header(&headers, "lambda-runtime-trace-id").starts_with("Root=1-"));
        let deadline: u128 = header(&headers, "lambda-runtime-deadline-ms").parse().unwrap();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert!(
            deadline > (now + Duration::from_secs(800)).as_millis(),
            "{deadline} vs {now:?}"
        );
        let id = header(&headers, "lambda-runtime-aws-request-id").to_owned();
        let (status, _, _) = call(&mut conn, Method::POST, &answer_path(&id, "response"), r#"{"pong":1}"#).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        id
    };
    let (invocation, id) = tokio::join!(invoke, function);
    let invocation = invocation.unwrap();
    assert_eq!(invocation.request_id, id);
    assert_eq!(invocation.body, br#"{"pong":1}"#);
    assert!(!invocation.is_error);
}

/// The clock the benchmarks read: `queued` runs until the function takes the event, `duration`
/// from then until the whole answer is in, so a function that polls late and works long shows
/// both. Lower bounds only: what the emulator adds is measured by `make bench`, not asserted.
#[tokio::test]
async fn times_the_queue_and_the_answer_over_one_connection() {
    const LATE: Duration = Duration::from_millis(150);
    const WORK: Duration = Duration::from_millis(100);
    let api = RuntimeApi::start("probe").await.unwrap();
    let started = Instant::now();
    let function = async {
        tokio::time::sleep(LATE).await;
        echo_function(&api, 2, WORK).await
    };
    let invocations = async {
        let first = api.invoke(br#"{"n":1}"#.to_vec(), TIMEOUT).await.unwrap();
        let second = api.invoke(br#"{"n":2}"#.to_vec(), TIMEOUT).await.unwrap();
        (first, second)
    };
    let ((first, second), ids) = tokio::join!(invocations, function);
    assert_eq!(ids, [first.request_id.clone(), second.request_id.clone()]);
    assert_ne!(first.request_id, second.request_id);
    assert_eq!(first.body, br#"{"echo":{"n":1}}"#);
    assert_eq!(second.body, br#"{"echo":{"n":2}}"#);
    let first_poll = api.first_poll().unwrap();
    assert!(first_poll >= started + LATE);
    assert!(first.queued >= LATE, "{:?}", first.queued);
    for invocation in [&first, &second] {
        assert!(invocation.duration >= WORK, "{:?}", invocation.duration);
        assert!(invocation.answered_at > first_poll);
    }
    assert!(second.answered_at >= first.answered_at + WORK);
    assert_eq!(api.wait_for_first_poll(TIMEOUT).await.unwrap(), first_poll);
}

#[tokio::test]
async fn passes_on_a_function_error_and_refuses_unknown_ids() {
    let api = RuntimeApi::start("probe").await.unwrap();
    let error = br#"{"errorType":"Boom","errorMessage":"no database"}"#;
    let function = async {
        let mut conn = connect(&api).await;
        let (_, headers, _) = call(&mut conn, Method::GET, NEXT, Bytes::new()).await;
        let id = header(&headers, "lambda-runtime-aws-request-id").to_owned();
        let (status, _, _) = call(&mut conn, Method::POST, &answer_path(&id, "error"), &error[..]).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        (conn, id)
    };
    let (invocation, (mut conn, id)) = tokio::join!(api.invoke(b"{}".to_vec(), TIMEOUT), function);
    let invocation = invocation.unwrap();
    assert!(invocation.is_error);
    assert_eq!(invocation.body, error);

    // Answered already, or never handed out: Lambda's 400.
    for path in [answer_path(&id, "response"), answer_path("no-such-id", "error")] {
        let (status, _, body) = call(&mut conn, Method::POST, &path, "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("InvalidRequestID"));
    }
    for (method, path) in [
        (Method::GET, "/2018-06-01/runtime/invocation/x/response"),
        (Method::POST, NEXT),
        (Method::GET, "/"),
    ] {
        let (status, _, _) = call(&mut conn, method, path, Bytes::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn refuses_an_answer_over_six_megabytes_and_takes_the_next() {
    let api = RuntimeApi::start("probe").await.unwrap();
    let function = async {
        let mut conn = connect(&api).await;
        let (_, headers, _) = call(&mut conn, Method::GET, NEXT, Bytes::new()).await;
        let id = header(&headers, "lambda-runtime-aws-request-id").to_owned();
        let oversized = Request::post(answer_path(&id, "response"))
            .body(Full::new(Bytes::from(vec![b'x'; MAX_BODY + 1])))
            .unwrap();
        // The 413, unless the reset of a connection closed with the body half read beat it to us.
        if let Ok(refused) = conn.send_request(oversized).await {
            assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        }
        // That connection is closed (its body was not read to the end); the answer still counts.
        let mut conn = connect(&api).await;
        let (status, _, _) = call(&mut conn, Method::POST, &answer_path(&id, "response"), "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED);
    };
    let (invocation, ()) = tokio::join!(api.invoke(b"{}".to_vec(), TIMEOUT), function);
    assert_eq!(invocation.unwrap().body, b"{}");
}

#[tokio::test]
async fn an_init_error_ends_the_wait_for_the_first_poll() {
    let api = RuntimeApi::start("probe").await.unwrap();
    let mut conn = connect(&api).await;
    let (status, _, _) = call(
        &mut conn,
        Method::POST,
        "/2018-06-01/runtime/init/error",
        r#"{"errorType":"Config","errorMessage":"DB_SECRET_ARN is not set"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let error = api.wait_for_first_poll(TIMEOUT).await.unwrap_err().to_string();
    assert!(
        error.contains("failed its init") && error.contains("DB_SECRET_ARN is not set"),
        "{error}"
    );
    assert!(api.first_poll().is_none());
}

#[tokio::test]
async fn closes_the_connection_when_asked_and_keeps_it_otherwise() {
    let api = RuntimeApi::start("probe").await.unwrap();
    let mut stream = TcpStream::connect(api.address()).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Both answered on the one connection, which then ends: read_to_end returns.
    let mut answers = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut answers))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answers.matches("HTTP/1.1 404 Not Found").count(), 2, "{answers}");
}

#[tokio::test]
async fn dropping_it_closes_its_port_and_its_connections() {
    let api = RuntimeApi::start("probe").await.unwrap();
    let address = api.address();
    // A function waiting in the long poll.
    let mut waiting = TcpStream::connect(&address).await.unwrap();
    waiting
        .write_all(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    wait_until(|| api.first_poll().is_some()).await;
    drop(api);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, waiting.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(read.is_err() || rest.is_empty(), "answered after the drop: {rest:?}");
    assert!(TcpStream::connect(&address).await.is_err());
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 3 s");
}

/// A Lambda function in bash (`/dev/tcp`), started the way the benchmarks start release
/// binaries: it takes one event, then runs `then` with `$id` and `$event` set.
struct Script {
    dir: PathBuf,
}

impl Script {
    fn new(then: &str) -> (Self, PathBuf) {
        let dir = std::env::temp_dir().join(format!("devstack-runtime-api-{}", devstack::random_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bootstrap");
        let script = format!(
            r#"#!/bin/bash
exec 3<>"/dev/tcp/${{AWS_LAMBDA_RUNTIME_API%:*}}/${{AWS_LAMBDA_RUNTIME_API#*:}}"
printf 'GET {NEXT} HTTP/1.1\r\nHost: lambda\r\n\r\n' >&3
while IFS= read -r line <&3; do
  line=${{line%$'\r'}}
  [ -z "$line" ] && break
  case "${{line,,}}" in
    lambda-runtime-aws-request-id:*) id=${{line#*: }} ;;
    content-length:*) len=${{line#*: }} ;;
  esac
done
read -r -N "$len" event <&3
{then}
"#
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        (Self { dir }, path)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("function.log")
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_spawned_function_sees_only_lambdas_environment_and_answers() {
    let (script, path) = Script::new(
        r#"answer="{\"event\":$event,\"name\":\"$AWS_LAMBDA_FUNCTION_NAME\",\"extra\":\"$EXTRA\",\"home\":\"${HOME:-}\"}"
printf 'POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: lambda\r\nContent-Length: %d\r\n\r\n%s' "$id" "${#answer}" "$answer" >&3
read -r status <&3
echo "answered: $status""#,
    );
    let api = RuntimeApi::start("echo").await.unwrap();
    let env = [("EXTRA".to_owned(), "given".to_owned())];
    let function = api.spawn(&path, "echo", &env, &script.log()).unwrap();
    api.wait_for_first_poll(TIMEOUT).await.unwrap();
    assert!(api.first_poll().unwrap() > function.started);
    let invocation = api.invoke(br#"{"k":"v"}"#.to_vec(), TIMEOUT).await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&invocation.body).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"event": {"k": "v"}, "name": "echo", "extra": "given", "home": ""})
    );
    wait_until(|| std::fs::read_to_string(script.log()).is_ok_and(|l| l.contains("answered: HTTP/1.1 202"))).await;
}

#[tokio::test]
async fn a_function_that_dies_leaves_its_invocation_unanswered() {
    let (script, path) = Script::new("exit 7");
    let api = RuntimeApi::start("dies").await.unwrap();
    let mut function = api.spawn(&path, "dies", &[], &script.log()).unwrap();
    let error = api
        .invoke(b"{}".to_vec(), Duration::from_secs(3))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("got no answer"), "{error}");
    assert!(api.first_poll().is_some());
    wait_until(|| function.exited().is_some()).await;
    assert_eq!(function.exited().and_then(|s| s.code()), Some(7));
}

#[tokio::test]
async fn dropping_a_function_stops_its_process() {
    let (script, path) = Script::new("exec sleep 600");
    let api = RuntimeApi::start("hangs").await.unwrap();
    let function = api.spawn(&path, "hangs", &[], &script.log()).unwrap();
    let pid = function.pid();
    let invoke = api.invoke(b"{}".to_vec(), Duration::from_millis(500)).await;
    assert!(invoke.is_err());
    assert!(alive(pid));
    function.stop();
    assert!(!alive(pid));
}
