//! The request handler: route, validate, run, answer, log one line.

use crate::{
    db::{ConnectionPool, PoolSettings, Retry, RetryPolicy},
    health,
    item::{ItemInput, Page},
    problem::ApiError,
    routes::{self, Route, truncate},
    typed_json_response,
};
use db_credentials::Database;
use http::{HeaderValue, Response, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, request::RequestContext};
use std::time::Instant;

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Default and bounds of `limit`.
pub const LIMIT_DEFAULT: i64 = 50;
/// Largest `limit`.
pub const LIMIT_MAX: i64 = 1000;

/// Settings of the API itself (the credential settings are db-credentials' `Config`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Open a new database connection for every request. For tests that must exercise the
    /// credential path on every request (rotation under load); never useful in production.
    pub fresh_connection_per_request: bool,
    /// How long and how often a request waits for the database (the default in production; tests
    /// in process may shorten it).
    pub retry: RetryPolicy,
    /// The environment's connection pool.
    pub pool: PoolSettings,
    /// Open the first connection during init: the environment is initialised ahead of traffic
    /// (`AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`), so that costs no request.
    pub eager_init: bool,
}

impl Settings {
    /// Reads the pool's size (`DB_POOL_SIZE`, else `AWS_LAMBDA_MAX_CONCURRENCY`, else 1) and
    /// connection lifetime (`DB_MAX_LIFETIME_SECS`, default 900), whether init is ahead of
    /// traffic (`AWS_LAMBDA_INITIALIZATION_TYPE`), and `ITEMS_API_FRESH_CONNECTION_PER_REQUEST`
    /// (test-only), a boolean read like every other.
    ///
    /// # Errors
    /// An error naming the variable when its value is not a boolean or out of range.
    pub fn from_vars(vars: &db_credentials::config::Vars) -> Result<Self, db_credentials::ConfigError> {
        use db_credentials::config::{bool_var, number_var, var};
        let size = match number_var(vars, "DB_POOL_SIZE", "connections", 1, 1000)? {
            Some(n) => n,
            None => number_var(vars, "AWS_LAMBDA_MAX_CONCURRENCY", "invocations", 1, 1000)?.unwrap_or(1),
        };
        let max_lifetime = number_var(vars, "DB_MAX_LIFETIME_SECS", "seconds", 1, 7 * 86_400)?
            .map_or(crate::db::DEFAULT_MAX_LIFETIME, std::time::Duration::from_secs);
        Ok(Self {
            fresh_connection_per_request: bool_var(vars, "ITEMS_API_FRESH_CONNECTION_PER_REQUEST", false)?,
            retry: RetryPolicy::default(),
            pool: PoolSettings {
                size: usize::try_from(size).unwrap_or(1),
                max_lifetime,
            },
            eager_init: var(vars, "AWS_LAMBDA_INITIALIZATION_TYPE") == Some("provisioned-concurrency"),
        })
    }
}

/// Everything a request needs, built once per execution environment.
pub struct App {
    db: ConnectionPool,
}

impl App {
    /// The application over `database`.
    pub fn new(database: Database, settings: Settings) -> Self {
        Self {
            db: ConnectionPool::new(
                database,
                settings.retry,
                settings.pool,
                settings.fresh_connection_per_request,
            ),
        }
    }

    /// The environment's connections.
    pub fn db(&self) -> &ConnectionPool {
        &self.db
    }

    /// Init ahead of traffic (provisioned concurrency): reads the credentials and opens one
    /// connection now, so the first request is a warm one. A failure is logged and the
    /// environment stays lazy: the first request tries again.
    pub async fn warm_up(&self) {
        match self.db.warm().await {
            Ok(()) => tracing::info!("opened a database connection during init (provisioned concurrency)"),
            Err(e) => tracing::warn!(
                error = %e,
                "could not open a database connection during init; the first request will try again"
            ),
        }
    }

    /// On SIGTERM: closes every connection cleanly, so the server logs a normal disconnect.
    pub async fn shutdown(&self) {
        self.db.close().await;
    }

