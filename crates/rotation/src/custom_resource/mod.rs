//! `Custom::DatabaseRole`: the application role items-api logs in as, made in the database by
//! this function for CloudFormation (design §11; `AppDatabaseRole` in `infra/template.yaml`).
//!
//! CloudFormation invokes the function asynchronously with a [`CustomResourceEvent`] and waits
//! for a document PUT to the event's presigned `ResponseURL`. The function:
//!
//! * reads the application secret `SecretId` (`AWSCURRENT`: user, password, database, host or RDS
//!   identifiers, `masterarn`) and the master secret, and logs in as the master, with the same
//!   endpoint and TLS rules as a rotation;
//! * on `Create` and `Update`, makes sure the role exists with only what the API needs
//!   ([`crate::db::Session::ensure_app_role`]): LOGIN with the secret's password (sent as the
//!   server's stored form, never plaintext), CONNECT on its database (PUBLIC's access to it
//!   revoked), its own schema named like it and owned by it, which the API's default
//!   `search_path` (`"$user", public`) puts first; and, on a stack upgraded from a version where the
//!   master owned `public.items`, what the API needs on that table. Whatever is already in place
//!   is left alone, so a repeated `Create` or an `Update` changes nothing;
//! * on `Delete`, changes nothing: the role and its data stay with the database, and `Reason`
//!   says so;
//! * answers `SUCCESS` or `FAILED` (with a reason naming what is wrong, never a password), the
//!   physical id being the role's name, within a bounded time: the work gets the step budget less
//!   [`ANSWER_BUDGET`], which is kept for the PUT and its retries. It returns Ok to Lambda once
//!   the answer is delivered; if it cannot be, an error, so that Lambda's retry of the
//!   asynchronous invocation answers again (every request is idempotent).
//!
//! A malformed event is answered `FAILED` when its envelope (URL, stack, request and logical ids)
//! is usable; otherwise there is nowhere to answer, and the invocation fails with the reason.

pub mod event;
pub mod response;
mod role;

pub use event::{
    CustomResourceEvent, CustomResourceEventError, Envelope, Properties, RESOURCE_TYPE, RequestType, ResponseUrl,
};
pub use response::{HttpsResponder, Respond, RespondError, ResponseDocument, Status};

use crate::{
    Rotator,
    db::Logins,
    event::{RotationEvent, Step},
    secrets::SecretsApi,
};
use db_credentials::rds::RdsEndpoints;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// Kept back from the invocation's budget for answering CloudFormation: the PUT and up to two
/// retries.
pub const ANSWER_BUDGET: Duration = Duration::from_secs(5);

/// What was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// `RequestType`, when it was one of the three.
    pub request_type: Option<RequestType>,
    /// The document's status.
    pub status: Status,
    /// The document's `PhysicalResourceId`.
    pub physical_resource_id: String,
    /// The document's `Reason`.
    pub reason: String,
}

