//! `make bench`: what a request, a cold start and a rotation cost, against their floors (design
//! §10, issue 7). Measurements, never assertions: the harness fails only when something it
//! drives fails, and rewrites `docs/benchmarks.md` (and the plots under `docs/benchmarks/`) with
//! whatever it measured, beside the targets and the Python baselines.
//!
//! What it runs, all on one throwaway devstack (Postgres with TLS and SCRAM, moto):
//!
//! * items-api's handler in process against the same SQL sent directly ([`warm`]);
//! * the *release* binaries of `make build ARCH=x86_64` as Lambda runs them, one process per
//!   execution environment under devstack's Runtime API ([`function`]): the warm mix, Secrets
//!   Manager calls, memory and concurrency ([`items`]), fresh processes against the
//!   `cold-floor` example ([`cold`]), rotations ([`rotation`]), latency while rotations
//!   run ([`timeline`]), and issue 13's figures ([`scale`]): one environment's pool under 16
//!   concurrent invocations of a slow query, eager against lazy init, and the warm path against
//!   the `warm-floor` example.
//!
//! `BENCH_QUICK=1` runs a few samples of everything, to try the harness; its figures mean nothing.
//! `BENCH_ITEMS_API_BIN`, `BENCH_ROTATION_BIN`, `BENCH_FLOOR_BIN` and `BENCH_WARM_FLOOR_BIN` point
//! at other binaries.

mod cold;
mod costs;
mod events;
mod function;
mod items;
mod machine;
mod plots;
mod procfs;
mod report;
mod rotation;
mod scale;
mod stats;
mod timeline;
mod warm;

use aws_config::SdkConfig;
use db_credentials::{Config, CredentialProvider, Database, config::Vars};
use devstack::{AppDatabase, RotationDriver, Stack, StackOptions, watch::workspace_root};
use events::Op;
use items_api::{App, Settings};
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

/// Any failure, reported at the top.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The harness's result.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// How many of everything.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Samples per route and layer, in process.
    pub warm_samples: usize,
    /// Warm invocations of the release binary (Secrets Manager calls are per this many).
    pub binary_invocations: u64,
    /// Fresh processes of each kind.
    pub cold_runs: usize,
    /// Rotations per strategy in a warm process.
    pub rotations: usize,
    /// Rotations per strategy each in a fresh process.
    pub fresh_rotations: usize,
    /// Time per concurrency level.
    pub concurrency_run: Duration,
    /// Levels of concurrency.
    pub concurrency_levels: Vec<usize>,
    /// The short TTL, and how long to send requests with it.
    pub ttl: Duration,
    /// How long the TTL run lasts.
    pub ttl_run: Duration,
    /// Rotations during the latency timeline, its quiet lead and tail, and the gap between rotations.
    pub timeline_rotations: usize,
    /// Quiet time before the first and after the last rotation.
    pub timeline_lead: Duration,
    /// Time between rotations.
    pub timeline_gap: Duration,
    /// Warm invocations of items-api and of the warm floor, each.
    pub warm_floor_invocations: usize,
    /// `DB_POOL_SIZE`s under 16 concurrent invocations.
    pub pool_sizes: Vec<usize>,
    /// Direct samples of the slow query alone.
    pub pool_baseline_samples: usize,
    /// Whether this is the quick run.
    pub quick: bool,
}

impl Sizes {
    fn from_env() -> Self {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1" || v == "true");
        if quick {
            Self {
                warm_samples: 200,
                binary_invocations: 600,
                cold_runs: 3,
                rotations: 3,
                fresh_rotations: 1,
                concurrency_run: Duration::from_millis(500),
                concurrency_levels: vec![1, 2, 4, 8],
                ttl: Duration::from_secs(1),
                ttl_run: Duration::from_secs(3),
                timeline_rotations: 2,
                timeline_lead: Duration::from_secs(1),
                timeline_gap: Duration::from_millis(500),
                warm_floor_invocations: 200,
                pool_sizes: vec![1, 4, 8, 16],
                pool_baseline_samples: 20,
                quick,
            }
        } else {
            Self {
                warm_samples: 2000,
                binary_invocations: 10_000,
                cold_runs: 20,
                rotations: 20,
                fresh_rotations: 5,
                concurrency_run: Duration::from_secs(3),
                concurrency_levels: vec![1, 2, 4, 8],
                ttl: Duration::from_secs(1),
                ttl_run: Duration::from_secs(10),
                timeline_rotations: 8,
                timeline_lead: Duration::from_secs(3),
                timeline_gap: Duration::from_millis(1500),
                warm_floor_invocations: 2000,
                pool_sizes: vec![1, 4, 8, 16],
                pool_baseline_samples: 100,
                quick,
            }
        }
    }
}