    /// Handles one request. Never fails: every error is a problem+json response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let stage = stage(&req);
        let raw_path = req.uri().path().to_owned();
        let (path, prefix) = routes::strip_stage(&raw_path, stage.as_deref());
        let matched = routes::route(req.method(), path);
        let template = matched.as_ref().map_or("-", Route::template);
        let result = match matched {
            Ok(route) => self.dispatch(route, &req, prefix).await,
            Err(e) => Err(e),
        };
        let mut cause = None;
        let mut response = result.unwrap_or_else(|e| {
            cause = e.cause();
            if e.status().is_server_error() {
                tracing::warn!(
                    request_id = %request_id,
                    status = e.status().as_u16(),
                    cause = cause.unwrap_or("defect"),
                    detail = %e,
                    "request failed"
                );
            }
            e.into_response(truncate(&raw_path, 200), &request_id)
        });
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            metrics::counter!(db_credentials::metric::SERVICE_UNAVAILABLE).increment(1);
        }
        tracing::info!(
            request_id = %request_id,
            method = %req.method(),
            route = template,
            status = response.status().as_u16(),
            cause = cause.unwrap_or("-"),
            latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "request"
        );
        response
    }

    async fn dispatch(&self, route: Route, req: &Request, prefix: &str) -> Result<Response<Body>, ApiError> {
        match route {
            Route::Health => Ok(health::liveness()),
            Route::HealthDb => Ok(health::database(&self.db).await),
            Route::ListItems => {
                let (limit, offset) = paging(req)?;
                let items = self
                    .db
                    .run(
                        Retry::Idempotent,
                        |live| async move { live.store.list(limit, offset).await },
                    )
                    .await
                    .map_err(ApiError::from_db)?;
                typed_json_response(
                    StatusCode::OK,
                    &Page {
                        items: &items,
                        limit,
                        offset,
                    },
                )
            }
            Route::CreateItem => {
                let input = body(req)?;
                let input = &input;
                let item = self
                    .db
                    .run(Retry::Never, |live| async move { live.store.create(input).await })
                    .await
                    .map_err(ApiError::from_db)?;
                let mut response = typed_json_response(StatusCode::CREATED, &item)?;
                if let Ok(location) = HeaderValue::from_str(&format!("{prefix}/items/{}", item.id)) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                Ok(response)
            }
            Route::GetItem(id) => {
                let item = self
                    .db
                    .run(Retry::Idempotent, |live| async move { live.store.get(id).await })
                    .await
                    .map_err(ApiError::from_db)?;
                match item {
                    Some(i) => typed_json_response(StatusCode::OK, &i),
                    None => Err(not_found(id)),
                }
            }
            Route::ReplaceItem(id) => {
                let input = body(req)?;
                let input = &input;
                let item = self
                    .db
                    .run(
                        Retry::Idempotent,
                        |live| async move { live.store.replace(id, input).await },
                    )
                    .await
                    .map_err(ApiError::from_db)?;
                match item {
                    Some(i) => typed_json_response(StatusCode::OK, &i),
                    None => Err(not_found(id)),
                }
            }
            Route::DeleteItem(id) => {
                let done = self
                    .db
                    .run_tracked(Retry::Idempotent, |live| async move { live.store.delete(id).await })
                    .await
                    .map_err(ApiError::from_db)?;
                // DELETE is idempotent: 204 says the item is gone. When an earlier try's connection
                // broke after the statement was sent, that try may have deleted it, so finding
                // nothing now is no proof it never existed: never 404 for a delete that succeeded.
                // 404 only when the try that found nothing was the only one sent.
                if !done.value && !done.after_unknown_outcome {
                    return Err(not_found(id));
                }
                let mut response = Response::new(Body::Empty);
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
            }
        }
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("item {id} does not exist"))
}

fn request_id(req: &Request) -> String {
    if let Some(ctx) = req.lambda_context_ref() {
        return ctx.request_id.clone();
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        _ => None,
    }
    .unwrap_or_else(|| "unknown".to_owned())
}

fn stage(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        _ => None,
    }
}

fn paging(req: &Request) -> Result<(i64, i64), ApiError> {
    let query = req.query_string_parameters_ref();
    let one = |name: &str| -> Result<Option<String>, ApiError> {
        match query.and_then(|q| q.all(name)) {
            None => Ok(None),
            Some(values) if values.len() == 1 => Ok(values.first().map(|v| (*v).to_owned())),
            Some(_) => Err(ApiError::BadRequest(format!("{name} is given more than once"))),
        }
    };
    let limit = match one("limit")? {
        None => LIMIT_DEFAULT,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (1..=LIMIT_MAX).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {LIMIT_MAX}, got {:?}",
                    truncate(&v, 40)
                )));
            }
        },
    };
    let offset = match one("offset")? {
        None => 0,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "offset must be a whole number 0 or more, got {:?}",
                    truncate(&v, 40)
                )));
            }
        },
    };
    Ok((limit, offset))
}

fn body(req: &Request) -> Result<ItemInput, ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge {
            size: bytes.len(),
            limit: MAX_BODY,
        });
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" && !(media.starts_with("application/") && media.ends_with("+json")) {
        let got = if content_type.is_empty() {
            "no Content-Type".to_owned()
        } else {
            format!("Content-Type {:?}", truncate(content_type, 80))
        };
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the item as JSON with Content-Type: application/json (got {got})"
        )));
    }
    ItemInput::parse(bytes)
}
