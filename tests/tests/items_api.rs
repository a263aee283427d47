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
