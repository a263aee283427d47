//! How `devstack failover` reaches the cluster that `devstack run` (`make run`) owns: a Unix socket
//! beside the run's state file (mode 0600: local to this machine and this user, no TCP at all).
//! The client sends one line of JSON, a [`FailoverOptions`]; the server answers one line per
//! phase reached and a last line with the report or the error, then closes.

use crate::{
    DevstackError, Postgres,
    failover::{FailoverOptions, FailoverPhase, FailoverReport},
};
use serde::{Deserialize, Serialize};
use std::{path::Path, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

/// One line of the server's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// A phase was reached, this long after the start.
    Phase {
        /// The phase.
        phase: FailoverPhase,
        /// Time since the failover started.
        at: Duration,
    },
    /// The failover finished.
    Done(FailoverReport),
    /// The failover failed.
    Error(String),
}

/// Serves failover requests for `pg` on a Unix socket at `path` until the future is dropped,
/// one at a time.
///
/// # Errors
/// When the socket cannot be made.
pub async fn serve(path: &Path, pg: &Postgres) -> Result<(), DevstackError> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| DevstackError::io("bind the control socket", e))?;
    crate::postgres::set_mode(path, 0o600)?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // A client that goes away mid-failover does not stop the failover.
        let _ = handle(stream, pg).await;
    }
}

async fn handle(stream: UnixStream, pg: &Postgres) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let options: FailoverOptions = match serde_json::from_str(&line) {
        Ok(o) => o,
        Err(e) => return send(&mut write, &Message::Error(format!("bad request: {e}"))).await,
    };
    let (progress, mut phases) = tokio::sync::watch::channel(Vec::new());
    let failover = pg.failover(&options, Some(&progress));
    tokio::pin!(failover);
    let mut sent = 0;
    let outcome = loop {
        tokio::select! {
            outcome = &mut failover => break outcome,
            Ok(()) = phases.changed() => {
                let now = phases.borrow_and_update().clone();
                for (phase, at) in &now[sent.min(now.len())..] {
                    let _ = send(&mut write, &Message::Phase { phase: *phase, at: *at }).await;
                }
                sent = now.len();
            }
        }
    };
    let now = phases.borrow().clone();
    for (phase, at) in &now[sent.min(now.len())..] {
        send(&mut write, &Message::Phase { phase: *phase, at: *at }).await?;
    }
    match outcome {
        Ok(report) => send(&mut write, &Message::Done(report)).await,
        Err(e) => send(&mut write, &Message::Error(e.to_string())).await,
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, message: &Message) -> std::io::Result<()> {
    let mut line = serde_json::to_string(message).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await
}

/// Asks the stack serving `path` for a failover; calls `on_message` for every line it answers.
///
/// # Errors
/// When nothing serves `path` (is `make run` running?), or the failover fails.
pub async fn request_failover(
    path: &Path,
    options: &FailoverOptions,
    mut on_message: impl FnMut(&Message),
) -> Result<FailoverReport, DevstackError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| DevstackError::io("reach the running stack's control socket (is `make run` running?)", e))?;
    let (read, mut write) = stream.into_split();
    let mut request = serde_json::to_string(options).map_err(|e| DevstackError::Postgres(e.to_string()))?;
    request.push('\n');
    write
        .write_all(request.as_bytes())
        .await
        .map_err(|e| DevstackError::io("send the failover request", e))?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| DevstackError::io("read the failover's progress", e))?
    {
        let message: Message =
            serde_json::from_str(&line).map_err(|e| DevstackError::Postgres(format!("bad answer: {e}")))?;
        on_message(&message);
        match message {
            Message::Done(report) => return Ok(report),
            Message::Error(e) => return Err(DevstackError::Postgres(format!("failover failed: {e}"))),
            Message::Phase { .. } => {}
        }
    }
    Err(DevstackError::Postgres(
        "the stack closed the control socket before the failover finished".into(),
    ))
}
