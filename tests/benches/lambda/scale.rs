//! Issue 13's figures, each a ratio within this run: what taking a pooled connection costs a
//! request, the pool of one environment serving 16
//! invocations at once against a database made slow on purpose, eager against lazy init to the
//! first answer, and the warm path through the Runtime API against a function that answers the
//! same body from memory.

use crate::{
    AppSetup, Ctx, Result,
    events::{self, Op},
    function::{self, Environment},
    stats::Samples,
    warm::Direct,
};
use items_api::{App, db::Retry};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Invocations the one environment serves at once (`AWS_LAMBDA_MAX_CONCURRENCY`) and clients
/// sending them.
pub const CONCURRENT: usize = 16;

/// What the policy's function sleeps per row, in seconds (`pg_sleep`'s argument).
pub const SLEEP_SECS: f64 = 0.02;

/// What the pool adds to every request, in process and without SQL.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// `ConnectionPool::acquire` then `release` of the one warm connection.
    pub lease: Samples,
    /// `ConnectionPool::run` around an operation that sends nothing: the lease, the statement
    /// timeout and the retry loop's bookkeeping.
    pub run: Samples,
}

/// Measures [`Checkout`] on `app`'s pool (warm: the handler has served requests).
///
/// # Errors
/// When no connection can be had.
pub async fn checkout(app: &App, samples: usize) -> Result<Checkout> {
    let db = app.db();
    let mut lease = Vec::with_capacity(samples);
    let mut run = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let l = db.acquire(None).await?;
        db.release(l);
        lease.push(started.elapsed());
        let started = Instant::now();
        db.run(Retry::Idempotent, |_| async { Ok::<_, tokio_postgres::Error>(()) })
            .await?;
        run.push(started.elapsed());
    }
    Ok(Checkout {
        lease: Samples::new(lease),
        run: Samples::new(run),
    })
}

/// One pool size under [`CONCURRENT`] clients.
#[derive(Debug, Clone)]
pub struct PoolRun {
    /// `DB_POOL_SIZE`.
    pub size: usize,
    /// Requests per second answered 2xx.
    pub throughput: f64,
    /// From queueing the event to the answer, 2xx only.
    pub latency: Samples,
    /// Answers other than 2xx (a 503 when a request waited its whole budget for a connection).
    pub failed: usize,
}

/// The pool figures.
#[derive(Debug, Clone)]
pub struct Pool {
    /// `GET /items/{id}`'s SQL alone, sent directly: the single query's time.
    pub single_query: Samples,
    /// Per pool size.
    pub runs: Vec<PoolRun>,
}

impl Pool {
    /// The run at `size`.
    pub fn at(&self, size: usize) -> Option<&PoolRun> {
        self.runs.iter().find(|r| r.size == size)
    }

    /// Median latency at `size` over the single query's median.
    pub fn p50_ratio(&self, size: usize) -> f64 {
        let base = self.single_query.median().as_secs_f64();
        match self.at(size) {
            Some(r) if base > 0.0 => r.latency.median().as_secs_f64() / base,
            _ => 0.0,
        }
    }
}

/// Makes every row of `setup`'s `items` cost [`SLEEP_SECS`] to read, for its own role only: a
/// row-level-security policy whose function sleeps (SECURITY INVOKER, so it runs as the reader),
/// forced on the table's owner. The admin (a superuser) bypasses it.
async fn slow_down(ctx: &Ctx, setup: &AppSetup) -> Result<()> {
    let admin = ctx.stack.postgres.admin_on(&setup.db.dbname).await?;
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION bench_slow_read() RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY INVOKER \
               AS $$ BEGIN PERFORM pg_sleep({SLEEP_SECS}); RETURN true; END $$;
             CREATE POLICY bench_slow_read ON items USING (bench_slow_read());
             ALTER TABLE items ENABLE ROW LEVEL SECURITY;
             ALTER TABLE items FORCE ROW LEVEL SECURITY;"
        ))
        .await?;
    Ok(())
}

