//! Cleanup that happens even when the owning process dies without running destructors.
//!
//! A test binary keeps its stack in a `static`, and statics are never dropped; a panic with
//! `panic=abort` or a SIGKILL skips `Drop` too. So every server gets a guardian: a small `sh`
//! that blocks reading its stdin. The write end lives only in this process (Rust opens pipes
//! close-on-exec, so no other child inherits it), so the read returns when this process closes it
//! (drop) or exits for any reason. The guardian then runs its cleanup script: stop the server by
//! its PID and remove its temporary directory. It ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C that
//! hits the whole process group cannot kill it before it has cleaned up.

use std::{
    io,
    process::{Child, ChildStdin, Command, Stdio},
};

/// A running guardian. Dropping it triggers its cleanup and waits for it to finish.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guardian {
    /// Starts a guardian that runs `cleanup` (a POSIX shell script) when this process lets go.
    ///
    /// # Errors
    /// When `sh` cannot be started.
    pub fn spawn(cleanup: &str) -> io::Result<Self> {
        let script = format!("trap '' INT TERM HUP\ncat >/dev/null\n{cleanup}\n");
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

    /// Runs the cleanup now and waits for it.
    pub fn fire(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.wait();
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.fire();
    }
}

/// Quotes a string for a POSIX shell.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
