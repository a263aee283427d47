//! A fault-injecting stand-in in front of an AWS emulator: it answers the first N requests with a
//! fault as the service sends it (throttling, 429, 5xx) and forwards the rest, so tests can show
//! what a storm of cold starts does to Secrets Manager calls. HTTP/1.1 both ways is hyper's; it
//! listens on 127.0.0.1 only and stops when its handle drops.

use crate::DevstackError;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use tokio::{net::TcpListener, task::JoinHandle};

/// A fault as an AWS JSON-protocol service (Secrets Manager, SSM) sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 `ThrottlingException`: what Secrets Manager answers over its request rate.
    Throttling,
    /// HTTP 429 `TooManyRequestsException`.
    TooManyRequests,
    /// HTTP 500 `InternalServiceError`.
    InternalError,
    /// HTTP 503 `ServiceUnavailable`.
    ServiceUnavailable,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 4] = [
        Fault::Throttling,
        Fault::TooManyRequests,
        Fault::InternalError,
        Fault::ServiceUnavailable,
    ];

    fn status_and_type(self) -> (StatusCode, &'static str) {
        match self {
            Self::Throttling => (StatusCode::BAD_REQUEST, "ThrottlingException"),
            Self::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
            Self::InternalError => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServiceError"),
            Self::ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        }
    }

    fn response(self) -> Response<Full<Bytes>> {
        let (status, kind) = self.status_and_type();
        let body = format!(r#"{{"__type":"{kind}","message":"injected by devstack"}}"#);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert("x-amzn-errortype", hyper::header::HeaderValue::from_static(kind));
        response
    }
}

#[derive(Default)]
struct Counts {
    seen: AtomicUsize,
    injected: AtomicUsize,
    forwarded: AtomicUsize,
}

/// A running stand-in. Dropping it stops it.
pub struct FaultProxy {
    port: u16,
    counts: Arc<Counts>,
    server: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1; answers the first `first` requests with `fault` and
    /// forwards every later one to `127.0.0.1:target_port`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(target_port: u16, fault: Fault, first: usize) -> Result<Self, DevstackError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| DevstackError::io("bind the fault proxy", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| DevstackError::io("bind the fault proxy", e))?
            .port();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let counts = counts.clone();
                        async move {
                            if counts.seen.fetch_add(1, Ordering::SeqCst) < first {
                                counts.injected.fetch_add(1, Ordering::SeqCst);
                                // Read the request to its end, as the service does, before answering.
                                let _ = req.into_body().collect().await;
                                return Ok::<_, hyper::Error>(fault.response());
                            }
                            counts.forwarded.fetch_add(1, Ordering::SeqCst);
                            Ok(forward(req, target_port).await.unwrap_or_else(|_| {
                                let mut r = Response::new(Full::new(Bytes::from_static(b"upstream failed")));
                                *r.status_mut() = StatusCode::BAD_GATEWAY;
                                r
                            }))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { port, counts, server })
    }

    /// The URL to point `AWS_ENDPOINT_URL` (or an SDK configuration's endpoint) at.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests answered with the fault.
    pub fn injected(&self) -> usize {
        self.counts.injected.load(Ordering::SeqCst)
    }

    /// Requests forwarded to the emulator.
    pub fn forwarded(&self) -> usize {
        self.counts.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Sends `req` to the emulator on a connection of its own (moto closes each one anyway).
async fn forward(
    req: Request<Incoming>,
    port: u16,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let upstream = sender.send_request(Request::from_parts(parts, Full::new(body))).await?;
    let (parts, body) = upstream.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