/// The binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// items-api's `bootstrap` from `make build`.
    pub items_api: PathBuf,
    /// rotation's `bootstrap`.
    pub rotation: PathBuf,
    /// The `cold-floor` example.
    pub floor: PathBuf,
    /// The `warm-floor` example.
    pub warm_floor: PathBuf,
    /// The zips of `make build`.
    pub zips: Vec<(String, PathBuf)>,
}

impl Binaries {
    /// The `bootstrap` of each function, taken out of the zip `make build` made (so what runs is
    /// exactly what would be deployed) into `work`, unless `BENCH_<FUNCTION>_BIN` names another.
    fn find(target: &Path, bench_dir: &Path, work: &Path) -> Result<Self> {
        let lambda = target.join("lambda");
        let zips: Vec<(String, PathBuf)> = ["items-api", "rotation"]
            .iter()
            .map(|f| ((*f).to_owned(), lambda.join(f).join("bootstrap.zip")))
            .collect();
        let mut bootstraps = Vec::new();
        for ((name, zip), var) in zips.iter().zip(["BENCH_ITEMS_API_BIN", "BENCH_ROTATION_BIN"]) {
            if let Some(path) = std::env::var_os(var) {
                bootstraps.push(PathBuf::from(path));
                continue;
            }
            if !zip.is_file() {
                return Err(format!(
                    "{} is missing: run `make build ARCH=x86_64` (or `make bench`)",
                    zip.display()
                )
                .into());
            }
            let dir = work.join(name);
            let out = std::process::Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(zip)
                .arg(&dir)
                .output()?;
            if !out.status.success() {
                return Err(format!(
                    "cannot unzip {}: {}",
                    zip.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            let bootstrap = dir.join("bootstrap");
            std::fs::set_permissions(&bootstrap, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            bootstraps.push(bootstrap);
        }
        let example = |var: &str, name: &str| -> Result<PathBuf> {
            let path = std::env::var_os(var).map_or(bench_dir.join("examples").join(name), PathBuf::from);
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: run `cargo build --profile bench -p e2e --features vendored-openssl --example {name}` (or `make bench`)",
                    path.display()
                )
                .into());
            }
            Ok(path)
        };
        let floor = example("BENCH_FLOOR_BIN", "cold-floor")?;
        let warm_floor = example("BENCH_WARM_FLOOR_BIN", "warm-floor")?;
        let rotation = bootstraps.pop().ok_or("no rotation binary")?;
        let items_api = bootstraps.pop().ok_or("no items-api binary")?;
        Ok(Self {
            items_api,
            rotation,
            floor,
            warm_floor,
            zips,
        })
    }
}

/// A secret and the string that finds its calls in moto's recording.
#[derive(Debug, Clone)]
pub struct Secret {
    /// ARN.
    pub arn: String,
    /// Unique part of its name.
    pub needle: String,
}

/// An application database with items, and its secret.
#[derive(Debug, Clone)]
pub struct AppSetup {
    /// Role and database.
    pub db: AppDatabase,
    /// Its secret.
    pub secret: Secret,
    /// An item id that exists.
    pub get_id: i64,
    /// The function's variables for the secret.
    pub vars: Vars,
}

/// What every measurement uses.
pub struct Ctx {
    /// The stack.
    pub stack: Stack,
    /// SDK configuration pointing at moto.
    pub sdk: SdkConfig,
    /// Function logs and scratch files.
    pub work: PathBuf,
    /// The binaries.
    pub bins: Binaries,
}

impl Ctx {
    /// A new secret holding `setup`'s credentials, so its calls can be counted apart.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn secret_for(&self, setup: &AppSetup, prefix: &str) -> Result<Secret> {
        let needle = devstack::random_token()[..16].to_owned();
        let arn = self
            .stack
            .create_secret(&format!("{prefix}/{needle}"), &self.stack.secret_json(&setup.db))
            .await?;
        Ok(Secret { arn, needle })
    }

