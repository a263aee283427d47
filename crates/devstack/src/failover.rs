//! Multi-AZ, played locally: a synchronous standby, and failovers that move the writer endpoint.
//!
//! The standby is a second cluster made from a base backup of the primary (`pg_basebackup` where
//! the install has it, as Debian's does; the SQL backup API `pg_backup_start`/`pg_backup_stop`
//! with a file copy where it has not, as the npm Postgres 18 ships only `initdb`, `pg_ctl` and
//! `postgres`, and `pg_basebackup` refuses servers newer than itself). It streams from the
//! primary's Unix socket through a physical replication slot, and the primary lists it in
//! `synchronous_standby_names` with `synchronous_commit = on`, so a commit is acknowledged only
//! once the standby has flushed it: what RDS Multi-AZ promises. An asynchronous replica could lose
//! acknowledged writes in a failover; this one cannot.
//!
//! A failover ([`Postgres::failover`]) has two shapes ([`FailoverMode`]):
//! * [`FailoverMode::Crash`]: the primary stops at once (`pg_ctl stop -m immediate`); its sessions
//!   die. The standby is promoted; after the DNS delay new connections reach it.
//! * [`FailoverMode::Demote`]: the primary turns read-only for new transactions
//!   (`default_transaction_read_only` by `ALTER SYSTEM` and a reload: every session, open or new,
//!   gets SQLSTATE 25006 on a write) and keeps serving; the standby is promoted; after the DNS
//!   delay new connections reach it; the old primary serves its read-only sessions a while longer,
//!   then stops (its sessions end with 57P01).
//!
//! Either way the old primary is then rebuilt as the new primary's synchronous standby, so the
//! next failover can follow. Until it is back the new primary runs alone (as RDS does while it
//! replaces the standby): it must not keep `synchronous_standby_names`, or every commit would hang.

use crate::{
    DevstackError, Postgres,
    postgres::{Node, as_postgres, chown_to_postgres, describe, run_async, set_mode, socket_client, with_log},
};
use serde::{Deserialize, Serialize};
use std::{
    path::Path,
    str::FromStr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// How the primary leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// It stops at once, as a host that fails; its connections die.
    #[default]
    Crash,
    /// It turns read-only and keeps its sessions for [`FailoverOptions::demoted_for`] after the
    /// flip, as a demoted node that still answers (the case that produces 25006), then stops.
    Demote,
}

impl FromStr for FailoverMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crash" => Ok(Self::Crash),
            "demote" | "demoted" => Ok(Self::Demote),
            other => Err(format!("unknown failover mode {other:?}: use crash or demote")),
        }
    }
}

/// How a failover goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverOptions {
    /// Crash or demote.
    pub mode: FailoverMode,
    /// From the promotion to the flip of the endpoint (the DNS change); new connections still
    /// reach the old primary (refused after a crash, read-only after a demotion) meanwhile.
    pub dns_delay: Duration,
    /// [`FailoverMode::Demote`] only: how long the old primary keeps serving after the flip.
    pub demoted_for: Duration,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        Self {
            mode: FailoverMode::Crash,
            dns_delay: Duration::from_secs(2),
            demoted_for: Duration::from_secs(5),
        }
    }
}

/// A step of a failover, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverPhase {
    /// Nothing done yet.
    Started,
    /// Demote: the old primary refuses writes (25006); its sessions stay open.
    OldPrimaryReadOnly,
    /// The old primary's server stopped (at once after a crash; after the demoted window).
    OldPrimaryStopped,
    /// The standby was promoted and accepts writes; the endpoint still points at the old primary.
    Promoted,
    /// The endpoint sends new connections to the new primary.
    Flipped,
    /// The old primary is the new primary's synchronous standby: another failover may follow.
    StandbyReady,
}

impl FailoverPhase {
    /// The name used in the control protocol and printed by `devstack failover`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::OldPrimaryReadOnly => "old_primary_read_only",
            Self::OldPrimaryStopped => "old_primary_stopped",
            Self::Promoted => "promoted",
            Self::Flipped => "flipped",
            Self::StandbyReady => "standby_ready",
        }
    }
}

