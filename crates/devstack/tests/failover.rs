//! Multi-AZ on the devstack: a synchronous standby behind a writer endpoint, failovers that crash
//! or demote the primary, and a second failover after the first.

use devstack::{
    FailoverMode, FailoverOptions, FailoverPhase, Postgres, PostgresInstall, PostgresOptions,
    failover::{Progress, reached},
};
use std::time::Duration;
use tokio_postgres::{Client, error::SqlState};

fn ha(install: PostgresInstall) -> Postgres {
    Postgres::start(&PostgresOptions {
        install,
        standby: true,
        ..Default::default()
    })
    .expect("a primary with a synchronous standby starts")
}

/// An app role with a database of its own, and its password.
async fn app(pg: &Postgres) -> (String, String, String) {
    let role = format!("app_{}", &devstack::random_token()[..8]);
    let password = format!("Pw-{}", devstack::random_token());
    pg.create_role(&role, &password).await.unwrap();
    let db = format!("{role}_db");
    pg.create_database(&db, &role).await.unwrap();
    pg.admin_on(&db)
        .await
        .unwrap()
        .batch_execute(&format!("CREATE TABLE t (n int); ALTER TABLE t OWNER TO {role}"))
        .await
        .unwrap();
    (role, password, db)
}

/// Logs in through the endpoint over TLS, verifying the certificate names 127.0.0.1 (verify-full).
async fn login(
    pg: &Postgres,
    (role, password, db): &(String, String, String),
) -> Result<Client, tokio_postgres::Error> {
    let pem = std::fs::read(pg.ca_cert()).unwrap();
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).unwrap())
        .disable_built_in_roots(true)
        .build()
        .unwrap();
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port())
        .user(role)
        .password(password)
        .dbname(db)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres_native_tls::MakeTlsConnector::new(tls))
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn in_recovery(c: &Client) -> bool {
    c.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0)
}

async fn write(c: &Client, n: i32) -> Result<u64, tokio_postgres::Error> {
    c.execute("INSERT INTO t VALUES ($1)", &[&n]).await
}

fn assert_read_only(result: Result<u64, tokio_postgres::Error>, who: &str) {
    let e = result.expect_err(&format!("{who}: a write must be refused"));
    assert_eq!(e.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION), "{who}: {e:?}");
}

