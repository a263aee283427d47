//! The cold path: a fresh process of the release items-api binary to its first answered request,
//! against the floor, a fresh process of `cold-floor` doing the same operations with no
//! application code. The two alternate, run after run, so both see the same machine.

use crate::{
    AppSetup, Ctx, Result,
    events::Op,
    function::{self, Environment},
    procfs,
    stats::Samples,
};
use std::{
    process::Stdio,
    time::{Duration, SystemTime},
};

/// One fresh items-api process.
#[derive(Debug, Clone, Copy)]
pub struct AppRun {
    /// Start to the first `GET /next` (the runtime's init).
    pub init: Duration,
    /// The first invocation (GetSecretValue, connect, schema check, statements, query).
    pub first: Duration,
    /// Start to the answer.
    pub total: Duration,
    /// CPU of the process up to the answer (10 ms ticks).
    pub cpu: Duration,
    /// Peak RSS up to the answer.
    pub peak_rss: u64,
}

/// One fresh `cold-floor` process.
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    /// Start to `main`.
    pub exec: Duration,
    /// `main` to SDK configuration loaded.
    pub sdk: Duration,
    /// GetSecretValue.
    pub secret: Duration,
    /// TCP + TLS + SCRAM.
    pub connect: Duration,
    /// The query.
    pub query: Duration,
    /// Start to the answer.
    pub total: Duration,
}

/// Both series.
#[derive(Debug, Clone, Default)]
pub struct Cold {
    /// items-api runs.
    pub app: Vec<AppRun>,
    /// Floor runs.
    pub floor: Vec<FloorRun>,
    /// GetSecretValue calls made by all the items-api processes.
    pub get_secret_value: usize,
}

impl Cold {
    /// items-api totals.
    pub fn app_totals(&self) -> Samples {
        Samples::new(self.app.iter().map(|r| r.total).collect())
    }
    /// Floor totals.
    pub fn floor_totals(&self) -> Samples {
        Samples::new(self.floor.iter().map(|r| r.total).collect())
    }
}

async fn app_run(ctx: &Ctx, arn: &str) -> Result<AppRun> {
    let env = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(ctx, arn, &[]),
    )
    .await?;
    // The event is waiting before the process starts, as it is on Lambda.
    let api = env.api.clone();
    let event = tokio::spawn(async move {
        api.invoke(
            crate::events::event_bytes(Op::List, "cold-start"),
            function::INVOKE_TIMEOUT,
        )
        .await
    });
    let invocation = event.await??;
    let status = function::http_status(&invocation)?;
    if status != 200 {
        return Err(format!("cold start answered {status}").into());
    }
    let pid = env.pid();
    let run = AppRun {
        init: env
            .api
            .first_poll()
            .map(|t| t.saturating_duration_since(env.process.started))
            .unwrap_or_default(),
        first: invocation.duration,
        total: invocation.answered_at.saturating_duration_since(env.process.started),
        cpu: procfs::cpu_ticks(pid).unwrap_or_default(),
        peak_rss: env.peak_rss(),
    };
    env.stop();
    Ok(run)
}

fn at(v: &serde_json::Value, key: &str) -> Result<SystemTime> {
    let ns: u64 = v[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("cold-floor printed no {key}"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
}

fn between(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

async fn floor_run(ctx: &Ctx, arn: &str) -> Result<FloorRun> {
    let env = function::items_api_env(ctx, arn, &[]);
    let started_at = SystemTime::now();
    let child = tokio::process::Command::new(&ctx.bins.floor)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(function::INVOKE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| "cold-floor did not finish in time")??;
    if !out.status.success() {
        return Err(format!("cold-floor failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if v["rows"] != 50 {
        return Err(format!("cold-floor read {} rows, expected 50", v["rows"]).into());
    }
    let (main, sdk, secret, connected, answered) = (
        at(&v, "main_entered")?,
        at(&v, "sdk_loaded")?,
        at(&v, "secret_fetched")?,
        at(&v, "connected")?,
        at(&v, "answered")?,
    );
    Ok(FloorRun {
        exec: between(started_at, main),
        sdk: between(main, sdk),
        secret: between(sdk, secret),
        connect: between(secret, connected),
        query: between(connected, answered),
        total: between(started_at, answered),
    })
}

/// `runs` of each, alternating; a warm-up pair first (page cache, Postgres's catalogue caches).
///
/// # Errors
/// A failed run.
pub async fn measure(ctx: &Ctx, setup: &AppSetup, runs: usize) -> Result<Cold> {
    let app_secret = ctx.secret_for(setup, "bench-cold").await?;
    let floor_secret = ctx.secret_for(setup, "bench-floor").await?;
    let (app_arn, floor_arn) = (&app_secret.arn, &floor_secret.arn);
    app_run(ctx, app_arn).await?;
    floor_run(ctx, floor_arn).await?;
    let needle = &app_secret.needle;
    let before = ctx.stack.moto.count_calls("GetSecretValue", needle)?;
    let mut cold = Cold::default();
    for _ in 0..runs {
        cold.app.push(app_run(ctx, app_arn).await?);
        cold.floor.push(floor_run(ctx, floor_arn).await?);
    }
    cold.get_secret_value = ctx
        .stack
        .moto
        .count_calls("GetSecretValue", needle)?
        .saturating_sub(before);
    Ok(cold)
}