/// The phases reached so far, each with the time since the failover started.
pub type Progress = watch::Sender<Vec<(FailoverPhase, Duration)>>;

/// What a failover did and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverReport {
    /// Crash or demote.
    pub mode: FailoverMode,
    /// Each phase with the time since the start.
    pub phases: Vec<(FailoverPhase, Duration)>,
    /// The server port that was primary.
    pub old_primary_port: u16,
    /// The server port that is primary now.
    pub new_primary_port: u16,
}

impl FailoverReport {
    /// When `phase` was reached, if it was.
    pub fn at(&self, phase: FailoverPhase) -> Option<Duration> {
        self.phases.iter().find(|(p, _)| *p == phase).map(|(_, t)| *t)
    }
}

/// Waits until `progress` has reached `phase`.
///
/// # Errors
/// When the failover ended (its sender dropped) without reaching it.
pub async fn reached(
    progress: &mut watch::Receiver<Vec<(FailoverPhase, Duration)>>,
    phase: FailoverPhase,
) -> Result<Duration, DevstackError> {
    let phases = progress
        .wait_for(|phases| phases.iter().any(|(p, _)| *p == phase))
        .await
        .map_err(|_| DevstackError::Postgres(format!("the failover ended before {}", phase.as_str())))?;
    Ok(phases
        .iter()
        .find(|(p, _)| *p == phase)
        .map(|(_, t)| *t)
        .unwrap_or_default())
}

impl Postgres {
    /// Fails the primary over to the standby, moves the endpoint after `options.dns_delay`, and
    /// rebuilds the old primary as the new standby. Reports each phase on `progress` as it is
    /// reached. One failover at a time: a second call waits for the first.
    ///
    /// # Errors
    /// When the cluster has no standby, or a step fails (named, with the server's log).
    pub async fn failover(
        &self,
        options: &FailoverOptions,
        progress: Option<&Progress>,
    ) -> Result<FailoverReport, DevstackError> {
        let _one_at_a_time = self.failover_lock.lock().await;
        let Some(endpoint) = self.endpoint.as_ref() else {
            return Err(DevstackError::Postgres(
                "this cluster has no standby to fail over to: start it with PostgresOptions { standby: true, .. }"
                    .into(),
            ));
        };
        let old = self.primary.load(Ordering::SeqCst);
        let new = (old + 1) % 2;
        let started = Instant::now();
        let mut phases = Vec::new();
        let mut reach = |phase: FailoverPhase| {
            phases.push((phase, started.elapsed()));
            if let Some(progress) = progress {
                progress.send_replace(phases.clone());
            }
            phases.clone()
        };
        reach(FailoverPhase::Started);

        match options.mode {
            FailoverMode::Crash => {
                self.pg_ctl_stop(old, "immediate").await?;
                reach(FailoverPhase::OldPrimaryStopped);
            }
            FailoverMode::Demote => {
                self.demote(old).await?;
                reach(FailoverPhase::OldPrimaryReadOnly);
            }
        }

        // Everything the old primary acknowledged is on the standby (synchronous); promotion
        // replays what it received before it accepts writes.
        let node = &self.nodes[new];
        run_async(
            pg_ctl(self, node, &["promote", "-w", "-t", "60"]),
            "pg_ctl promote (the standby)",
        )
        .await
        .map_err(|e| with_log(e, node))?;
        // Alone until the old primary is back as its standby: waiting for a standby that is not
        // there would hang every commit.
        sql(
            node,
            "ALTER SYSTEM RESET synchronous_standby_names; ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf()",
        )
        .await?;
        self.primary.store(new, Ordering::SeqCst);
        reach(FailoverPhase::Promoted);

        tokio::time::sleep(options.dns_delay).await;
        endpoint.set_target(node.port);
        reach(FailoverPhase::Flipped);

        if options.mode == FailoverMode::Demote {
            tokio::time::sleep(options.demoted_for).await;
            self.pg_ctl_stop(old, "fast").await?;
            reach(FailoverPhase::OldPrimaryStopped);
        }

        self.attach_standby(old, new).await?;
        let phases = reach(FailoverPhase::StandbyReady);
        Ok(FailoverReport {
            mode: options.mode,
            phases,
            old_primary_port: self.nodes[old].port,
            new_primary_port: node.port,
        })
    }

