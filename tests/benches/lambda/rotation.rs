//! Rotations through the release rotation binary, each step timed (Lambda's billed duration)
//! and its CPU read from the process; and a fresh process doing a whole rotation.

use crate::{
    Ctx, Result,
    function::{self, Environment},
    procfs,
    stats::Samples,
};
use devstack::{RotationDriver, StepRunner, rotation_driver::RotationEvent, rotation_driver::Step};
use serde_json::json;
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// A step as the function ran it.
#[derive(Debug, Clone, Copy)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// Event handed out to answer received.
    pub duration: Duration,
    /// CPU the process spent meanwhile.
    pub cpu: Duration,
    /// When the answer arrived.
    pub answered_at: Instant,
}

/// A [`StepRunner`] that invokes the function through the Runtime API and records each step.
pub struct Timed<'a> {
    env: &'a Environment,
    /// What ran, in order.
    pub records: Mutex<Vec<StepRecord>>,
}

impl<'a> Timed<'a> {
    /// A runner for `env`.
    pub fn new(env: &'a Environment) -> Self {
        Self {
            env,
            records: Mutex::new(Vec::new()),
        }
    }

    /// Takes the records so far.
    pub fn take(&self) -> Vec<StepRecord> {
        self.records
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl StepRunner for Timed<'_> {
    async fn run(&self, event: &RotationEvent) -> std::result::Result<(), String> {
        let pid = self.env.pid();
        let cpu_before = procfs::cpu_time(pid).unwrap_or_default();
        let invocation = self
            .env
            .api
            .invoke(event.payload().to_string().into_bytes(), function::INVOKE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let cpu = procfs::cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
        if invocation.is_error {
            return Err(String::from_utf8_lossy(&invocation.body).into_owned());
        }
        if let Ok(mut r) = self.records.lock() {
            r.push(StepRecord {
                step: event.step,
                duration: invocation.duration,
                cpu,
                answered_at: invocation.answered_at,
            });
        }
        Ok(())
    }
}

/// One strategy's figures.
#[derive(Debug, Clone)]
pub struct Rotations {
    /// `single-user` or `alternating-users`.
    pub strategy: &'static str,
    /// Per step: durations and CPU.
    pub steps: Vec<(Step, Samples, Samples)>,
    /// The four steps' durations added up, per rotation: the function's wall time.
    pub function_wall: Samples,
    /// The four steps' CPU added up, per rotation.
    pub function_cpu: Samples,
    /// The whole rotation as the service sees it (RotateSecret, four invocations, cleanup).
    pub service_wall: Samples,
    /// Peak RSS of the warm process after all rotations.
    pub peak_rss: u64,
    /// Its anonymous and file-backed resident memory at the end.
    pub rss_anon_file: (u64, u64),
    /// Secrets Manager calls the function made per rotation, by operation (the driver's
    /// RotateSecret, DescribeSecret and UpdateSecretVersionStage taken out).
    pub calls_per_rotation: Vec<(String, f64)>,
    /// CPU of the warm process over its whole life (10 ms ticks), init included.
    pub process_cpu: Duration,
    /// Rotations the warm process ran (the warm-up one included).
    pub process_rotations: usize,
    /// Fresh processes, each doing one whole rotation: start to finishSecret answered (the
    /// first step pays the cold start).
    pub fresh_wall: Samples,
    /// Their CPU over their whole life (scheduler time of every thread).
    pub fresh_cpu: Samples,
    /// Their peak RSS.
    pub fresh_peak_rss: u64,
}

/// The rotation function's environment variables (besides the Runtime API's).
pub fn rotation_env(ctx: &Ctx, strategy: &str) -> Vec<(String, String)> {
    let mut env = ctx.stack.moto.env();
    env.extend(
        [
            ("ROTATION_STRATEGY", strategy.to_owned()),
            ("DB_SSLMODE", "verify-full".to_owned()),
            ("DB_SSL_ROOT_CERT", ctx.stack.postgres.ca_cert().display().to_string()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_owned()),
            ("ENVIRONMENT", "staging".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// A new role, database and secret to rotate; alternating users get a master secret.
///
/// # Errors
/// When Postgres or moto refuse.
pub async fn rotation_secret(ctx: &Ctx, strategy: &str) -> Result<String> {
    let app = ctx.stack.create_app(&format!("rot_{}", &strategy[..3])).await?;
    let mut secret = ctx.stack.secret_json(&app);
    if strategy == "alternating-users" {
        let master = json!({
            "engine": "postgres",
            "host": ctx.stack.postgres.host(),
            "port": ctx.stack.postgres.port(),
            "username": "postgres",
            "password": ctx.stack.postgres.superuser_password(),
        });
        secret["masterarn"] = ctx
            .stack
            .create_secret(&devstack::Stack::secret_name("bench-master"), &master)
            .await?
            .into();
    }
    Ok(ctx
        .stack
        .create_secret(&devstack::Stack::secret_name("bench-rotation"), &secret)
        .await?)
}

/// `rotations` rotations (after one warm-up) in one warm process, then `fresh` rotations each
/// in a new process.
///
/// # Errors
/// A failed step.
pub async fn measure(
    ctx: &Ctx,
    driver: &RotationDriver,
    strategy: &'static str,
    rotations: usize,
    fresh: usize,
) -> Result<Rotations> {
    let arn = rotation_secret(ctx, strategy).await?;
    let env = Environment::start(ctx, &ctx.bins.rotation, "rotation", &rotation_env(ctx, strategy)).await?;
    env.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    let runner = Timed::new(&env);
    driver.rotate(&arn, &runner).await?;
    runner.take();

    let calls_before = ctx.calls_by_op()?;
    let mut per_step: Vec<(Step, Vec<Duration>, Vec<Duration>)> =
        Step::ALL.iter().map(|s| (*s, Vec::new(), Vec::new())).collect();
    let (mut wall, mut cpu, mut service) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rotations {
        let report = driver.rotate(&arn, &runner).await?;
        let records = runner.take();
        for r in &records {
            if let Some(slot) = per_step.iter_mut().find(|(s, _, _)| *s == r.step) {
                slot.1.push(r.duration);
                slot.2.push(r.cpu);
            }
        }
        wall.push(records.iter().map(|r| r.duration).sum());
        cpu.push(records.iter().map(|r| r.cpu).sum());
        service.push(report.total);
    }
    let peak_rss = env.peak_rss();
    let rss_anon_file = (
        procfs::status_bytes(env.pid(), "RssAnon").unwrap_or(0),
        procfs::status_bytes(env.pid(), "RssFile").unwrap_or(0),
    );
    let process_cpu = procfs::cpu_ticks(env.pid()).unwrap_or_default();
    env.stop();
    // The driver's own calls per rotation: RotateSecret; DescribeSecret and
    // UpdateSecretVersionStage to take AWSPENDING off the new version (RotationDriver::end).
    let driver_calls = |op: &str| match op {
        "RotateSecret" | "DescribeSecret" | "UpdateSecretVersionStage" => 1.0,
        _ => 0.0,
    };
    let calls_per_rotation = ctx
        .calls_by_op()?
        .into_iter()
        .map(|(op, after)| {
            let made = after.saturating_sub(calls_before.get(&op).copied().unwrap_or(0));
            let per = made as f64 / rotations.max(1) as f64 - driver_calls(&op);
            (op, per)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();

    let (mut fresh_wall, mut fresh_cpu, mut fresh_peak) = (Vec::new(), Vec::new(), 0);
    for _ in 0..fresh {
        let env = Environment::start(ctx, &ctx.bins.rotation, "rotation", &rotation_env(ctx, strategy)).await?;
        let runner = Timed::new(&env);
        driver.rotate(&arn, &runner).await?;
        let done = runner.take().last().map_or_else(Instant::now, |r| r.answered_at);
        fresh_wall.push(done.saturating_duration_since(env.process.started));
        fresh_cpu.push(procfs::cpu_time(env.pid()).unwrap_or_default());
        fresh_peak = fresh_peak.max(env.peak_rss());
        env.stop();
    }

    Ok(Rotations {
        strategy,
        steps: per_step
            .into_iter()
            .map(|(s, d, c)| (s, Samples::new(d), Samples::new(c)))
            .collect(),
        function_wall: Samples::new(wall),
        function_cpu: Samples::new(cpu),
        service_wall: Samples::new(service),
        peak_rss,
        rss_anon_file,
        calls_per_rotation,
        process_cpu,
        process_rotations: rotations + 1,
        fresh_wall: Samples::new(fresh_wall),
        fresh_cpu: Samples::new(fresh_cpu),
        fresh_peak_rss: fresh_peak,
    })
}