    /// Every Secrets Manager call moto has recorded so far, by operation.
    ///
    /// # Errors
    /// When moto does not answer.
    pub fn calls_by_op(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut by_op = std::collections::BTreeMap::new();
        for call in self.stack.moto.recorded_calls("")? {
            if let Some(op) = call.target.strip_prefix("secretsmanager.") {
                *by_op.entry(op.to_owned()).or_insert(0) += 1;
            }
        }
        Ok(by_op)
    }

    /// items-api in process over `vars`.
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn app(&self, vars: &Vars) -> Result<App> {
        let provider = CredentialProvider::with_sdk(Config::from_vars(vars)?, Some(&self.sdk));
        Ok(App::new(
            Database::new(provider, "items-api-bench"),
            Settings::from_vars(vars)?,
        ))
    }

    /// A role, its database with `items` rows (made through the API), and a secret.
    ///
    /// # Errors
    /// When Postgres, moto or the API refuse.
    pub async fn app_setup(&self, prefix: &str, items: usize) -> Result<(AppSetup, App)> {
        let db = self.stack.create_app(prefix).await?;
        let placeholder = AppSetup {
            db,
            secret: Secret {
                arn: String::new(),
                needle: String::new(),
            },
            get_id: 0,
            vars: Vars::new(),
        };
        let secret = self.secret_for(&placeholder, "bench-app").await?;
        let mut vars: Vars = self.stack.lambda_env(&secret.arn).into_iter().collect();
        vars.insert("ENVIRONMENT".into(), "staging".into());
        let app = self.app(&vars)?;
        let mut ids = Vec::new();
        for i in 0..items {
            let response = app.handle(warm::request(Op::Create, &format!("seed-{i}"))?).await;
            warm::check(Op::Create, response.status().as_u16())?;
            let body: serde_json::Value = match response.body() {
                lambda_http::Body::Text(t) => serde_json::from_str(t)?,
                _ => serde_json::Value::Null,
            };
            ids.push(body["id"].as_i64().ok_or("POST /items answered without an id")?);
        }
        let get_id = ids.get(items / 2).copied().ok_or("no items were created")?;
        Ok((
            AppSetup {
                secret,
                get_id,
                vars,
                ..placeholder
            },
            app,
        ))
    }
}

fn say(what: &str) {
    eprintln!("bench: {what}");
}

