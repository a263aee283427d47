//! The release items-api binary under the Runtime API: the warm mix (Lambda's billed duration
//! against the direct SQL), Secrets Manager calls, peak memory, and concurrency.

use crate::{
    AppSetup, Ctx, Result,
    events::Op,
    function::{self, Environment},
    procfs,
    stats::Samples,
    warm::{self, Direct},
};
use items_api::App;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// One route of the warm mix through the binary.
#[derive(Debug, Clone)]
pub struct BinaryRoute {
    /// The route.
    pub op: Op,
    /// The same SQL sent directly, interleaved with the invocations.
    pub sql: Samples,
    /// Handing the event out to receiving the answer: what Lambda bills.
    pub duration: Samples,
}

/// The warm mix through one environment.
#[derive(Debug, Clone)]
pub struct WarmMix {
    /// Per route.
    pub routes: Vec<BinaryRoute>,
    /// Warm invocations served (the first, cold one not counted).
    pub invocations: u64,
    /// GetSecretValue calls for this environment's secret, cold start included.
    pub get_secret_value: usize,
    /// DescribeSecret calls.
    pub describe_secret: usize,
    /// Peak RSS of the process after the run.
    pub peak_rss: u64,
    /// Its anonymous and file-backed resident memory at the end.
    pub rss_anon_file: (u64, u64),
    /// CPU of the process per warm invocation (whole-life CPU minus init and first request).
    pub cpu_per_invocation: Duration,
    /// Threads of the process.
    pub threads: usize,
}

/// Runs `invocations` of the mix (list, get, create in turn) through a fresh environment.
///
/// # Errors
/// A failed invocation or query.
pub async fn warm_mix(ctx: &Ctx, setup: &AppSetup, direct: &Direct, invocations: u64) -> Result<WarmMix> {
    let secret = ctx.secret_for(setup, "bench-warm").await?;
    let env = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(ctx, &secret.arn, &[]),
    )
    .await?;
    env.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    function::request(&env, Op::List, "cold").await?;
    let cpu_after_first = procfs::cpu_ticks(env.pid()).unwrap_or_default();

    let ops = [Op::List, Op::Get(setup.get_id), Op::Create];
    let mut samples: Vec<(Vec<Duration>, Vec<Duration>)> = vec![(Vec::new(), Vec::new()); ops.len()];
    for i in 0..invocations {
        let k = (i % ops.len() as u64) as usize;
        let op = ops[k];
        let sql = direct.time(op).await?;
        let invocation = function::request(&env, op, &format!("warm-{i}")).await?;
        samples[k].0.push(sql);
        samples[k].1.push(invocation.duration);
    }
    let cpu = procfs::cpu_ticks(env.pid())
        .unwrap_or_default()
        .saturating_sub(cpu_after_first);
    let peak_rss = env.peak_rss();
    let rss_anon_file = (
        procfs::status_bytes(env.pid(), "RssAnon").unwrap_or(0),
        procfs::status_bytes(env.pid(), "RssFile").unwrap_or(0),
    );
    let threads = procfs::threads(env.pid()).unwrap_or(0);
    env.stop();
    Ok(WarmMix {
        routes: ops
            .iter()
            .zip(samples)
            .map(|(op, (sql, duration))| BinaryRoute {
                op: *op,
                sql: Samples::new(sql),
                duration: Samples::new(duration),
            })
            .collect(),
        invocations,
        get_secret_value: ctx.stack.moto.count_calls("GetSecretValue", &secret.needle)?,
        describe_secret: ctx.stack.moto.count_calls("DescribeSecret", &secret.needle)?,
        peak_rss,
        rss_anon_file,
        cpu_per_invocation: cpu / u32::try_from(invocations.max(1)).unwrap_or(u32::MAX),
        threads,
    })
}

/// Secrets Manager calls with a short TTL and a new connection for every request.
#[derive(Debug, Clone)]
pub struct TtlCalls {
    /// `DB_SECRET_TTL_SECS`.
    pub ttl: Duration,
    /// How long requests were sent.
    pub elapsed: Duration,
    /// Invocations served (each with its own new connection).
    pub invocations: u64,
    /// GetSecretValue calls, cold start included.
    pub get_secret_value: usize,
    /// DescribeSecret calls.
    pub describe_secret: usize,
    /// Latency of these invocations (connect included).
    pub duration: Samples,
}

