//! The release binaries as Lambda runs them: one process per execution environment, served by
//! devstack's Runtime API, its CPU and memory read from /proc.

use crate::{Ctx, Result, events, events::Op, procfs};
use devstack::runtime_api::{Function, Invocation, RuntimeApi};
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

/// How long one invocation may take before the run is called broken.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A function process and the Runtime API serving it.
pub struct Environment {
    /// The Runtime API (shared with client tasks).
    pub api: Arc<RuntimeApi>,
    /// The process.
    pub process: Function,
    /// The function name.
    pub name: String,
}

impl Environment {
    /// Starts `binary` as function `name` with `env`, its output appended to the run's log
    /// directory. Does not wait for its init.
    ///
    /// # Errors
    /// When the process cannot start.
    pub async fn start(ctx: &Ctx, binary: &Path, name: &str, env: &[(String, String)]) -> Result<Self> {
        let api = Arc::new(RuntimeApi::start(name).await?);
        let log = ctx.work.join(format!("{name}.log"));
        let process = api.spawn(binary, name, env, &log)?;
        Ok(Self {
            api,
            process,
            name: name.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Invokes with `payload`; an error if the function reported one.
    ///
    /// # Errors
    /// A timeout, or the function's error.
    pub async fn invoke(&self, payload: Vec<u8>) -> Result<Invocation> {
        let invocation = self.api.invoke(payload, INVOKE_TIMEOUT).await?;
        if invocation.is_error {
            return Err(format!(
                "{} reported an error: {}",
                self.name,
                String::from_utf8_lossy(&invocation.body)
            )
            .into());
        }
        Ok(invocation)
    }

    /// Peak resident memory so far.
    pub fn peak_rss(&self) -> u64 {
        procfs::peak_rss(self.pid()).unwrap_or(0)
    }

    /// Stops the process.
    pub fn stop(self) {
        self.process.stop();
    }
}

/// The HTTP status inside an API Gateway response.
///
/// # Errors
/// When the answer is not such a response.
pub fn http_status(invocation: &Invocation) -> Result<u16> {
    let v: serde_json::Value = serde_json::from_slice(&invocation.body)?;
    v["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| format!("no statusCode in {}", String::from_utf8_lossy(&invocation.body)).into())
}

/// Invokes items-api with `op` and checks for a 2xx.
///
/// # Errors
/// A failed invocation or a non-2xx status.
pub async fn request(env: &Environment, op: Op, request_id: &str) -> Result<Invocation> {
    let invocation = env.invoke(events::event_bytes(op, request_id)).await?;
    let status = http_status(&invocation)?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "{} answered {status}: {}",
            op.label(),
            String::from_utf8_lossy(&invocation.body)
        )
        .into());
    }
    Ok(invocation)
}

/// The items-api environment variables for `arn` (besides the Runtime API's), as the SAM
/// template sets them, plus `extra`.
pub fn items_api_env(ctx: &Ctx, arn: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = ctx.stack.lambda_env(arn);
    env.extend(
        [
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
            ("ENVIRONMENT", "staging"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// A deadline-bounded loop: runs `body` until `duration` has passed; returns how many ran and
/// the time it took.
pub async fn for_duration<F, Fut>(duration: Duration, mut body: F) -> Result<(u64, Duration)>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < duration {
        body(n).await?;
        n += 1;
    }
    Ok((n, started.elapsed()))
}