async fn run(started: Instant) -> Result<()> {
    let sizes = Sizes::from_env();
    let root = workspace_root(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe()?;
    // <target>/<profile dir>/deps/<bench binary>
    let bench_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot tell where the bench binary lives")?
        .to_path_buf();
    let target = bench_dir
        .parent()
        .ok_or("cannot find the target directory")?
        .to_path_buf();
    let load_before = machine::loadavg();
    let work = std::env::temp_dir().join(format!("bench-{}", devstack::random_token()));
    std::fs::create_dir_all(&work)?;
    let bins = Binaries::find(&target, &bench_dir, &work)?;
    // The in-process handler logs as the function does (JSON lines), to a file as Lambda's pipe.
    let log = std::fs::File::create(work.join("in-process.log"))?;
    lambda_http::tracing::init_default_subscriber_with_writer(std::sync::Mutex::new(log));

    say("starting Postgres and moto");
    let stack = Stack::start(&StackOptions {
        record_calls: true,
        ..Default::default()
    })?;
    let postgres_version = stack
        .postgres
        .admin()
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get::<_, String>(0);
    let sdk = stack.moto.sdk_config().await;
    let ctx = Ctx { stack, sdk, work, bins };
    let machine = machine::Machine::describe(postgres_version);

    say("seeding items");
    let (setup, app) = ctx.app_setup("bench", 60).await?;
    let app = Arc::new(app);
    let direct = warm::Direct::open(&ctx, &setup.db).await?;

    say("warm requests in process (handler against the SQL)");
    let warm = warm::measure(&app, &direct, setup.get_id, sizes.warm_samples).await?;

    say("what the pool adds to a request");
    let checkout = scale::checkout(&app, sizes.warm_samples * 10).await?;

    say("concurrency in process");
    let mut concurrency_in_process = Vec::new();
    for n in &sizes.concurrency_levels {
        concurrency_in_process
            .push(items::concurrency_in_process(&app, setup.get_id, *n, sizes.concurrency_run).await?);
    }

    say("warm mix through the release binary");
    let warm_mix = items::warm_mix(&ctx, &setup, &direct, sizes.binary_invocations).await?;

    say("warm path through the Runtime API against the warm floor");
    let warm_floor = scale::warm_floor(&ctx, &setup, &direct, sizes.warm_floor_invocations).await?;

    say("concurrency through the release binary");
    let mut concurrency_binary = Vec::new();
    for n in &sizes.concurrency_levels {
        concurrency_binary.push(items::concurrency_binary(&ctx, &setup, *n, sizes.concurrency_run).await?);
    }

    say("cold starts against the floor");
    let cold = cold::measure(&ctx, &setup, sizes.cold_runs).await?;

    say("eager against lazy init to the first answer");
    let init = scale::init(&ctx, &setup, sizes.cold_runs).await?;

    say("Secrets Manager calls with a short TTL and a new connection per request");
    let ttl = items::ttl_calls(&ctx, &setup, sizes.ttl, sizes.ttl_run).await?;

    say("unit costs of the rotation contract");
    let costs = costs::measure(&ctx, &setup.db, &setup.secret.arn, if sizes.quick { 5 } else { 30 }).await?;

    let driver = RotationDriver::new(&ctx.stack.moto).await?;
    let mut rotations = Vec::new();
    for strategy in ["single-user", "alternating-users"] {
        say(&format!("rotations, {strategy}"));
        rotations.push(rotation::measure(&ctx, &driver, strategy, sizes.rotations, sizes.fresh_rotations).await?);
    }

    say("latency while rotations run");
    let timeline = timeline::measure(
        &ctx,
        &setup,
        &driver,
        sizes.timeline_rotations,
        sizes.timeline_lead,
        sizes.timeline_gap,
    )
    .await?;

    say("one environment's pool under 16 concurrent invocations of a 20 ms query");
    let pool = scale::pool(
        &ctx,
        &sizes.pool_sizes,
        sizes.concurrency_run,
        sizes.pool_baseline_samples,
    )
    .await?;

    let zips = ctx
        .bins
        .zips
        .iter()
        .map(|(name, path)| (name.clone(), std::fs::metadata(path).map(|m| m.len()).ok()))
        .collect();
    let results = report::Results {
        sizes,
        machine,
        load_before,
        load_after: machine::loadavg(),
        elapsed: started.elapsed(),
        warm,
        warm_mix,
        concurrency_in_process,
        concurrency_binary,
        cold,
        ttl,
        rotations,
        costs,
        timeline,
        checkout,
        pool,
        init,
        warm_floor,
        zips,
        binary_sizes: [&ctx.bins.items_api, &ctx.bins.rotation]
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .collect(),
    };
    let docs = root.join("docs");
    let figures = docs.join("benchmarks");
    std::fs::create_dir_all(&figures)?;
    plots::draw(&results, &figures)?;
    std::fs::write(docs.join("benchmarks.md"), report::markdown(&results))?;
    say(&format!(
        "wrote {} and {} in {:.0} s",
        docs.join("benchmarks.md").display(),
        figures.display(),
        started.elapsed().as_secs_f64()
    ));
    std::fs::remove_dir_all(&ctx.work).ok();
    Ok(())
}

fn main() -> ExitCode {
    let started = Instant::now();
    // The in-process handler logs as the deployed function does (SAM: LogFormat JSON). Set before
    // any thread exists, so nothing reads the environment concurrently.
    // SAFETY: single-threaded at this point.
    unsafe {
        std::env::set_var("AWS_LAMBDA_LOG_FORMAT", "JSON");
        std::env::set_var("AWS_LAMBDA_LOG_LEVEL", "INFO");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: failed: {e}");
            ExitCode::FAILURE
        }
    }
}
