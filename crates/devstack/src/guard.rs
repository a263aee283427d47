//! Cleanup that happens even when the owning process dies without running destructors.
//!
//! A test binary keeps its stack in a `static`, and statics are never dropped; a panic with
//! `panic=abort` or a SIGKILL skips `Drop` too. So every server gets a guardian: a small `sh`
//! that blocks reading its stdin. The write end lives only in this process (Rust opens pipes
//! close-on-exec, so no other child inherits it), so the read returns when this process closes it
//! (drop) or exits for any reason. The guardian then runs its cleanup. It ignores
//! SIGINT/SIGTERM/SIGHUP so a Ctrl-C that hits the whole process group cannot kill it first.
//!
//! Two parts: `kill` runs only when the owner did not stop and reap the server itself (the owner
//! says so by writing `reaped` before closing); `cleanup` (copying logs, removing directories)
//! always runs. A server the owner already reaped has a PID the system may hand to someone else,
//! so the guardian must not signal it; and when the owner died, the kill part should check the
//! PID still names the expected program before signalling it (see [`if_cmdline`]).

use std::{
    io::{self, Write},
    process::{Child, ChildStdin, Command, Stdio},
};

/// A running guardian. Dropping it runs the kill part and the cleanup, and waits for them.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guardian {
    /// Starts a guardian with a `kill` part (POSIX shell, run only if the owner did not reap the
    /// server) and a `cleanup` part (always run).
    ///
    /// # Errors
    /// When `sh` cannot be started.
    pub fn spawn(kill: &str, cleanup: &str) -> io::Result<Self> {
        let script = format!(
            "trap '' INT TERM HUP\nstate=\nread -r state\nif [ \"$state\" != reaped ]; then\n:\n{kill}\nfi\n{cleanup}\n"
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }

    /// Runs the kill part and the cleanup now, and waits for them.
    pub fn fire(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.wait();
        }
    }

    /// The owner stopped and reaped the server itself: runs only the cleanup, and waits for it.
    pub fn fire_reaped(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"reaped\n");
            drop(stdin);
            let _ = self.child.wait();
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.fire();
    }
}

/// Wraps `commands` so they run only while `/proc/<pid>/cmdline` contains `needle`: after the
/// owner died, a PID the system reused for another program must not be signalled.
pub(crate) fn if_cmdline(pid: u32, needle: &str, commands: &str) -> String {
    format!(
        "if tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null | grep -qF {}; then\n{commands}\nfi",
        sh_quote(needle)
    )
}

/// Quotes a string for a POSIX shell.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Whether `pid` has exited (a zombie, or gone). Reading its state does not reap it, so while the
/// owner has not waited for it, its PID (and process group) cannot be given to anyone else.
pub(crate) fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"))
        .unwrap_or(true)
}

/// Waits up to `timeout` for `pid` to exit, without reaping it.
pub(crate) fn wait_exited(pid: u32, timeout: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        if exited(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    exited(pid)
}

/// Stops `child` (SIGTERM, then SIGKILL after `grace`) and reaps it. Signalled while still
/// unreaped, so its PID cannot have been given to another process.
pub(crate) fn stop_and_reap(child: &mut std::process::Child, grace: std::time::Duration) {
    let pid = child.id();
    crate::signal::process(pid, "TERM");
    if !wait_exited(pid, grace) {
        crate::signal::process(pid, "KILL");
    }
    let _ = child.wait();
}
