//! `/health` and `/health/db`.

use crate::{
    db::{ConnectionPool, WriterStatus},
    json_response,
    problem::ApiError,
};
use db_credentials::Condition;
use db_credentials::secrets_manager::Stage;
use http::{Response, StatusCode, header};
use lambda_http::Body;
use serde_json::{Value, json};
use std::time::Instant;

/// `GET /health`: the function runs. Touches nothing.
pub fn liveness() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /health/db`: a connection (opened if needed), `SELECT 1` timed, where the credentials
/// came from (the connection's version, and whether it is still the current one), TLS. 503 with the reason when unhealthy, and what the environment knows about its
/// writer: `failover`, the `role` of the node the endpoint leads to, `since_last_writer_ms`. The endpoint is as public as the API, so
/// the body names no secret ARN, host, user or raw AWS error: those go to the log, with the
/// request id, for operators.
pub async fn database(db: &ConnectionPool) -> Response<Body> {
    let status = db.database().provider().status();
    let cache = status.cache.clone().unwrap_or_default();
    let mut credentials = json!({
        "source": status.source.as_str(),
        "version_id": cache.version_id,
        "stage": cache.stage.map(Stage::label),
        "stale": cache.stale,
    });
    // No waiting here: while the environment backs off, the last attempt's error is the answer.
    let live = match db.acquire(None).await {
        Ok(lease) => lease,
        Err(e) => {
            let reason = ApiError::from(&e);
            tracing::error!(
                error = %e,
                secret_id = status.secret_id.as_deref().unwrap_or("-"),
                last_secret_error = cache.last_error.as_deref().unwrap_or("-"),
                "health check: database unavailable"
            );
            return unhealthy(reason, credentials, db.writer_status());
        }
    };
    let started = Instant::now();
    let ping = tokio::time::timeout(
        crate::db::QUERY_TIMEOUT,
        live.store.connection().client.simple_query("SELECT 1"),
    )
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !matches!(ping, Ok(Ok(_))) {
        db.discard(live, Condition::ConnectionLost);
        return unhealthy(
            ApiError::Unavailable {
                detail: "the database did not answer SELECT 1".into(),
                retry_after: 2,
                cause: Condition::ConnectionLost.as_str(),
            },
            credentials,
            db.writer_status(),
        );
    }
    let info = live.store.connection().info.clone();
    db.release(live);
    // The version this connection logged in with: a session outlives the rotation that replaced
    // its password, so it can stay on an old version for the life of the connection. Beside it,
    // the version new connections would use now (what AWSCURRENT was at the cache's last check).
    credentials["version_id"] = json!(info.origin.version_id);
    credentials["stage"] = json!(info.origin.stage.map(Stage::label));
    let (current, is_current, checked_s_ago) = match db.database().provider().revalidated_status().await {
        Ok(s) => match s.cache {
            Some(c) => {
                let current = (c.stage == Some(Stage::Current)).then_some(c.version_id).flatten();
                let is_current = current.is_some() && current == info.origin.version_id;
                let age = c.checked_at.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs());
                credentials["stale"] = json!(c.stale);
                (current, Some(is_current), age)
            }
            // Versionless sources (SSM, IAM, fixed): nothing to compare.
            None => (None, None, None),
        },
        Err(e) => {
            tracing::warn!(error = %e, "health check: cannot tell whether the connection's version is still current");
            (None, None, None)
        }
    };
    credentials["current_version_id"] = json!(current);
    credentials["is_current"] = json!(is_current);
    credentials["checked_s_ago"] = json!(checked_s_ago);
    json_response(
        StatusCode::OK,
        &json!({
            "status": "healthy",
            "database": "postgresql",
            "connection": "active",
            "latency_ms": (latency_ms * 1000.0).round() / 1000.0,
            "credentials": credentials,
            "tls": {"in_use": info.tls_in_use, "mode": info.tls_mode.as_str()},
            "connection_age_s": info.opened_at.elapsed().as_secs(),
            "failover": false,
            "role": "writer",
        }),
    )
}

fn unhealthy(reason: ApiError, credentials: Value, writer: WriterStatus) -> Response<Body> {
    let retry_after = match &reason {
        ApiError::Unavailable { retry_after, .. } => *retry_after,
        _ => 5,
    };
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({
            "status": "unhealthy",
            "database": "postgresql",
            "connection": "failed",
            "reason": reason.to_string(),
            "condition": reason.cause(),
            "credentials": credentials,
            // Why no writer: a failover in progress, what the endpoint leads to now, and how long
            // since a writer last answered this environment.
            "failover": writer.failover,
            "role": writer.role,
            "since_last_writer_ms": writer.since_last_writer.map(|d| d.as_millis() as u64),
        }),
    );
    response.headers_mut().insert(header::RETRY_AFTER, retry_after.into());
    response
}
