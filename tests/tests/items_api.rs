//! The items-api binary under `cargo lambda watch`, driven by a real HTTP client.

use devstack::Stack;
use e2e::{alive, items_api_env, json_lines, process_tree, watch_items_api};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_api_binary_serves_every_route_over_http() {
    let stack = Stack::shared();
    let app = stack.create_app("e2eapi").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("e2eapi"), &stack.secret_json(&app))
        .await
        .unwrap();
    let watch = watch_items_api(&items_api_env(stack, &arn, &[]), &[]).await;
    let http = reqwest::Client::new();
    let url = |p: &str| watch.function_url("items-api", p);

    let created = http
        .post(url("/items"))
        .json(&json!({"name": "from e2e", "description": "over HTTP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(created.headers().get("x-request-id").is_some_and(|v| !v.is_empty()));
    let item: Value = created.json().await.unwrap();
    let id = item["id"].as_i64().unwrap();
    assert_eq!(location, format!("/items/{id}"));

    let listed: Value = http
        .get(url("/items?limit=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["items"].as_array().unwrap().iter().any(|i| i["id"] == id));
    assert_eq!(
        http.get(url(&location))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        item
    );
    let put = http
        .put(url(&location))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(http.delete(url(&location)).send().await.unwrap().status(), 204);
    let gone = http.get(url(&location)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.headers()["content-type"], "application/problem+json");

    let health = http.get(url("/health/db")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["credentials"]["source"], "secretsmanager");
    assert!(
        h["credentials"].get("secret_id").is_none(),
        "the secret ARN is not public"
    );
    assert_eq!(
        (h["tls"]["in_use"].as_bool(), h["tls"]["mode"].as_str()),
        (Some(true), Some("verify-full"))
    );

    for (method, path, body, ctype, status) in [
        ("POST", "/items", "{oops", "application/json", 400),
        ("POST", "/items", r#"{"name":"x"}"#, "text/plain", 415),
        ("GET", "/items?limit=5000", "", "", 400),
        ("GET", "/nope", "", "", 404),
        ("PATCH", "/items/1", "", "", 405),
    ] {
        let mut req = http.request(method.parse().unwrap(), url(path));
        if !ctype.is_empty() {
            req = req.header("content-type", ctype).body(body.to_owned());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        if status == 405 {
            assert_eq!(resp.headers()["allow"], "GET, PUT, DELETE");
        }
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["status"], status);
    }

    // The function's logs are JSON (AWS_LAMBDA_LOG_FORMAT=JSON), one line per request, no password.
    let output = watch.output();
    let lines = json_lines(&output);
    let requests = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request" || l["message"] == "request")
        .count();
    assert!(
        requests >= 12,
        "one request line per request, got {requests}:\n{output}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.to_string().contains("database credentials resolved"))
    );
    assert!(!output.contains(&app.password), "password in the function's output");

    // Stopping watch stops the function processes it started.
    let tree = process_tree(watch.pid());
    assert!(tree.len() >= 2, "watch and at least the function process: {tree:?}");
    drop(watch);
    assert_eq!(alive(&tree), Vec::<u32>::new(), "processes left behind");
}

/// An HTTP API (payload 2.0) `GET /items` event, from the real payload in items-api's fixtures.
fn get_items_event() -> Vec<u8> {
    let mut ev: Value = serde_json::from_str(include_str!(
        "../../crates/items-api/tests/fixtures/apigw_v2_proxy_request.json"
    ))
    .unwrap();
    ev["rawPath"] = json!("/items");
    ev["rawQueryString"] = json!("");
    ev["queryStringParameters"] = Value::Null;
    ev["pathParameters"] = Value::Null;
    ev["stageVariables"] = Value::Null;
    ev["body"] = Value::Null;
    ev["isBase64Encoded"] = json!(false);
    ev["requestContext"]["http"]["method"] = json!("GET");
    ev["requestContext"]["http"]["path"] = json!("/items");
    ev["requestContext"]["authorizer"] = Value::Null;
    serde_json::to_vec(&ev).unwrap()
}

/// The binary's own init and shutdown, driven as the Lambda service drives them (devstack's
/// Runtime API): initialised for provisioned concurrency it opens a connection before its first
/// event; on SIGTERM it closes every connection cleanly (the server logs each disconnection and
/// no `could not receive data from client`) and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_api_binary_connects_during_provisioned_init_and_closes_cleanly_on_sigterm() {
    use std::time::Duration;
    let stack = Stack::shared();
    let app = stack.create_app("e2ebye").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("e2ebye"), &stack.secret_json(&app))
        .await
        .unwrap();
    // cargo lambda watch builds target/debug/items-api from this tree (as the failover suite uses it).
    drop(watch_items_api(&items_api_env(stack, &arn, &[]), &[]).await);
    let binary = devstack::watch::workspace_root(env!("CARGO_MANIFEST_DIR")).join("target/debug/items-api");

    let admin = stack.postgres.admin().await.unwrap();
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
    let pids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<i32>>();

    let api = devstack::runtime_api::RuntimeApi::start("items-api").await.unwrap();
    let log = std::env::temp_dir().join(format!("e2e-items-api-bye-{}.log", devstack::random_token()));
    let env = items_api_env(
        stack,
        &arn,
        &[
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "2"),
        ],
    );
    let mut function = api.spawn(&binary, "items-api", &env, &log).unwrap();
    api.wait_for_first_poll(Duration::from_secs(60)).await.unwrap();
    let query = "SELECT pid FROM pg_stat_activity WHERE usename = $1";
    let before = pids(admin.query(query, &[&app.role]).await.unwrap());
    assert_eq!(before.len(), 1, "init opened one connection before any event");

    let answer = api.invoke(get_items_event(), Duration::from_secs(30)).await.unwrap();
    assert!(!answer.is_error);
    let response: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    let open = pids(admin.query(query, &[&app.role]).await.unwrap());
    assert_eq!(open, before, "the first event used the connection opened during init");

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &function.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut status = None;
    for _ in 0..100 {
        status = function.exited();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    devstack::evidence::save_log("items-api-runtime-api", &output);
    let _ = std::fs::remove_file(&log);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 after SIGTERM: {status:?}\n{output}"
    );
    assert!(output.contains("database connections closed"), "{output}");

    let mut server_log = String::new();
    for _ in 0..100 {
        server_log = stack.postgres.server_log();
        if open.iter().all(|p| {
            server_log
                .lines()
                .any(|l| l.contains(&format!("[{p}]")) && l.contains("disconnection:"))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in &open {
        let tag = format!("[{pid}]");
        let lines: Vec<&str> = server_log.lines().filter(|l| l.contains(&tag)).collect();
        assert!(lines.iter().any(|l| l.contains("disconnection:")), "{pid}: {lines:#?}");
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("could not receive data from client") || l.contains("unexpected EOF")),
            "{pid} ended abruptly: {lines:#?}"
        );
    }
    assert!(!output.contains(&app.password), "password in the function's output");
}
