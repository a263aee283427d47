//! CloudWatch Embedded Metric Format output.

use crate::common::{events::*, *};

#[tokio::test]
async fn credential_metrics_are_flushed_as_emf() {
    let collector = items_api::emf::install("items-api-test").expect("first recorder in this binary");
    let f = fixture("emf", &[]).await;
    assert_eq!(
        f.app
            .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "m"))
            .await
            .status(),
        200
    );
    let mut out = Vec::new();
    items_api::emf::flush(collector, &mut out);
    let text = String::from_utf8(out).unwrap();
    let doc: serde_json::Value = serde_json::from_str(text.lines().next().expect("one EMF document")).unwrap();
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "ItemsApi");
    assert_eq!(directive["Dimensions"][0][0], "FunctionName");
    assert_eq!(doc["FunctionName"], "items-api-test");
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    for metric in ["SecretFetches", "SecretFetchLatencyMs", "DatabaseConnects"] {
        assert!(names.contains(&metric), "{metric} missing from {names:?}");
    }
    assert!(doc["DatabaseConnects"].as_f64().unwrap_or_default() >= 1.0);

    // A database out of connection slots: each refused connect counts, and so does the 503.
    let stack = devstack::Stack::shared();
    let db = stack.create_app("emfnoslot").await.unwrap();
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .batch_execute(&format!("ALTER ROLE {} CONNECTION LIMIT 0", db.role))
        .await
        .unwrap();
    let app = app_for(&url_vars(stack, &db, None), short_retry()).await;
    let resp = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "m"))
        .await;
    assert_eq!(resp.status(), 503);
    let mut out = Vec::new();
    items_api::emf::flush(collector, &mut out);
    let text = String::from_utf8(out).unwrap();
    let doc: serde_json::Value = serde_json::from_str(text.lines().next().expect("one EMF document")).unwrap();
    for metric in ["ConnectionsExhausted", "ServiceUnavailable"] {
        assert!(doc[metric].as_f64().unwrap_or_default() >= 1.0, "{metric}: {doc}");
    }
}
