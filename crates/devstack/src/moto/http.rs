//! Plain HTTP/1.1 to moto over hyper, blocking: its control API (`/moto-api/...`) and the raw
//! AWS calls the devstack has no SDK crate for.

use http_body_util::{BodyExt, Full};
use hyper::{
    Request,
    body::Bytes,
    header::{CONNECTION, HOST},
};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// How long a call may wait for moto's answer (a paused server never answers).
const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_with(port, method, path, &[("content-type", "application/json")], body)
}

/// One request to moto on a connection of its own (moto closes each after one answer), made on a
/// thread of its own: callers are sync code and async tests alike, and a runtime cannot be
/// blocked on from inside another.
pub(super) fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let invalid = |e: hyper::http::Error| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, format!("127.0.0.1:{port}"))
        .header(CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(invalid)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                tokio::time::timeout(TIMEOUT, exchange(port, request))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {TIMEOUT:?}"))
                    })?
            })
        })
        .join()
        .map_err(|_| std::io::Error::other("the HTTP thread panicked"))?
    })
}

async fn exchange(port: u16, request: Request<Full<Bytes>>) -> std::io::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