/// Why CloudFormation got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CustomResourceError {
    /// The envelope is unusable: no URL to answer to, or no ids to answer with.
    #[error("{0}; CloudFormation cannot be answered and will give up after the resource's ServiceTimeout")]
    Unanswerable(#[from] CustomResourceEventError),
    /// The answer did not arrive.
    #[error("the {status:?} answer did not reach CloudFormation: {source}")]
    NotDelivered {
        /// The answer that was meant.
        status: Status,
        /// The last attempt's failure.
        #[source]
        source: RespondError,
    },
}

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Rotator<S, L, R> {
    /// Serves one CloudFormation request and answers it through `responder` (see the module
    /// documentation). `deadline` is the Lambda deadline, if known.
    ///
    /// # Errors
    /// [`CustomResourceError`] when no answer could be delivered: the caller returns it to Lambda,
    /// whose retry answers again.
    pub async fn handle_custom_resource<P: Respond>(
        &self,
        payload: &Value,
        deadline: Option<SystemTime>,
        responder: &P,
    ) -> Result<Answered, CustomResourceError> {
        let event = CustomResourceEvent::from_json(payload).inspect_err(|e| {
            tracing::error!(error = %e, "custom resource event cannot be answered");
        })?;
        let span = tracing::info_span!(
            "custom_resource",
            request_type = event.request_type.as_ref().map_or("invalid", |t| t.as_str()),
            logical_resource_id = %event.envelope.logical_resource_id,
            request_id = %event.envelope.request_id,
            stack_id = %event.envelope.stack_id,
            user = tracing::field::Empty,
            host = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let total = self.budget(deadline);
            let answer_budget = ANSWER_BUDGET.min(total / 2);
            let (status, reason, physical) = self.serve(&event, total - answer_budget).await;
            let document = ResponseDocument::new(&event.envelope, status, &reason, &physical);
            let delivered = deliver(responder, &event.envelope.response_url, &document, started + total).await;
            let duration_ms = started.elapsed().as_millis() as u64;
            match &delivered {
                Ok(()) => tracing::info!(
                    status = ?status,
                    physical_resource_id = %document.physical_resource_id,
                    reason = %document.reason,
                    response_url = %event.envelope.response_url,
                    duration_ms,
                    "custom resource answered"
                ),
                Err(e) => tracing::error!(status = ?status, reason = %document.reason, error = %e, duration_ms, "custom resource answer not delivered"),
            }
            delivered.map_err(|source| CustomResourceError::NotDelivered { status, source })?;
            Ok(Answered {
                request_type: event.request_type.as_ref().ok().copied(),
                status,
                physical_resource_id: document.physical_resource_id,
                reason: document.reason,
            })
        }
        .instrument(span)
        .await
    }

    /// What to answer: status, reason, physical id.
    async fn serve(&self, event: &CustomResourceEvent, budget: Duration) -> (Status, String, String) {
        let envelope = &event.envelope;
        let fallback_id = envelope
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| envelope.logical_resource_id.clone());
        let request_type = match &event.request_type {
            Ok(t) => *t,
            Err(e) => return (Status::Failed, e.to_string(), fallback_id),
        };
        if request_type == RequestType::Delete {
            // Nothing to read or log in to: whatever the properties say, the answer is the same.
            return (
                Status::Success,
                format!(
                    "role {fallback_id} and its data are kept: deleting Custom::DatabaseRole never drops the role or its objects, which belong with the database (the resource is retained). Drop the role by hand if it is no longer needed"
                ),
                fallback_id,
            );
        }
        let properties = match &event.properties {
            Ok(p) => p,
            Err(e) => return (Status::Failed, e.to_string(), fallback_id),
        };
        // The rotation plumbing (reading versions, endpoints, TLS, the master's session) is keyed
        // by a rotation event; only its SecretId is used on this path.
        let stand_in = RotationEvent::new(&properties.secret_id, &envelope.request_id, Step::Set);
        let cx = self.ctx(&stand_in, budget);
        match tokio::time::timeout(budget, cx.ensure_app_role(&properties.secret_id)).await {
            Ok(Ok(report)) => (Status::Success, report.reason, report.role),
            // A failed Update keeps the resource's id, so CloudFormation rolls back to it.
            Ok(Err(e)) => (Status::Failed, e.to_string(), fallback_id),
            Err(_) => (
                Status::Failed,
                format!(
                    "did not finish within {} ms; last doing: {}",
                    budget.as_millis(),
                    cx.progress()
                ),
                fallback_id,
            ),
        }
    }
}

/// PUTs `document`, retrying a failed attempt twice, all before `deadline`.
async fn deliver<P: Respond>(
    responder: &P,
    url: &ResponseUrl,
    document: &ResponseDocument,
    deadline: Instant,
) -> Result<(), RespondError> {
    let body = document.to_body();
    let mut last = None;
    for attempt in 0..3u32 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(100) {
            break;
        }
        match responder.put(url, body.clone(), left.min(Duration::from_secs(3))).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(attempt = attempt + 1, error = %e, "answer to CloudFormation failed");
                last = Some(e);
                let pause = Duration::from_millis(200 * u64::from(attempt + 1));
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| RespondError::Put {
        url: url.redacted(),
        detail: "no time left to answer".to_owned(),
    }))
}