    /// Turns node `index` read-only for every new transaction, in open sessions and new ones: a
    /// reload reaches an idle session before its next statement runs.
    async fn demote(&self, index: usize) -> Result<(), DevstackError> {
        let node = &self.nodes[index];
        sql(
            node,
            "ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf()",
        )
        .await?;
        // The reload is asynchronous: wait until a new session sees it.
        wait_until(
            node,
            "SELECT current_setting('default_transaction_read_only') = 'on'",
            &[],
        )
        .await
    }

    async fn pg_ctl_stop(&self, index: usize, mode: &str) -> Result<(), DevstackError> {
        let node = &self.nodes[index];
        run_async(
            pg_ctl(self, node, &["-m", mode, "-w", "-t", "30", "stop"]),
            "pg_ctl stop (the old primary)",
        )
        .await
    }

    /// Makes node `standby` a synchronous standby of node `primary`: a fresh base backup into its
    /// data directory, started in standby mode, streaming, then named in the primary's
    /// `synchronous_standby_names`.
    pub(crate) async fn attach_standby(&self, standby: usize, primary: usize) -> Result<(), DevstackError> {
        let (to, from) = (&self.nodes[standby], &self.nodes[primary]);
        let data = to.data_dir();
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(|e| DevstackError::io("remove the old primary's data", e))?;
        }
        chown_to_postgres(&to.dir)?;
        let slot = to.name;
        sql(
            from,
            &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        )
        .await?;
        let basebackup = self.bin.join("pg_basebackup");
        if basebackup.exists() {
            let mut cmd = as_postgres(&basebackup);
            cmd.arg("-D")
                .arg(&data)
                .arg("-d")
                .arg(format!(
                    "host={} port={} user=postgres application_name=basebackup",
                    from.dir.display(),
                    from.port
                ))
                .args(["-X", "stream", "-c", "fast", "--no-sync", "-C", "-S", slot]);
            run_async(cmd, "pg_basebackup").await?;
        } else {
            sql_backup(from, &data, slot).await?;
        }
        std::fs::write(data.join("standby.signal"), "").map_err(|e| DevstackError::io("write standby.signal", e))?;
        // Appended: the last line of postgresql.auto.conf wins over what the backup brought along.
        let mut auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
        auto.push_str(&format!(
            "\nprimary_conninfo = 'host={} port={} user=postgres application_name={}'\nprimary_slot_name = '{slot}'\n",
            from.dir.display(),
            from.port,
            to.name
        ));
        std::fs::write(data.join("postgresql.auto.conf"), auto)
            .map_err(|e| DevstackError::io("write postgresql.auto.conf", e))?;
        chown_to_postgres(&to.dir)?;
        set_mode(&data, 0o700)?;
        let mut start = pg_ctl(self, to, &["-w", "-t", "30", "-l"]);
        start
            .arg(to.log_path())
            .arg("-o")
            .arg(self.node_options(standby))
            .arg("start");
        run_async(start, "pg_ctl start (the standby)")
            .await
            .map_err(|e| with_log(e, to))?;

        let name = to.name.to_owned();
        wait_until(
            from,
            "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming')",
            &[&name],
        )
        .await?;
        sql(
            from,
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{name}'; SELECT pg_reload_conf()"),
        )
        .await?;
        wait_until(
            from,
            "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = $1 AND sync_state = 'sync')",
            &[&name],
        )
        .await
    }
}

/// Sets up the standby of a cluster being started (node 1 of node 0), from a caller that may be
/// inside a runtime: the SQL runs on a thread of its own.
pub(crate) fn start_standby(pg: &mut Postgres) -> Result<(), DevstackError> {
    pg.nodes[1].port = crate::free_port()?;
    let pg = &*pg;
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| DevstackError::io("start a runtime for the standby's setup", e))?
                .block_on(pg.attach_standby(1, 0))
        })
        .join()
        .unwrap_or_else(|_| Err(DevstackError::Postgres("the standby's setup panicked".into())))
    })
}