/// Sends `GET /items?limit=50` for `run` with `DB_SECRET_TTL_SECS=ttl` and
/// `ITEMS_API_FRESH_CONNECTION_PER_REQUEST=true`.
///
/// # Errors
/// A failed invocation.
pub async fn ttl_calls(ctx: &Ctx, setup: &AppSetup, ttl: Duration, run: Duration) -> Result<TtlCalls> {
    let secret = ctx.secret_for(setup, "bench-ttl").await?;
    let ttl_secs = ttl.as_secs().to_string();
    let env = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(
            ctx,
            &secret.arn,
            &[
                ("DB_SECRET_TTL_SECS", &ttl_secs),
                ("ITEMS_API_FRESH_CONNECTION_PER_REQUEST", "true"),
            ],
        ),
    )
    .await?;
    env.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    let durations = Mutex::new(Vec::new());
    let (invocations, elapsed) = function::for_duration(run, |i| {
        let env = &env;
        let durations = &durations;
        async move {
            let invocation = function::request(env, Op::List, &format!("ttl-{i}")).await?;
            if let Ok(mut d) = durations.lock() {
                d.push(invocation.duration);
            }
            Ok(())
        }
    })
    .await?;
    env.stop();
    Ok(TtlCalls {
        ttl,
        elapsed,
        invocations,
        get_secret_value: ctx.stack.moto.count_calls("GetSecretValue", &secret.needle)?,
        describe_secret: ctx.stack.moto.count_calls("DescribeSecret", &secret.needle)?,
        duration: Samples::new(durations.into_inner().unwrap_or_default()),
    })
}

/// Throughput and latency with `n` concurrent invocations of one environment.
#[derive(Debug, Clone)]
pub struct Concurrency {
    /// Concurrent invocations.
    pub n: usize,
    /// Requests per second.
    pub throughput: f64,
    /// Latency of each request.
    pub latency: Samples,
}

/// The release binary with `AWS_LAMBDA_MAX_CONCURRENCY=n` and `n` clients sending the mix;
/// latency is from queueing the event to receiving the answer.
///
/// # Errors
/// A failed invocation.
pub async fn concurrency_binary(ctx: &Ctx, setup: &AppSetup, n: usize, run: Duration) -> Result<Concurrency> {
    let n_text = n.to_string();
    let env = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(ctx, &setup.secret.arn, &[("AWS_LAMBDA_MAX_CONCURRENCY", &n_text)]),
    )
    .await?;
    env.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    function::request(&env, Op::List, "cold").await?;
    let env = Arc::new(env);
    let ops = [Op::List, Op::Get(setup.get_id), Op::Create];
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..n {
        let env = env.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = c;
            while started.elapsed() < run {
                let invocation = function::request(&env, ops[i % ops.len()], &format!("c{c}-{i}")).await?;
                latencies.push(invocation.queued + invocation.duration);
                i += 1;
            }
            Ok::<_, crate::BoxError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await??);
    }
    let elapsed = started.elapsed();
    if let Ok(env) = Arc::try_unwrap(env) {
        env.stop();
    }
    Ok(Concurrency {
        n,
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        latency: Samples::new(latencies),
    })
}

/// The same with the handler in process: `n` tasks share one `App`, whose pool holds one
/// connection (the harness sets neither `DB_POOL_SIZE` nor `AWS_LAMBDA_MAX_CONCURRENCY`).
///
/// # Errors
/// A failed request.
pub async fn concurrency_in_process(app: &Arc<App>, get_id: i64, n: usize, run: Duration) -> Result<Concurrency> {
    let ops = [Op::List, Op::Get(get_id), Op::Create];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..n {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = c;
            while started.elapsed() < run {
                let op = ops[i % ops.len()];
                let req = warm::request(op, &format!("p{c}-{i}"))?;
                let t = Instant::now();
                let response = app.handle(req).await;
                latencies.push(t.elapsed());
                warm::check(op, response.status().as_u16())?;
                i += 1;
            }
            Ok::<_, crate::BoxError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    Ok(Concurrency {
        n,
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        latency: Samples::new(latencies),
    })
}
