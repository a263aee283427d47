//! The answer to CloudFormation: a JSON document PUT to the presigned `ResponseURL`, without a
//! `Content-Type` (the URL is signed for none), within a bounded time.
//!
//! The HTTP client is hyper with hyper-rustls, the same stack (and the same trust in the system's
//! certificates) the AWS SDK already uses for every other call of this function: no second TLS
//! library, and nothing new in the binary but a few calls into crates it already links.

use super::event::{Envelope, ResponseUrl};
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Serialize;
use std::{future::Future, time::Duration};

/// CloudFormation refuses response documents over 4096 bytes; the reason is cut well below that.
const MAX_REASON: usize = 2000;

/// `SUCCESS` or `FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// The resource is in the state asked for.
    #[serde(rename = "SUCCESS")]
    Success,
    /// It is not; `Reason` says why.
    #[serde(rename = "FAILED")]
    Failed,
}

/// The response document CloudFormation reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseDocument {
    /// SUCCESS or FAILED.
    pub status: Status,
    /// What was done, or why not. Never a password.
    pub reason: String,
    /// The resource's stable id: the role's name.
    pub physical_resource_id: String,
    /// Echoed from the event.
    pub stack_id: String,
    /// Echoed from the event.
    pub request_id: String,
    /// Echoed from the event.
    pub logical_resource_id: String,
    /// Attributes for `Fn::GetAtt`: none.
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl ResponseDocument {
    /// The answer to `envelope`.
    pub fn new(envelope: &Envelope, status: Status, reason: &str, physical_resource_id: &str) -> Self {
        let reason = if reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… (the rest is in the rotation function's log)", &reason[..cut])
        } else {
            reason.to_owned()
        };
        Self {
            status,
            reason,
            physical_resource_id: physical_resource_id.to_owned(),
            stack_id: envelope.stack_id.clone(),
            request_id: envelope.request_id.clone(),
            logical_resource_id: envelope.logical_resource_id.clone(),
            data: serde_json::Map::new(),
        }
    }

    /// The body to PUT.
    pub fn to_body(&self) -> Vec<u8> {
        // Strings and an empty map: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why the answer did not arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// No TLS set-up (no system certificates).
    #[error("cannot set up HTTPS for the response: {0}")]
    Setup(String),
    /// The PUT failed or timed out.
    #[error("PUT to {url} failed: {detail}")]
    Put {
        /// The URL without its signature.
        url: String,
        /// What happened (never the signature or the response body, which can echo it).
        detail: String,
    },
}

/// Sends an answer. [`HttpsResponder`] in production; the tests' local server answers over
/// plain HTTP on 127.0.0.1 through the same client.
pub trait Respond: Send + Sync {
    /// One PUT of `body` to `url`, within `timeout`.
    fn put(
        &self,
        url: &ResponseUrl,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), RespondError>> + Send;
}

/// hyper over hyper-rustls with the system's root certificates, HTTP/1.1.
#[derive(Debug, Clone)]
pub struct HttpsResponder {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpsResponder {
    /// A client for `https` URLs (and `http` ones, which [`ResponseUrl`] admits only to
    /// loopback addresses).
    ///
    /// # Errors
    /// [`RespondError::Setup`] when the system's certificates cannot be read.
    pub fn new() -> Result<Self, RespondError> {
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| RespondError::Setup(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl Respond for HttpsResponder {
    async fn put(&self, url: &ResponseUrl, body: Vec<u8>, timeout: Duration) -> Result<(), RespondError> {
        let failed = |detail: String| RespondError::Put {
            url: url.redacted(),
            detail,
        };
        let request = http::Request::put(url.uri().clone())
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failed(e.to_string()))?;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| failed(format!("no answer within {} ms", timeout.as_millis())))?
            .map_err(|e| {
                // hyper-util's Display is terse ("client error (Connect)"); the chain says why.
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    source = s.source();
                }
                failed(detail)
            })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(failed(format!("HTTP {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custom_resource::event::CustomResourceEvent;

    #[test]
    fn the_document_has_exactly_cloudformations_keys() {
        let event: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/cloudformation-custom-resource-create.json"
        ))
        .unwrap();
        let event = CustomResourceEvent::from_json(&event).unwrap();
        let doc = ResponseDocument::new(&event.envelope, Status::Success, "made it", "items_app");
        let v: serde_json::Value = serde_json::from_slice(&doc.to_body()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "Data",
                "LogicalResourceId",
                "PhysicalResourceId",
                "Reason",
                "RequestId",
                "StackId",
                "Status"
            ]
        );
        assert_eq!(v["Status"], "SUCCESS");
        assert_eq!(v["Data"], serde_json::json!({}));
        assert_eq!(v["RequestId"], "49347ca5-c603-44e5-a34b-10cf1854a887");
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_the_4_kib_limit() {
        let event: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/cloudformation-custom-resource-create.json"
        ))
        .unwrap();
        let event = CustomResourceEvent::from_json(&event).unwrap();
        let doc = ResponseDocument::new(&event.envelope, Status::Failed, &"é".repeat(5000), "x");
        assert!(doc.to_body().len() < 4096);
        assert!(doc.reason.ends_with("log)"));
    }
}