/// One invocation of `GET /items/{id}`: its latency if 2xx, `None` otherwise.
async fn get(env: &Environment, id: i64, request_id: &str) -> Result<Option<Duration>> {
    let invocation = env.invoke(events::event_bytes(Op::Get(id), request_id)).await?;
    let status = function::http_status(&invocation)?;
    Ok((200..300)
        .contains(&status)
        .then_some(invocation.queued + invocation.duration))
}

/// [`CONCURRENT`] clients sending `GET /items/{id}` back to back for `run`.
async fn load(env: &Arc<Environment>, id: i64, run: Duration, tag: &str) -> Result<(Vec<Duration>, usize, Duration)> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CONCURRENT {
        let env = env.clone();
        let tag = tag.to_owned();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (Vec::new(), 0);
            let mut i = 0;
            // At least one request each, so a short run still fills every slot.
            while i == 0 || started.elapsed() < run {
                match get(&env, id, &format!("{tag}-c{c}-{i}")).await? {
                    Some(d) => ok.push(d),
                    None => failed += 1,
                }
                i += 1;
            }
            Ok::<_, crate::BoxError>((ok, failed))
        }));
    }
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for c in clients {
        let (ok, f) = c.await??;
        latencies.extend(ok);
        failed += f;
    }
    Ok((latencies, failed, started.elapsed()))
}

/// A database of its own, made slow; the single query's time from a direct client; then one
/// environment with `AWS_LAMBDA_MAX_CONCURRENCY=16` per pool size, each warmed by one round of
/// every client (so the pool's connections are open) before `run` of measurement.
///
/// # Errors
/// When Postgres refuses the setup, or an invocation fails outright.
pub async fn pool(ctx: &Ctx, sizes: &[usize], run: Duration, baseline_samples: usize) -> Result<Pool> {
    let (setup, _app) = ctx.app_setup("benchpool", 20).await?;
    slow_down(ctx, &setup).await?;
    let direct = Direct::open(ctx, &setup.db).await?;
    let mut single = Vec::new();
    for i in 0..baseline_samples + 5 {
        let d = direct.time(Op::Get(setup.get_id)).await?;
        if i >= 5 {
            single.push(d);
        }
    }
    let mut runs = Vec::new();
    for &size in sizes {
        let size_text = size.to_string();
        let concurrent = CONCURRENT.to_string();
        let env = Arc::new(
            Environment::start(
                ctx,
                &ctx.bins.items_api,
                "items-api",
                &function::items_api_env(
                    ctx,
                    &setup.secret.arn,
                    &[
                        ("AWS_LAMBDA_MAX_CONCURRENCY", &concurrent),
                        ("DB_POOL_SIZE", &size_text),
                    ],
                ),
            )
            .await?,
        );
        env.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
        load(&env, setup.get_id, Duration::ZERO, &format!("warm{size}")).await?;
        let (latencies, failed, elapsed) = load(&env, setup.get_id, run, &format!("pool{size}")).await?;
        if let Ok(env) = Arc::try_unwrap(env) {
            env.stop();
        }
        runs.push(PoolRun {
            size,
            throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
            latency: Samples::new(latencies),
            failed,
        });
    }
    Ok(Pool {
        single_query: Samples::new(single),
        runs,
    })
}

/// Fresh processes with lazy and with eager init.
#[derive(Debug, Clone, Default)]
pub struct Init {
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=on-demand`: (process start to the first `/next`, the
    /// first event handed out to its answer).
    pub lazy: Vec<(Duration, Duration)>,
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`: the same.
    pub eager: Vec<(Duration, Duration)>,
}

impl Init {
    fn part(runs: &[(Duration, Duration)], f: fn(&(Duration, Duration)) -> Duration) -> Samples {
        Samples::new(runs.iter().map(f).collect())
    }
    /// Init of the lazy runs.
    pub fn lazy_init(&self) -> Samples {
        Self::part(&self.lazy, |r| r.0)
    }
    /// First answer of the lazy runs.
    pub fn lazy_first(&self) -> Samples {
        Self::part(&self.lazy, |r| r.1)
    }
    /// Init plus first answer of the lazy runs.
    pub fn lazy_total(&self) -> Samples {
        Self::part(&self.lazy, |r| r.0 + r.1)
    }
    /// Init of the eager runs.
    pub fn eager_init(&self) -> Samples {
        Self::part(&self.eager, |r| r.0)
    }
    /// First answer of the eager runs.
    pub fn eager_first(&self) -> Samples {
        Self::part(&self.eager, |r| r.1)
    }
    /// Init plus first answer of the eager runs.
    pub fn eager_total(&self) -> Samples {
        Self::part(&self.eager, |r| r.0 + r.1)
    }
}

