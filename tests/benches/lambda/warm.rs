//! Warm requests in process: items-api's handler with a live connection against the same SQL
//! sent directly over the same kind of connection (TLS verify-full, prepared statements), sample
//! by sample in the same loop, so both see the same machine.

use crate::{
    BoxError, Ctx, Result,
    events::{self, Op},
    stats::Samples,
};
use db_credentials::{Credentials, SslMode, TlsSettings, connect};
use devstack::AppDatabase;
use items_api::App;
use lambda_http::{Context, Request, RequestExt, Service, request::LambdaRequest};
use secrecy::SecretString;
use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_postgres::{Client, Statement};

/// The statements items-api's store prepares (crates/items-api/src/store.rs), sent directly.
/// Only the ones the benchmark's routes use.
const LIST: &str = "SELECT id, name, description, created_at, updated_at FROM items ORDER BY id LIMIT $1 OFFSET $2";
const GET: &str = "SELECT id, name, description, created_at, updated_at FROM items WHERE id = $1";
const INSERT: &str =
    "INSERT INTO items (name, description) VALUES ($1, $2) RETURNING id, name, description, created_at, updated_at";

/// One route's figures.
#[derive(Debug, Clone)]
pub struct RouteTimes {
    /// The route.
    pub op: Op,
    /// The SQL alone, sent directly.
    pub sql: Samples,
    /// `App::handle` on a ready `lambda_http::Request`.
    pub handler: Samples,
    /// Event JSON in, response JSON out: what the Lambda runtime calls around the handler
    /// (payload deserialisation, lambda_http's conversions, response serialisation).
    pub invocation: Samples,
}

/// A direct connection with the statements prepared.
pub struct Direct {
    client: Client,
    list: Statement,
    get: Statement,
    insert: Statement,
}

impl Direct {
    /// Opens a connection as `app` with the same TLS settings as the function.
    ///
    /// # Errors
    /// When Postgres refuses.
    pub async fn open(ctx: &Ctx, app: &AppDatabase) -> Result<Self> {
        let creds = Credentials::new(
            &app.role,
            SecretString::from(app.password.clone()),
            ctx.stack.postgres.host(),
            ctx.stack.postgres.port(),
            &app.dbname,
            TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some(ctx.stack.postgres.ca_cert()),
            },
        );
        let conn = connect(&creds, Duration::from_secs(5), "bench-direct").await?;
        let client = conn.client;
        Ok(Self {
            list: client.prepare(LIST).await?,
            get: client.prepare(GET).await?,
            insert: client.prepare(INSERT).await?,
            client,
        })
    }

    /// Runs `op`'s statement and takes its rows; returns the time it took.
    ///
    /// # Errors
    /// The database error.
    pub async fn time(&self, op: Op) -> Result<Duration> {
        let started = Instant::now();
        let rows = match op {
            Op::List => self.client.query(&self.list, &[&50i64, &0i64]).await?,
            Op::Get(id) => self.client.query(&self.get, &[&id]).await?,
            Op::Create => {
                self.client
                    .query(&self.insert, &[&"benchmark item", &Some("written by make bench")])
                    .await?
            }
        };
        let elapsed = started.elapsed();
        let expected = if op == Op::List { 50 } else { 1 };
        if rows.len() != expected {
            return Err(format!("{}: {} rows, expected {expected}", op.label(), rows.len()).into());
        }
        Ok(elapsed)
    }
}

/// A `lambda_http::Request` for `op`, built from the event as the runtime would.
pub fn request(op: Op, request_id: &str) -> Result<Request> {
    let json = events::event(op, request_id).to_string();
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    Ok(lambda_http::request::from_str(&json)?.with_lambda_context(context))
}

/// The HTTP status of a handler's response; an error unless 2xx.
pub fn check(op: Op, status: u16) -> Result<()> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{} answered {status}", op.label()).into())
    }
}

/// Measures the three routes: `samples` of each layer per route after `warmup` rounds.
///
/// # Errors
/// A failed request or query.
pub async fn measure(app: &Arc<App>, direct: &Direct, get_id: i64, samples: usize) -> Result<Vec<RouteTimes>> {
    let warmup = (samples / 10).max(20);
    // Built once, as lambda_http::run_concurrent builds it around the handler.
    let shared = app.clone();
    let mut adapter = lambda_http::Adapter::from(lambda_http::service_fn(move |req: Request| {
        let app = shared.clone();
        async move { Ok::<_, Infallible>(app.handle(req).await) }
    }));
    let mut out = Vec::new();
    for op in [Op::List, Op::Get(get_id), Op::Create] {
        let (mut sql, mut handler, mut invocation) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..warmup + samples {
            let id = format!("warm-{}-{i}", op.label().len());
            let d_sql = direct.time(op).await?;

            let req = request(op, &id)?;
            let started = Instant::now();
            let response = app.handle(req).await;
            let d_handler = started.elapsed();
            check(op, response.status().as_u16())?;

            // Event bytes in, response bytes out: the work the runtime wraps around the handler.
            let bytes = events::event_bytes(op, &id);
            let started = Instant::now();
            let payload: LambdaRequest = serde_json::from_slice(&bytes)?;
            let mut context = Context::default();
            context.request_id = id.clone();
            let response = adapter
                .call(lambda_http::LambdaEvent::new(payload, context))
                .await
                .map_err(|e: Infallible| -> BoxError { match e {} })?;
            let out = serde_json::to_vec(&response)?;
            let d_invocation = started.elapsed();
            let status = serde_json::from_slice::<serde_json::Value>(&out)?["statusCode"]
                .as_u64()
                .unwrap_or(0);
            check(op, u16::try_from(status).unwrap_or(0))?;
            if i >= warmup {
                sql.push(d_sql);
                handler.push(d_handler);
                invocation.push(d_invocation);
            }
        }
        out.push(RouteTimes {
            op,
            sql: Samples::new(sql),
            handler: Samples::new(handler),
            invocation: Samples::new(invocation),
        });
    }
    Ok(out)
}
