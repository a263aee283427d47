//! A local stand-in for CloudFormation's side of a custom resource: it builds the request events
//! (from the fixtures, shaped like aws-lambda-rust-runtime's real ones) and serves their
//! `ResponseURL` over plain HTTP on 127.0.0.1, recording every request it receives.

use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the answer is JSON")
    }
}

/// The server; dropping it stops accepting.
pub struct LocalCloudFormation {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalCloudFormation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalCloudFormation {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    if let Some(r) = read_request(&mut socket).await {
                        sink.lock().unwrap().push(r);
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        Self { port, received, task }
    }

    /// A presigned-looking URL for one request; the signature is recorded as a secret so the leak
    /// check proves it never reaches a log.
    pub fn response_url(&self, request_id: &str) -> String {
        let signature = format!("sig{}", devstack::random_token());
        devstack::evidence::record_secret(&signature);
        format!(
            "http://127.0.0.1:{}/cfn-response/{request_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={signature}",
            self.port
        )
    }

    /// The requests received for `request_id` so far.
    pub fn received(&self, request_id: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.starts_with(&format!("/cfn-response/{request_id}?")))
            .cloned()
            .collect()
    }

    /// Waits for the answer to `request_id`.
    pub async fn answer(&self, request_id: &str, timeout: Duration) -> Received {
        let started = Instant::now();
        loop {
            if let Some(r) = self.received(request_id).into_iter().next() {
                return r;
            }
            assert!(
                started.elapsed() < timeout,
                "no answer to {request_id} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request event of `kind` (Create, Update, Delete) for `secret_id`, answered here.
    pub fn event(&self, kind: &str, secret_id: &str, physical_resource_id: Option<&str>) -> (String, Value) {
        let mut v: Value =
            serde_json::from_str(include_str!("../fixtures/cloudformation-custom-resource-create.json")).unwrap();
        let request_id = uuid::Uuid::new_v4().to_string();
        v["RequestType"] = json!(kind);
        v["RequestId"] = json!(request_id);
        v["ResponseURL"] = json!(self.response_url(&request_id));
        v["ResourceProperties"]["SecretId"] = json!(secret_id);
        if kind != "Create" {
            v["PhysicalResourceId"] = json!(physical_resource_id.unwrap_or("none"));
        }
        if kind == "Update" {
            v["OldResourceProperties"] = v["ResourceProperties"].clone();
        }
        (request_id, v)
    }
}

pub async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        target,
        headers,
        body,
    })
}