async fn init_run(ctx: &Ctx, arn: &str, kind: &str) -> Result<(Duration, Duration)> {
    let env = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(ctx, arn, &[("AWS_LAMBDA_INITIALIZATION_TYPE", kind)]),
    )
    .await?;
    let polled = env.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    let init = polled.saturating_duration_since(env.process.started);
    let first = function::request(&env, Op::List, "first").await?.duration;
    env.stop();
    Ok((init, first))
}

/// `runs` fresh processes of each kind, alternating, after one warm-up pair. The event is sent
/// once init is over, so the first answer is the request's own work in both.
///
/// # Errors
/// A failed run.
pub async fn init(ctx: &Ctx, setup: &AppSetup, runs: usize) -> Result<Init> {
    let secret = ctx.secret_for(setup, "bench-init").await?;
    let (lazy, eager) = ("on-demand", "provisioned-concurrency");
    init_run(ctx, &secret.arn, lazy).await?;
    init_run(ctx, &secret.arn, eager).await?;
    let mut out = Init::default();
    for _ in 0..runs {
        out.lazy.push(init_run(ctx, &secret.arn, lazy).await?);
        out.eager.push(init_run(ctx, &secret.arn, eager).await?);
    }
    Ok(out)
}

/// The warm path of items-api and of the `warm-floor` example through the same Runtime API.
#[derive(Debug, Clone)]
pub struct WarmFloor {
    /// items-api's `GET /items?limit=50`: event handed out to answer.
    pub app: Samples,
    /// The floor's same answer.
    pub floor: Samples,
    /// The SQL alone, sent directly, interleaved.
    pub sql: Samples,
    /// Bytes of the body both answer.
    pub body_bytes: usize,
}

impl WarmFloor {
    /// items-api's median over the floor's.
    pub fn ratio(&self) -> f64 {
        let floor = self.floor.median().as_secs_f64();
        if floor == 0.0 {
            return 0.0;
        }
        self.app.median().as_secs_f64() / floor
    }
}

fn body_of(invocation: &devstack::runtime_api::Invocation) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(&invocation.body)?;
    v["body"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the answer has no body".into())
}

/// items-api and the floor, one environment each, `invocations` of each interleaved after a
/// warm-up; the floor answers the body items-api answered first, and every floor answer is
/// checked to be that body.
///
/// # Errors
/// A failed invocation, or a floor answer that differs.
pub async fn warm_floor(ctx: &Ctx, setup: &AppSetup, direct: &Direct, invocations: usize) -> Result<WarmFloor> {
    let secret = ctx.secret_for(setup, "bench-warm-floor").await?;
    let app = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(ctx, &secret.arn, &[]),
    )
    .await?;
    app.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    let body = body_of(&function::request(&app, Op::List, "cold").await?)?;
    let body_file = ctx.work.join("warm-floor-body.json");
    std::fs::write(&body_file, &body)?;
    let floor = Environment::start(
        ctx,
        &ctx.bins.warm_floor,
        "warm-floor",
        &[("WARM_FLOOR_BODY".to_owned(), body_file.display().to_string())],
    )
    .await?;
    floor.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    let warmup = (invocations / 10).max(20);
    let (mut a, mut f, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..warmup + invocations {
        let sql = direct.time(Op::List).await?;
        let mine = function::request(&app, Op::List, &format!("wf-{i}")).await?;
        let theirs = function::request(&floor, Op::List, &format!("wf-{i}")).await?;
        if body_of(&theirs)? != body {
            return Err("warm-floor answered a different body".into());
        }
        if i >= warmup {
            s.push(sql);
            a.push(mine.duration);
            f.push(theirs.duration);
        }
    }
    app.stop();
    floor.stop();
    Ok(WarmFloor {
        app: Samples::new(a),
        floor: Samples::new(f),
        sql: Samples::new(s),
        body_bytes: body.len(),
    })
}
