//! Evidence for the suite-wide leak check: every secret the tests create, and every log the
//! servers and functions write, collected in one directory so `devstack leak-check` can prove no
//! secret reached any log.
//!
//! Active only when `DEVSTACK_EVIDENCE_DIR` is set (`make test` sets it). Logs are copied by the
//! cleanup guardians, so they are collected even for stacks that live in statics and are never
//! dropped.

use crate::guard::sh_quote;
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

/// The variable naming the evidence directory.
pub const ENV: &str = "DEVSTACK_EVIDENCE_DIR";
/// Shorter strings are not recorded: they would match by accident.
pub const MIN_SECRET_LEN: usize = 8;

/// The evidence directory, created on first use, if evidence is being collected.
pub fn dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os(ENV)?);
        std::fs::create_dir_all(dir.join("logs")).ok()?;
        // Absolute, so guardians and child processes with another working directory agree.
        std::fs::canonicalize(&dir).ok()
    })
    .clone()
}

/// Records a secret (password, token, secret JSON) that must never appear in a log.
pub fn record_secret(secret: &str) {
    static LOCK: Mutex<()> = Mutex::new(());
    let Some(dir) = dir() else { return };
    if secret.chars().count() < MIN_SECRET_LEN || secret.contains('\n') {
        return;
    }
    let _guard = LOCK.lock();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("secrets.txt"))
    {
        let _ = writeln!(f, "{secret}");
    }
}

/// Saves `content` (a command's output, say) as a log.
pub fn save_log(name: &str, content: &str) {
    let Some(dir) = dir() else { return };
    let _ = std::fs::write(
        dir.join("logs").join(format!("{name}-{}.log", crate::random_token())),
        content,
    );
}

/// A shell line that copies `file` into the evidence logs as `<name>-<unique>.log`, or nothing
/// when evidence is not being collected.
pub(crate) fn copy_line(file: &Path, name: &str) -> String {
    match dir() {
        Some(dir) => {
            let target = dir.join("logs").join(format!("{name}-{}.log", crate::random_token()));
            format!(
                "cp {} {} 2>/dev/null",
                sh_quote(&file.to_string_lossy()),
                sh_quote(&target.to_string_lossy())
            )
        }
        None => String::new(),
    }
}

/// A writer for `tracing_subscriber` that appends to `<evidence>/logs/<name>-<unique>.log`, so a
/// test binary's own logs (in-process functions) are scanned too. `None` without evidence.
pub fn log_file(name: &str) -> Option<std::fs::File> {
    let dir = dir()?;
    std::fs::File::create(dir.join("logs").join(format!("{name}-{}.log", crate::random_token()))).ok()
}

/// Installs a global TRACE-level JSON subscriber writing to the evidence directory (once per
/// process; later calls and calls without evidence do nothing). Test binaries that run the
/// functions in process call this so their logs are part of the leak check.
pub fn init_tracing(name: &str) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if let Some(file) = log_file(name) {
            let file = Mutex::new(file);
            let _ = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(file)
                .try_init();
        }
    });
}

/// Result of a scan.
#[derive(Debug, Default)]
pub struct LeakReport {
    /// Distinct secrets searched for.
    pub secrets: usize,
    /// Log files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// `(file, index of the secret in secrets.txt)` for each leak; never the secret itself.
    pub leaks: Vec<(PathBuf, usize)>,
}

/// Searches every log in `dir/logs` for every secret in `dir/secrets.txt`.
///
/// # Errors
/// When the directory cannot be read.
pub fn scan(dir: &Path) -> std::io::Result<LeakReport> {
    let text = std::fs::read_to_string(dir.join("secrets.txt")).unwrap_or_default();
    let mut secrets: Vec<&str> = text.lines().filter(|s| s.chars().count() >= MIN_SECRET_LEN).collect();
    secrets.sort_unstable();
    secrets.dedup();
    let mut report = LeakReport {
        secrets: secrets.len(),
        ..LeakReport::default()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("logs"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        let bytes = std::fs::read(&file)?;
        report.files += 1;
        report.bytes += bytes.len() as u64;
        let content = String::from_utf8_lossy(&bytes);
        for (i, secret) in secrets.iter().enumerate() {
            if content.contains(secret) {
                report.leaks.push((file.clone(), i));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_a_planted_secret_and_reports_only_its_index() {
        let dir = std::env::temp_dir().join(format!("evidence-test-{}", crate::random_token()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(
            dir.join("secrets.txt"),
            "short\nPw-planted-0001\nPw-absent-0002\nPw-planted-0001\n",
        )
        .unwrap();
        std::fs::write(dir.join("logs/a.log"), "connected\nuser=app password=Pw-planted-0001\n").unwrap();
        std::fs::write(dir.join("logs/b.log"), "nothing here\n").unwrap();
        let report = scan(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(report.secrets, 2, "short and duplicate entries are dropped");
        assert_eq!(report.files, 2);
        assert_eq!(report.leaks.len(), 1);
        assert!(report.leaks[0].0.ends_with("a.log"));
    }
}
