//! Evidence for the suite-wide leak check: every secret the tests create or send, and every log
//! the servers and functions write, collected in one directory so `devstack leak-check` can prove
//! no secret reached any log.
//!
//! Active only when `DEVSTACK_EVIDENCE_DIR` is set (`make test` sets it). The first use in a
//! process also installs a global TRACE-level JSON subscriber that writes the process's own logs
//! (functions run in process) to the evidence; a test binary that needs a global subscriber of
//! its own installs it through [`init_tracing_with`], which adds the evidence log to it.
//!
//! Every log is named `<kind>@<suite>-<unique>.log`, the suite being the test binary
//! (`<package>.<binary>`), so the leak check can hold each suite to the logs the manifest says it
//! leaves (see [`manifest`]). Server logs are copied by the cleanup guardians, so they are collected
//! even for stacks that live in statics and are never dropped; each guardian registers under
//! `pending/` and clears its entry once its copy is made, so the leak check waits for exactly those
//! copies (see [`wait_for_guardians`]).

pub mod forms;
pub mod manifest;
pub mod scan;

pub use scan::{Leak, LeakReport, scan};

use crate::guard::sh_quote;
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Once, OnceLock},
    time::{Duration, Instant},
};
use tracing_subscriber::{Layer, Registry, layer::SubscriberExt};

/// The variable naming the evidence directory.
pub const ENV: &str = "DEVSTACK_EVIDENCE_DIR";
/// Shorter strings are not recorded: they would match by accident.
pub const MIN_SECRET_LEN: usize = 8;
/// The secrets file in the evidence directory: one JSON object per line.
pub const SECRETS_FILE: &str = "secrets.jsonl";
/// Guardians that have not copied their log yet, one file each.
pub const PENDING_DIR: &str = "pending";

/// The evidence directory, created on first use, if evidence is being collected. The first call
/// in a process also installs the evidence subscriber (see the module docs).
///
/// # Panics
/// When evidence is being collected and the process already has a global subscriber that does
/// not write to the evidence: its logs would silently escape the leak check.
pub fn dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            let dir = PathBuf::from(std::env::var_os(ENV)?);
            std::fs::create_dir_all(dir.join("logs")).ok()?;
            std::fs::create_dir_all(dir.join(PENDING_DIR)).ok()?;
            // Absolute, so guardians and child processes with another working directory agree.
            std::fs::canonicalize(&dir).ok()
        })
        .clone()?;
    install_global(None::<tracing_subscriber::layer::Identity>);
    Some(dir)
}

/// The test binary this process is, as `<package>.<binary>` (`e2e.rotation_faults`): cargo sets
/// `CARGO_PKG_NAME` when it runs a test, and the binary's name carries a hash to drop.
pub fn suite() -> &'static str {
    static SUITE: OnceLock<String> = OnceLock::new();
    SUITE.get_or_init(|| {
        let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "unknown".to_owned());
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let binary = match binary.rsplit_once('-') {
            Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_owned(),
            _ => binary,
        };
        format!("{package}.{binary}")
    })
}

/// A fresh log name: `<kind>@<suite>-<unique>.log`.
fn log_name(kind: &str) -> String {
    format!("{kind}@{}-{}.log", suite(), crate::random_token())
}

/// Records a secret (password, token, secret JSON) that must never appear in a log, with the
/// suite that recorded it. Secrets shorter than [`MIN_SECRET_LEN`] are not recorded.
pub fn record_secret(secret: &str) {
    let Some(dir) = dir() else { return };
    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let line = serde_json::json!({"secret": secret, "by": suite()}).to_string() + "\n";
    // One write of one line to a file opened for appending: lines from concurrent test processes
    // do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(SECRETS_FILE))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Records `secret` (see [`record_secret`]) and hands it back: for every literal a test sends as
/// a password or token, wrong and malformed ones included (`let wrong = secret("Pw-wrong-1");`).
pub fn secret<S: AsRef<str>>(secret: S) -> S {
    record_secret(secret.as_ref());
    secret
}

/// Saves `content` (a command's output, say) as a log of `kind`.
pub fn save_log(kind: &str, content: &str) {
    let Some(dir) = dir() else { return };
    let _ = std::fs::write(dir.join("logs").join(log_name(kind)), content);
}

/// A shell snippet that copies `file` into the evidence logs as a log of `kind`, or nothing when
/// evidence is not being collected. The copy is registered under `pending/` now; the snippet
/// clears the registration once the copy is made, or marks it `.failed`.
pub(crate) fn copy_line(file: &Path, kind: &str) -> String {
    let Some(dir) = dir() else {
        return String::new();
    };
    let name = log_name(kind);
    let marker = dir.join(PENDING_DIR).join(&name);
    let registered = std::fs::write(
        &marker,
        format!("{} (owner pid {})\n", file.display(), std::process::id()),
    );
    let target = dir.join("logs").join(&name);
    let copy = format!(
        "cp {} {} 2>/dev/null",
        sh_quote(&file.to_string_lossy()),
        sh_quote(&target.to_string_lossy())
    );
    if registered.is_err() {
        // The leak check's manifest still notices a copy that never happened.
        return copy;
    }
    let marker = sh_quote(&marker.to_string_lossy());
    format!("if {copy}; then rm -f {marker}; else mv -f {marker} {marker}.failed; fi")
}

/// This process's evidence log (`test@<suite>-<unique>.log`), shared by every subscriber that
/// writes to it. `None` without evidence.
fn process_log() -> Option<Arc<ProcessLog>> {
    static LOG: OnceLock<Option<Arc<ProcessLog>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os(ENV)?);
        Some(Arc::new(ProcessLog {
            path: dir.join("logs").join(log_name("test")),
            file: OnceLock::new(),
        }))
    })
    .clone()
}

