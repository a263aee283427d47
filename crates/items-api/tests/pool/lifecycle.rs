//! A connection's life: replaced after its maximum lifetime, opened during init under provisioned
//! concurrency, closed cleanly on shutdown.

use super::*;
use futures_util::future::join_all;

/// Four concurrent writes held by a lock, so four sessions exist at once: their pids.
async fn four_sessions(f: &Fixture, id: i64, admin: &tokio_postgres::Client, tag: &str) -> BTreeSet<i32> {
    let requests = join_all((0..4).map(|i| put(&f.app, id, format!("{tag}-{i}"))));
    let (responses, seen) = with_row_locked(&f.db.dbname, id, requests, async {
        wait_for_sessions(admin, &f.db.role, 80, |(_, _, waiting, _)| *waiting >= 4).await
    })
    .await;
    assert_all_succeeded(&responses, tag);
    assert_eq!(seen.2, 4, "{tag}: four sessions at once: {seen:?}");
    seen.3
}

#[tokio::test]
async fn connections_are_replaced_after_their_maximum_lifetime_without_a_failed_request() {
    let (f, id) = pooled(
        "poollife",
        &[("AWS_LAMBDA_MAX_CONCURRENCY", "4"), ("DB_MAX_LIFETIME_SECS", "1")],
    )
    .await;
    let admin = Stack::shared().postgres.admin().await.unwrap();
    let before = four_sessions(&f, id, &admin, "young").await;
    // Past the longest jittered lifetime (1.1 s).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = four_sessions(&f, id, &admin, "renewed").await;
    assert!(
        before.is_disjoint(&after),
        "every connection past its lifetime was replaced: {before:?} then {after:?}"
    );
    // The retired ones were closed, not leaked.
    let now = wait_for_sessions(&admin, &f.db.role, 100, |(_, _, _, pids)| pids.is_disjoint(&before)).await;
    assert!(now.3.is_disjoint(&before), "retired sessions still open: {:?}", now.3);
    assert!(now.0 <= 4, "{now:?}");
}

#[tokio::test]
async fn provisioned_concurrency_opens_a_connection_during_init() {
    let stack = Stack::shared();
    let f = fixture(
        "pooleager",
        &[("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")],
    )
    .await;
    let admin = stack.postgres.admin().await.unwrap();
    assert!(
        Settings::from_vars(&vars(
            stack,
            &f.secret_arn,
            &[("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")]
        ))
        .unwrap()
        .eager_init
    );
    assert_eq!(sessions(&admin, &f.db.role).await.0, 0, "nothing opened before init");
    f.app.warm_up().await;
    let (count, _, _, pids) = sessions(&admin, &f.db.role).await;
    assert_eq!(count, 1, "init opened one connection");
    assert_eq!(f.app.db().open_connections(), 1);
    // The first request uses it: no second session.
    assert_eq!(post(&f.app, "first").await.status(), StatusCode::CREATED);
    assert_eq!(
        sessions(&admin, &f.db.role).await.3,
        pids,
        "the first request was a warm one"
    );
    // On-demand init stays lazy.
    let on_demand = Settings::from_vars(&vars(
        stack,
        &f.secret_arn,
        &[("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")],
    ))
    .unwrap();
    assert!(!on_demand.eager_init);
}

#[tokio::test]
async fn a_failed_eager_init_stays_lazy_and_does_not_crash() {
    let stack = Stack::shared();
    let db = stack.create_app("pooleagerfail").await.unwrap();
    // Nothing listens there: the connect fails during init.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut v = url_vars(stack, &db, Some(closed_port));
    v.insert(
        "AWS_LAMBDA_INITIALIZATION_TYPE".into(),
        "provisioned-concurrency".into(),
    );
    let app = app_for(&v, short_retry()).await;
    app.warm_up().await;
    assert_eq!(app.db().open_connections(), 0, "no connection, and init went on");
    // The first request tries again (and, with nothing there, is a 503, never a 500).
    let resp = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "eager"))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&resp, "retry-after").is_some());
}

/// Lines of the server log written by backend `pid` (the default `log_line_prefix` is
/// `%m [%p] `).
fn log_lines_of(log: &str, pid: i32) -> Vec<&str> {
    let tag = format!("[{pid}]");
    log.lines().filter(|l| l.contains(&tag)).collect()
}

/// What the server logs when a client goes away without saying goodbye.
fn abrupt(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("unexpected eof") || l.contains("could not receive data from client") || l.contains("connection reset")
}

#[tokio::test]
async fn shutdown_closes_every_connection_cleanly() {
    let stack = Stack::shared();
    let admin = stack.postgres.admin().await.unwrap();
    // Every session logs its end (a setting read at session start: on before the role's first).
    admin
        .batch_execute("ALTER SYSTEM SET log_disconnections = on")
        .await
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    for _ in 0..100 {
        let fresh = stack.postgres.admin().await.unwrap();
        if fresh
            .query_one("SHOW log_disconnections", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
            == "on"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (f, id) = pooled("poolbye", &[("AWS_LAMBDA_MAX_CONCURRENCY", "4")]).await;
    let pids = four_sessions(&f, id, &admin, "bye").await;
    assert_eq!(f.app.db().open_connections(), 4);

    // The control: an environment that ends without shutting down (its runtime simply stops, as
    // a killed process does). The server must notice that differently, or this test proves nothing.
    let (arn, role, known) = (
        f.secret_arn.clone(),
        f.db.role.clone(),
        pids.iter().copied().collect::<Vec<i32>>(),
    );
    let control: i32 = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let app = app_with(stack, &vars(stack, &arn, &[])).await;
            let resp = app
                .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "control"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            let admin = stack.postgres.admin().await.unwrap();
            let pid: i32 = admin
                .query_one(
                    "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND NOT (pid = ANY($2))",
                    &[&role, &known],
                )
                .await
                .unwrap()
                .get(0);
            // Never dropped in this runtime: its client would say goodbye.
            std::mem::forget(app);
            pid
        })
        // Dropping the runtime drops the connection's task: the socket closes, nothing is said.
    })
    .join()
    .unwrap();
    assert!(!pids.contains(&control));

    f.app.shutdown().await;
    assert_eq!(f.app.db().open_connections(), 0);
    let gone = wait_for_sessions(&admin, &f.db.role, 100, |(all, _, _, _)| *all == 0).await;
    assert_eq!(gone.0, 0, "every session ended: {gone:?}");
    // After shutdown a request is a 503, never a 500 (Lambda sends none; this is the contract).
    let late = post(&f.app, "late").await;
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(&late)["condition"], "instance-shutting-down");

    let mut log = String::new();
    for _ in 0..100 {
        log = stack.postgres.server_log();
        if pids
            .iter()
            .chain([&control])
            .all(|p| log_lines_of(&log, *p).iter().any(|l| l.contains("disconnection:")))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let control_lines = log_lines_of(&log, control);
    assert!(
        control_lines.iter().any(|l| abrupt(l)),
        "the control's abrupt end shows in the server log: {control_lines:#?}"
    );
    for pid in &pids {
        let lines = log_lines_of(&log, *pid);
        assert!(
            lines.iter().any(|l| l.contains("disconnection:")),
            "session {pid} logged its end: {lines:#?}"
        );
        let bad: Vec<_> = lines.iter().filter(|l| abrupt(l)).collect();
        assert!(bad.is_empty(), "session {pid} ended abruptly: {bad:#?}");
    }
}
