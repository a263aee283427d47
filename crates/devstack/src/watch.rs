//! `cargo lambda watch` on a free loopback port: the Lambda runtime emulator that serves the
//! workspace's functions over HTTP (`/lambda-url/<function>/…`) and the Invoke API
//! (`/2015-03-31/functions/<function>/invocations`).
//!
//! It runs in its own process group, so stopping it by its PID (the group id) also stops the
//! `cargo run` and function processes it started. It compiles a function on its first request
//! (debug, the workspace's feature set, so a prior `cargo build --workspace` is reused).

use crate::{DevstackError, free_port, guard::Guardian, random_token};
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running `cargo lambda watch`. Dropping it stops it and the functions it runs.
#[derive(Debug)]
pub struct Watch {
    port: u16,
    child: Child,
    log: PathBuf,
    guardian: Guardian,
}

impl Watch {
    /// Starts watch in `workspace` with `env` added to its environment (its functions inherit
    /// it) and `extra` arguments (e.g. `--concurrency 4`).
    ///
    /// # Errors
    /// [`DevstackError::Missing`] when cargo-lambda is not installed.
    pub fn start(workspace: &Path, env: &[(String, String)], extra: &[&str]) -> Result<Self, DevstackError> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("devstack-watch-{}.log", random_token()));
        let out = std::fs::File::create(&log).map_err(|e| DevstackError::io("create the watch log", e))?;
        let err = out
            .try_clone()
            .map_err(|e| DevstackError::io("create the watch log", e))?;
        let mut cmd = Command::new("cargo");
        cmd.current_dir(workspace)
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .arg("--ignore-changes")
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| DevstackError::io("start cargo lambda watch", e))?;
        let pid = child.id();
        // The shell's builtin kill reads "-PGID" as a group (procps' /bin/kill would not: see
        // `signal`); dash's builtin does not accept "--".

        let guardian = Guardian::spawn(
            &crate::guard::if_cmdline(
                pid,
                "lambda",
                &format!("kill -TERM -{pid} 2>/dev/null\ni=0; while kill -0 -{pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\nkill -KILL -{pid} 2>/dev/null"),
            ),
            &crate::evidence::copy_line(&log, "functions-under-watch"),
        )
        .map_err(|e| DevstackError::io("start the cleanup guardian", e))?;
        let mut watch = Self {
            port,
            child,
            log,
            guardian,
        };
        // Fail fast when cargo-lambda is missing: cargo exits at once with "no such command".
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(status)) = watch.child.try_wait() {
            let output = watch.output();
            if output.contains("no such command") {
                return Err(DevstackError::Missing {
                    tool: "cargo-lambda",
                    install: "pip install cargo-lambda==1.9.2 (or run `make deps`)",
                });
            }
            return Err(DevstackError::Tool {
                step: "cargo lambda watch",
                detail: format!("exited with {status}:\n{output}"),
            });
        }
        Ok(watch)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID (and process group) of watch.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// URL of `path` on an HTTP function (Function URL event shape).
    pub fn function_url(&self, function: &str, path: &str) -> String {
        format!("{}/lambda-url/{function}{path}", self.base_url())
    }

    /// The file watch's output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Everything watch and its functions printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET path` on the HTTP function `function` answers (any status), which
    /// includes compiling it on first use. Returns the status.
    ///
    /// # Errors
    /// A timeout with watch's output, or watch exiting.
    pub async fn wait_for_http(&mut self, function: &str, path: &str, timeout: Duration) -> Result<u16, DevstackError> {
        let client = reqwest::Client::new();
        let url = self.function_url(function, path);
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevstackError::Tool {
                    step: "cargo lambda watch",
                    detail: format!("exited with {status}:\n{}", self.output()),
                });
            }
            match client.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(resp) if resp.status().as_u16() < 500 || resp.status().as_u16() == 503 => {
                    return Ok(resp.status().as_u16());
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        Err(DevstackError::Tool {
            step: "cargo lambda watch",
            detail: format!("{url} did not answer within {timeout:?}:\n{}", self.output()),
        })
    }

    /// Waits until watch accepts connections on its port (it binds a moment after it starts).
    ///
    /// # Errors
    /// A timeout with watch's output, or watch exiting.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<(), DevstackError> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevstackError::Tool {
                    step: "cargo lambda watch",
                    detail: format!("exited with {status}:\n{}", self.output()),
                });
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DevstackError::Tool {
            step: "cargo lambda watch",
            detail: format!("not listening after {timeout:?}:\n{}", self.output()),
        })
    }

    /// Stops watch and its functions now.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SIGTERM makes cargo-lambda stop the functions it runs (they have process groups of their
        // own). While the leader is unreaped its process group cannot be reused, so the group
        // signals here can only reach watch itself and what stayed in its group.
        let pid = self.child.id();
        crate::signal::group(pid, "TERM");
        crate::guard::wait_exited(pid, Duration::from_secs(5));
        crate::signal::group(pid, "KILL");
        let _ = self.child.wait();
        self.guardian.fire_reaped();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The workspace root, found from a crate's manifest directory.
pub fn workspace_root(manifest_dir: &str) -> PathBuf {
    let mut dir = PathBuf::from(manifest_dir);
    while !dir.join("Cargo.lock").exists() {
        if !dir.pop() {
            return PathBuf::from(manifest_dir);
        }
    }
    dir
}
