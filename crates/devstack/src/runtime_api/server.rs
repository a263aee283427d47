//! The HTTP side of the Runtime API, on hyper: routes, the long poll that hands events out, and
//! the answers taken back, with the timestamps [`super::Invocation`] reports.

use super::{DEADLINE, Invocation, MAX_BODY};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex as StdMutex},
    time::{Instant, SystemTime},
};
use tokio::{
    net::TcpListener,
    sync::{Mutex, mpsc, oneshot},
    task::JoinSet,
};

const MAX_HEAD: usize = 64 * 1024;
const PREFIX: &str = "/2018-06-01/runtime/";

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

/// An event waiting for a `GET /next`.
pub(super) struct Queued {
    pub(super) request_id: String,
    /// The event's own headers (request id, trace id), made when it was queued.
    pub(super) headers: [(HeaderName, HeaderValue); 2],
    pub(super) payload: Bytes,
    pub(super) enqueued: Instant,
    pub(super) answer: oneshot::Sender<Invocation>,
}

struct InFlight {
    enqueued: Instant,
    handed_out: Instant,
    answer: oneshot::Sender<Invocation>,
}

/// What the function did before its first event.
#[derive(Default)]
pub(super) struct Polls {
    pub(super) first: Option<Instant>,
    pub(super) init_error: Option<String>,
}

/// What the server and its owner share.
pub(super) struct Shared {
    function_arn: HeaderValue,
    queue: Mutex<mpsc::UnboundedReceiver<Queued>>,
    in_flight: StdMutex<HashMap<String, InFlight>>,
    pub(super) polls: StdMutex<Polls>,
    pub(super) polled: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn new(function_arn: HeaderValue, queue: mpsc::UnboundedReceiver<Queued>) -> Self {
        Self {
            function_arn,
            queue: Mutex::new(queue),
            in_flight: StdMutex::default(),
            polls: StdMutex::default(),
            polled: tokio::sync::Notify::new(),
        }
    }
}

/// Accepts connections until the owner aborts it. Each connection is a task of `connections`, so
/// aborting this one (dropping the [`super::RuntimeApi`]) drops them too: nothing outlives the owner.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    // Real Lambda spells its headers this way; keep-alive and `Connection: close` are hyper's.
    http.title_case_headers(true).max_header_size(MAX_HEAD);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { return };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let service = service_fn(move |request| route(request, shared.clone()));
                let connection = http.serve_connection(TokioIo::new(stream), service);
                connections.spawn(connection);
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

type Reply = Response<Full<Bytes>>;

/// Handing an event out and taking its answer. An `Err` makes hyper drop the connection without
/// an answer: the emulator is stopping, or the peer went away in the middle of a body.
async fn route(request: Request<Incoming>, shared: Arc<Shared>) -> Result<Reply, std::io::Error> {
    Ok(match Route::of(request.method().as_str(), request.uri().path()) {
        Route::Next => {
            let queued = next_event(&shared)
                .await
                .ok_or_else(|| std::io::Error::other("the runtime API has stopped"))?;
            let deadline = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                + DEADLINE;
            let mut response = reply(StatusCode::OK, queued.payload);
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.extend(queued.headers);
            headers.insert(
                "lambda-runtime-deadline-ms",
                HeaderValue::from(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
            );
            headers.insert("lambda-runtime-invoked-function-arn", shared.function_arn.clone());
            // Registered before hyper writes the event, so an answer can never arrive for an
            // unknown id; the write follows in the same poll of the connection, so this is when
            // the event leaves, as Lambda's clock starts.
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
            response
        }
        Route::Response(id) => answer(&shared, id, false, request).await?,
        Route::Error(id) => answer(&shared, id, true, request).await?,
        Route::InitError => {
            let body = match read_body(request).await? {
                Ok(body) => body,
                Err(too_large) => return Ok(too_large),
            };
            if let Ok(mut polls) = shared.polls.lock() {
                polls.init_error = Some(String::from_utf8_lossy(&body).into_owned());
            }
            shared.polled.notify_waiters();
            accepted()
        }
        Route::Unknown => reply(StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
    })
}

/// Takes a function's answer to invocation `id` and passes it to the caller of
/// [`super::RuntimeApi::invoke`], stamped when its last byte arrived.
async fn answer(shared: &Shared, id: String, is_error: bool, request: Request<Incoming>) -> std::io::Result<Reply> {
    let body = match read_body(request).await? {
        Ok(body) => body,
        Err(too_large) => return Ok(too_large),
    };
    let answered_at = Instant::now();
    let entry = shared.in_flight.lock().ok().and_then(|mut m| m.remove(&id));
    let Some(f) = entry else {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(br#"{"errorType":"InvalidRequestID","errorMessage":"unknown request id"}"#),
        ));
    };
    let _ = f.answer.send(Invocation {
        request_id: id,
        body: body.to_vec(),
        is_error,
        queued: f.handed_out.saturating_duration_since(f.enqueued),
        duration: answered_at.saturating_duration_since(f.handed_out),
        answered_at,
    });
    Ok(accepted())
}

/// The whole body, or the 413 to answer when it is larger than [`MAX_BODY`].
async fn read_body(request: Request<Incoming>) -> std::io::Result<Result<Bytes, Reply>> {
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(Ok(collected.to_bytes())),
        Err(e) if e.is::<LengthLimitError>() => Ok(Err(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            Bytes::from_static(br#"{"errorType":"RequestEntityTooLarge","errorMessage":"body larger than 6 MB"}"#),
        ))),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

fn reply(status: StatusCode, body: Bytes) -> Reply {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

fn accepted() -> Reply {
    reply(StatusCode::ACCEPTED, Bytes::from_static(br#"{"status":"OK"}"#))
}

/// Waits for the next queued event, noting the first poll.
async fn next_event(shared: &Shared) -> Option<Queued> {
    if let Ok(mut polls) = shared.polls.lock()
        && polls.first.is_none()
    {
        polls.first = Some(Instant::now());
    }
    shared.polled.notify_waiters();
    shared.queue.lock().await.recv().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