async fn rows(c: &Client) -> Vec<i32> {
    c.query("SELECT n FROM t ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_commit_returns_only_once_the_standby_has_it() {
    let pg = ha(PostgresInstall::Debian);
    let a = app(&pg).await;
    let client = login(&pg, &a).await.unwrap();
    let standby = pg.standby_admin().await.unwrap();
    let state: String = pg
        .admin()
        .await
        .unwrap()
        .query_one("SELECT sync_state FROM pg_stat_replication", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "sync");

    // With the standby's WAL receiver frozen, nothing can reach it: the commit must wait.
    let receiver: i32 = standby
        .query_one("SELECT pid FROM pg_stat_wal_receiver", &[])
        .await
        .unwrap()
        .get(0);
    assert!(devstack::signal::process(receiver as u32, "STOP"));
    let commit = tokio::spawn(async move { write(&client, 1).await.map(|_| client) });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = !commit.is_finished();
    assert!(devstack::signal::process(receiver as u32, "CONT"));
    assert!(waiting, "the commit returned while the standby could not have it");
    let client = commit
        .await
        .unwrap()
        .expect("the commit returns once the standby has it");
    assert_eq!(rows(&client).await, [1]);
}

/// Runs a failover beside `probe`, which gets the progress to wait on.
async fn with_failover<F: std::future::Future<Output = ()>>(
    pg: &Postgres,
    options: FailoverOptions,
    probe: impl FnOnce(tokio::sync::watch::Receiver<Vec<(FailoverPhase, Duration)>>) -> F,
) -> devstack::FailoverReport {
    let (progress, phases): (Progress, _) = tokio::sync::watch::channel(Vec::new());
    let (report, ()) = tokio::join!(pg.failover(&options, Some(&progress)), probe(phases));
    report.expect("the failover succeeds")
}

#[tokio::test]
async fn crash_failover_moves_new_connections_to_the_promoted_standby_and_can_repeat() {
    let pg = &ha(PostgresInstall::Debian);
    let a = &app(pg).await;
    let endpoint_port = pg.port();
    let first_primary = pg.primary_port();
    let before = &login(pg, a).await.unwrap();
    for n in 1..=50 {
        write(before, n).await.unwrap();
    }

    let options = FailoverOptions {
        mode: FailoverMode::Crash,
        dns_delay: Duration::from_millis(1500),
        ..Default::default()
    };
    let report = with_failover(pg, options.clone(), |mut phases| async move {
        reached(&mut phases, FailoverPhase::Promoted).await.unwrap();
        assert!(
            login(pg, a).await.is_err(),
            "before the flip the endpoint still leads to the stopped primary"
        );
        assert!(
            before.simple_query("SELECT 1").await.is_err(),
            "the crashed primary's session died"
        );
        reached(&mut phases, FailoverPhase::Flipped).await.unwrap();
        let after = login(pg, a)
            .await
            .expect("after the flip the endpoint reaches the new primary");
        assert!(!in_recovery(&after).await);
        assert_eq!(
            rows(&after).await,
            (1..=50).collect::<Vec<_>>(),
            "no acknowledged write lost"
        );
        write(&after, 51).await.unwrap();
    })
    .await;
    assert_eq!(pg.port(), endpoint_port, "the endpoint's port is stable");
    assert_ne!(pg.primary_port(), first_primary);
    assert!(report.at(FailoverPhase::StandbyReady).is_some());

    // The old primary is the new standby: a second failover brings the writer back to it.
    let report = with_failover(pg, options, |mut phases| async move {
        reached(&mut phases, FailoverPhase::Flipped).await.unwrap();
    })
    .await;
    assert_eq!(report.new_primary_port, first_primary);
    let after = login(pg, a).await.unwrap();
    assert!(!in_recovery(&after).await);
    assert_eq!(rows(&after).await, (1..=51).collect::<Vec<_>>());
    write(&after, 52).await.unwrap();
}

#[tokio::test]
async fn demoted_primary_answers_25006_to_old_sessions_and_to_new_ones_until_the_flip() {
    let pg = &ha(PostgresInstall::Debian);
    let a = &app(pg).await;
    let old_session = &login(pg, a).await.unwrap();
    write(old_session, 1).await.unwrap();

    let options = FailoverOptions {
        mode: FailoverMode::Demote,
        dns_delay: Duration::from_millis(1500),
        demoted_for: Duration::from_secs(2),
    };
    with_failover(pg, options.clone(), |mut phases| async move {
        reached(&mut phases, FailoverPhase::OldPrimaryReadOnly).await.unwrap();
        assert_read_only(write(old_session, 2).await, "an open session on the demoted primary");
        reached(&mut phases, FailoverPhase::Promoted).await.unwrap();
        let pre_flip = login(pg, a)
            .await
            .expect("before the flip the demoted primary still takes new sessions");
        assert_read_only(write(&pre_flip, 3).await, "a session made before the flip");
        reached(&mut phases, FailoverPhase::Flipped).await.unwrap();
        let post_flip = login(pg, a).await.unwrap();
        assert!(
            !in_recovery(&post_flip).await,
            "after the flip new sessions reach a writer"
        );
        write(&post_flip, 4).await.unwrap();
        // The old sessions stay open and read-only, and stay on the demoted node.
        assert_read_only(write(old_session, 5).await, "an open session after the flip");
        assert_read_only(write(&pre_flip, 6).await, "a pre-flip session after the flip");
        assert_eq!(rows(old_session).await, [1]);
        reached(&mut phases, FailoverPhase::OldPrimaryStopped).await.unwrap();
        assert!(
            old_session.simple_query("SELECT 1").await.is_err(),
            "stopped with its server"
        );
        assert!(pre_flip.simple_query("SELECT 1").await.is_err());
    })
    .await;
    assert_eq!(rows(&login(pg, a).await.unwrap()).await, [1, 4]);

    // And again, from the other node.
    let report = with_failover(pg, options, |mut phases| async move {
        reached(&mut phases, FailoverPhase::Flipped).await.unwrap();
    })
    .await;
    let after = login(pg, a).await.unwrap();
    assert_eq!(after.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    write(&after, 7).await.unwrap();
    assert_eq!(rows(&after).await, [1, 4, 7]);
    assert!(report.at(FailoverPhase::StandbyReady).is_some());
}

/// The sockets in LISTEN state (IPv4 and IPv6) that belong to `pid`, as "address:port" in hex.
fn listening(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    l.to_string_lossy()
                        .strip_prefix("socket:[")
                        .map(|s| s.trim_end_matches(']').to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                found.push(f[1].to_owned());
            }
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

#[tokio::test]
async fn only_loopback_listens_and_everything_stops_on_drop() {
    let pg = ha(PostgresInstall::Debian);
    let pids = pg.pids();
    assert_eq!(pids.len(), 2, "a primary and a standby");
    let mut sockets = listening(std::process::id());
    for pid in &pids {
        sockets.extend(listening(*pid));
    }
    let endpoint = format!("0100007F:{:04X}", pg.port());
    assert!(sockets.contains(&endpoint), "{sockets:?} lacks the endpoint {endpoint}");
    for port in [pg.primary_port(), pg.standby_port().unwrap()] {
        let server = format!("0100007F:{port:04X}");
        assert!(sockets.contains(&server), "{sockets:?} lacks the server {server}");
    }
    // Other tests of this binary run beside this one, so this process may hold their endpoints too.
    assert!(
        sockets.iter().all(|s| s.starts_with("0100007F:")),
        "something listens beyond 127.0.0.1: {sockets:?}"
    );

    let dirs = pg.dirs();
    let port = pg.port();
    drop(pg);
    for pid in pids {
        assert!(!alive(pid), "postgres {pid} outlived its cluster");
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the endpoint still accepts"
    );
}

#[tokio::test]
async fn postgres_18_streams_to_a_standby_made_without_pg_basebackup_and_fails_over() {
    let pg = ha(PostgresInstall::Npm18);
    assert_eq!(pg.major_version(), 18);
    let a = app(&pg).await;
    let client = login(&pg, &a)
        .await
        .expect("TLS verify-full through the endpoint to 18");
    write(&client, 1).await.unwrap();
    let report = pg
        .failover(
            &FailoverOptions {
                dns_delay: Duration::ZERO,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(report.at(FailoverPhase::StandbyReady).is_some());
    let after = login(&pg, &a).await.unwrap();
    assert!(!in_recovery(&after).await);
    assert_eq!(rows(&after).await, [1]);
    write(&after, 2).await.unwrap();
}

#[tokio::test]
async fn devstack_failover_asks_the_running_stack_over_its_control_socket() {
    let pg = ha(PostgresInstall::Debian);
    let socket = std::env::temp_dir().join(format!("devstack-control-{}.sock", devstack::random_token()));
    let options = FailoverOptions {
        dns_delay: Duration::from_millis(200),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let report = tokio::select! {
        served = devstack::control::serve(&socket, &pg) => panic!("the server stopped: {served:?}"),
        report = async {
            // The server binds the socket as it starts.
            while !socket.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            devstack::control::request_failover(&socket, &options, |m| {
                if let devstack::control::Message::Phase { phase, .. } = m {
                    seen.push(*phase);
                }
            })
            .await
        } => report.expect("the failover succeeds"),
    };
    assert_eq!(
        seen,
        [
            FailoverPhase::Started,
            FailoverPhase::OldPrimaryStopped,
            FailoverPhase::Promoted,
            FailoverPhase::Flipped,
            FailoverPhase::StandbyReady
        ]
    );
    assert_eq!(report.new_primary_port, pg.primary_port());
    let mode = std::fs::metadata(&socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o600, "only this user may ask for a failover");
    let _ = std::fs::remove_file(&socket);
}