fn pg_ctl(pg: &Postgres, node: &Node, args: &[&str]) -> std::process::Command {
    let mut cmd = as_postgres(&pg.bin.join("pg_ctl"));
    cmd.arg("-D").arg(node.data_dir()).args(args);
    cmd
}

/// Runs `;`-separated statements one by one (`ALTER SYSTEM` refuses the implicit transaction of
/// a multi-statement query).
async fn sql(node: &Node, statements: &str) -> Result<(), DevstackError> {
    let client = socket_client(&node.dir, node.port, "postgres", "postgres").await?;
    for statement in statements.split("; ") {
        client
            .batch_execute(statement)
            .await
            .map_err(|e| DevstackError::Postgres(format!("{} ({statement}): {}", node.name, describe(&e))))?;
    }
    Ok(())
}

/// Polls a boolean query on `node` until it is true (30 s at most).
async fn wait_until(
    node: &Node,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), DevstackError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = socket_client(&node.dir, node.port, "postgres", "postgres").await?;
    loop {
        let row = client
            .query_one(query, params)
            .await
            .map_err(|e| DevstackError::Postgres(format!("{} ({query}): {}", node.name, describe(&e))))?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DevstackError::Postgres(format!(
                "{}: still false after 30 s: {query}",
                node.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A base backup without `pg_basebackup`, as the documentation's "low level API" describes: the
/// slot first (so the primary keeps the WAL from the backup's start on), `pg_backup_start`, a copy
/// of the data directory without what the server rebuilds, `pg_backup_stop` in the same session,
/// and its label file as `backup_label`.
async fn sql_backup(from: &Node, data: &Path, slot: &str) -> Result<(), DevstackError> {
    let client = socket_client(&from.dir, from.port, "postgres", "postgres").await?;
    let fail =
        |e: tokio_postgres::Error| DevstackError::Postgres(format!("{} (base backup): {}", from.name, describe(&e)));
    client
        .execute("SELECT pg_create_physical_replication_slot($1, true)", &[&slot])
        .await
        .map_err(fail)?;
    client
        .execute("SELECT pg_backup_start('devstack standby', true)", &[])
        .await
        .map_err(fail)?;
    let source = from.data_dir();
    let copied = {
        let (source, data) = (source.clone(), data.to_owned());
        tokio::task::spawn_blocking(move || copy_data_dir(&source, &data, true))
            .await
            .map_err(|e| DevstackError::Postgres(format!("copying the data directory: {e}")))
    };
    let stop = client
        .query_one("SELECT labelfile FROM pg_backup_stop(false)", &[])
        .await
        .map_err(fail)?;
    copied??;
    let label: String = stop.get(0);
    std::fs::write(data.join("backup_label"), label).map_err(|e| DevstackError::io("write backup_label", e))
}

/// Files and directories a base backup leaves out (the server recreates them); of the
/// directories, only the contents.
const SKIP_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "standby.signal",
    "recovery.signal",
    "pg_internal.init",
];
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
    "pgsql_tmp",
];

fn copy_data_dir(source: &Path, target: &Path, top: bool) -> Result<(), DevstackError> {
    std::fs::create_dir_all(target).map_err(|e| DevstackError::io("create the standby's data directory", e))?;
    let entries = std::fs::read_dir(source).map_err(|e| DevstackError::io("read the primary's data directory", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else { continue };
        let to = target.join(&*name);
        if kind.is_dir() {
            if EMPTY_DIRS.contains(&&*name) || name.starts_with("pgsql_tmp") {
                std::fs::create_dir_all(&to).map_err(|e| DevstackError::io("create a directory", e))?;
                if top && name == "pg_wal" {
                    std::fs::create_dir_all(to.join("archive_status"))
                        .map_err(|e| DevstackError::io("create pg_wal/archive_status", e))?;
                }
            } else {
                copy_data_dir(&entry.path(), &to, false)?;
            }
        } else if !SKIP_FILES.contains(&&*name) {
            // A file the server removed while we copied (a temporary one) is no loss.
            match std::fs::copy(entry.path(), &to) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DevstackError::io("copy a data file", e)),
            }
        }
    }
    Ok(())
}