/// The process's log file, created at the first line: a process that logs nothing leaves no
/// file rather than an empty one, and the manifest says whether that suite must log.
#[derive(Debug)]
struct ProcessLog {
    path: PathBuf,
    file: OnceLock<Option<File>>,
}

impl Write for &ProcessLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let file = self.file.get_or_init(|| {
            // Appending: each event is one write, so lines from several threads stay whole.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok()
        });
        match file {
            Some(f) => (&*f).write(buf),
            None => Err(std::io::Error::other(format!("cannot create {}", self.path.display()))),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TRACE-level JSON layer writing to this process's evidence log, for a subscriber a test sets
/// itself (a scoped one, say). `None` without evidence.
pub fn layer<S>() -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    dir()?;
    let file = process_log()?;
    Some(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(file)
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE)
            .boxed(),
    )
}

/// Installs the process's global subscriber: the evidence log (when collecting) plus `extra`, a
/// test's own layer (a capture it asserts on). Call it before anything starts a stack.
///
/// # Panics
/// When the global subscriber is already installed: `extra` would never see an event.
pub fn init_tracing_with<L>(extra: L)
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    assert!(
        install_global(Some(extra)),
        "init_tracing_with: the global subscriber is already installed; call it before anything starts a stack"
    );
}

/// Installs the global evidence subscriber if collecting (the first call to [`dir`] does this
/// anyway). `_name` is kept for callers of the old API; logs are named after the suite.
pub fn init_tracing(_name: &str) {
    dir();
}

/// Installs the global subscriber once per process; returns whether this call installed it.
fn install_global<L>(extra: Option<L>) -> bool
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    static ONCE: Once = Once::new();
    let mut installed = false;
    ONCE.call_once(|| {
        installed = true;
        let evidence = process_log().map(|file| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(file)
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE)
        });
        if evidence.is_none() && extra.is_none() {
            return;
        }
        let subscriber = tracing_subscriber::registry().with(extra).with(evidence);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            panic!(
                "{ENV} is set but this process already has a global tracing subscriber, so its logs would escape \
                 the leak check: install it with devstack::evidence::init_tracing_with instead"
            );
        }
    });
    installed
}

/// Waits until every guardian registered under `dir/pending` has copied its log, polling, for at
/// most `limit`. Returns how long it waited.
///
/// # Errors
/// Names each guardian whose copy failed, or that had not finished when the time ran out.
pub fn wait_for_guardians(dir: &Path, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let pending = dir.join(PENDING_DIR);
    loop {
        let mut waiting = Vec::new();
        let mut failed = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&pending) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let what = std::fs::read_to_string(entry.path()).unwrap_or_default();
                match name.strip_suffix(".failed") {
                    Some(log) => failed.push(format!("{log}: could not copy {}", what.trim())),
                    None => waiting.push(format!("{name}: {}", what.trim())),
                }
            }
        }
        if !failed.is_empty() {
            failed.sort();
            return Err(format!(
                "guardians failed to copy their logs:\n  {}",
                failed.join("\n  ")
            ));
        }
        if waiting.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= limit {
            waiting.sort();
            return Err(format!(
                "{} guardian(s) had not copied their logs after {} s:\n  {}",
                waiting.len(),
                limit.as_secs(),
                waiting.join("\n  ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
