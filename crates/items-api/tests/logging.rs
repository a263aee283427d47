//! One structured log line per request (route template, status, latency, request id), and no
//! password in any line, even through a rotation window. A binary of its own so its global
//! subscriber sees every line; installed through devstack's evidence, so the same lines also
//! reach the suite-wide leak check. Lines are searched as written and as their JSON decodes.

#[path = "common/mod.rs"]
mod common;

use common::{events::*, *};
use devstack::Stack;
use devstack::capture::LogCapture;

#[tokio::test]
async fn one_structured_line_per_request_and_no_password_anywhere() {
    let capture = LogCapture::default();
    devstack::evidence::init_tracing_with(tracing_subscriber::fmt::layer().json().with_writer(capture.clone()));
    let stack = Stack::shared();
    let f = fixture("logging", &[("ITEMS_API_FRESH_CONNECTION_PER_REQUEST", "true")]).await;
    let requests = [
        (Req::new("POST", "/items").json(r#"{"name":"logged"}"#), "/items", 201),
        (Req::new("GET", "/items/1"), "/items/{id}", 200),
        (Req::new("GET", "/items/nope"), "-", 400),
        (Req::new("GET", "/health/db"), "/health/db", 200),
    ];
    for (i, (req, _, _)) in requests.iter().enumerate() {
        f.app.handle(request(Flavor::HttpV2, req, &format!("log-{i}"))).await;
    }
    // A rotation window: the refusal and the AWSPENDING fallback are logged too.
    // Quotes and a backslash: JSON escapes them, so only a search of decoded fields finds them.
    let rotated = devstack::evidence::secret(r#"Pw-logging-rotated-'"\ 1"#);
    let mut pending = stack.secret_json(&f.db);
    pending["password"] = rotated.into();
    aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await)
        .put_secret_value()
        .secret_id(&f.secret_arn)
        .client_request_token(uuid::Uuid::new_v4().to_string())
        .secret_string(pending.to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    stack.postgres.set_password(&f.db.role, rotated).await.unwrap();
    assert_eq!(
        f.app
            .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "log-rot"))
            .await
            .status(),
        200
    );

    let text = capture.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for (i, (_, route, status)) in requests.iter().enumerate() {
        let id = format!("log-{i}");
        let per_request: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["fields"]["message"] == "request" && l["fields"]["request_id"] == id.as_str())
            .collect();
        assert_eq!(per_request.len(), 1, "exactly one request line for {id}");
        let fields = &per_request[0]["fields"];
        assert_eq!(fields["route"], *route);
        assert_eq!(fields["status"], *status);
        assert!(fields["latency_ms"].as_f64().is_some());
        assert!(fields["method"].is_string());
    }
    assert!(
        text.contains("database refused the credentials"),
        "the rotation window was exercised"
    );
    let sightings = capture.secret_sightings(&[f.db.password.as_str(), rotated]);
    assert!(sightings.is_empty(), "a password reached the logs: {sightings:?}");
}
