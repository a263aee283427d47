//! Property tests over API Gateway and Function URL events: whatever the method, path, query,
//! headers and body (any bytes, any size) and whichever optional event fields are missing, the
//! handler never panics, never answers 5xx, every error is a problem+json document, and a request
//! to a documented operation gets one of the statuses `openapi.json` lists for it.

#[path = "common/mod.rs"]
mod common;

use common::{events::*, *};
use proptest::prelude::*;
use std::sync::OnceLock;

/// One App and one runtime for all cases (building them per case would dominate the run).
fn harness() -> &'static (tokio::runtime::Runtime, common::Fixture) {
    static H: OnceLock<(tokio::runtime::Runtime, common::Fixture)> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let f = rt.block_on(fixture("props", &[]));
        (rt, f)
    })
}

fn flavor() -> impl Strategy<Value = Flavor> {
    prop::sample::select(Flavor::ALL.to_vec())
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]).prop_map(str::to_owned),
        1 => "[A-Z]{1,10}",
    ]
}

/// Paths: real routes with arbitrary ids, odd shapes, and arbitrary URL-safe or percent-encoded segments.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-zA-Z0-9._~-]{0,12}",
        "(%[0-9A-F]{2}){1,6}",
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{15,25}",
    ];
    prop_oneof![
        3 => segment.clone().prop_map(|id| format!("/items/{id}")),
        1 => Just("/items".to_owned()),
        1 => Just("/items/".to_owned()),
        1 => Just("/health/db".to_owned()),
        1 => Just("/health".to_owned()),
        2 => prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/"))),
        1 => Just("//items//1".to_owned()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![Just("limit".to_owned()), Just("offset".to_owned()), "[a-z]{1,6}"];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,30}",
        "(%[0-9A-F]{2}){0,6}",
        "[a-zA-Z0-9._~-]{0,10}",
        Just(String::new()),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_owned())),
        Just(Some("application/json; charset=utf-8".to_owned())),
        Just(Some("APPLICATION/JSON".to_owned())),
        Just(Some("application/vnd.items+json".to_owned())),
        Just(Some("text/plain".to_owned())),
        Just(Some("multipart/form-data; boundary=x".to_owned())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

/// Bodies: arbitrary bytes, arbitrary text, JSON shaped like an item with any values, and sizes
/// around the 64 KiB limit.
fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    let json_value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,60}".prop_map(serde_json::Value::from),
        "\\PC{0,250}".prop_map(serde_json::Value::from),
        Just(serde_json::json!(["a", 1])),
        Just(serde_json::json!({"nested": {}})),
    ];
    let item = prop::collection::vec(
        (
            prop_oneof![
                Just("name".to_owned()),
                Just("description".to_owned()),
                Just("id".to_owned()),
                "[a-z]{1,8}"
            ],
            json_value,
        ),
        0..4,
    )
    .prop_map(|fields| {
        serde_json::Value::Object(fields.into_iter().collect())
            .to_string()
            .into_bytes()
    });
    prop_oneof![
        2 => Just(None),
        3 => item.prop_map(Some),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Some),
        1 => "\\PC{0,300}".prop_map(|s| Some(s.into_bytes())),
        1 => (60_000usize..70_000).prop_map(|n| Some(format!(r#"{{"name":"{}"}}"#, "x".repeat(n)).into_bytes())),
    ]
}

/// Optional event fields to delete (JSON pointers), per flavor.
fn missing() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "/headers",
            "/multiValueHeaders",
            "/queryStringParameters",
            "/multiValueQueryStringParameters",
            "/pathParameters",
            "/stageVariables",
            "/cookies",
            "/rawQueryString",
            "/body",
            "/isBase64Encoded",
            "/requestContext/stage",
            "/requestContext/requestId",
            "/requestContext/domainName",
        ]),
        0..3,
    )
}

/// Requests shaped like real use: a served route with its method, JSON content type, an item body
/// whose fields may still be wrong.
fn plausible() -> impl Strategy<Value = (String, String, String, Option<String>, Option<Vec<u8>>)> {
    let route = prop::sample::select(vec![
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/{id}"),
        ("PUT", "/items/{id}"),
        ("DELETE", "/items/{id}"),
        ("GET", "/health/db"),
    ]);
    let id = prop_oneof![1i64..50, any::<i64>()];
    let name = prop_oneof![4 => "[a-zA-Z0-9 ]{1,40}", 1 => "\\PC{0,220}"];
    let description = prop_oneof![
        4 => Just(None),
        4 => "\\PC{0,100}".prop_map(Some),
        1 => Just(Some("d".repeat(2001))),
        1 => (65_000usize..70_000).prop_map(|n| Some("d".repeat(n))),
    ];
    (route, id, query(), name, description).prop_map(|((m, p), id, q, name, desc)| {
        let path = p.replace("{id}", &id.to_string());
        let body = matches!(m, "POST" | "PUT").then(|| {
            serde_json::json!({"name": name, "description": desc})
                .to_string()
                .into_bytes()
        });
        (m.to_owned(), path, q, Some("application/json".to_owned()), body)
    })
}

fn request_parts() -> impl Strategy<Value = (String, String, String, Option<String>, Option<Vec<u8>>)> {
    prop_oneof![
        1 => plausible(),
        1 => (method(), path(), query(), content_type(), body()),
    ]
}

fn remove(value: &mut serde_json::Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let target = if parent.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(parent)
    };
    if let Some(serde_json::Value::Object(map)) = target {
        map.remove(key);
    }
}

/// The statuses `openapi.json` lists for the operation `method path` calls, without `default`;
/// `None` when the request is not a documented operation (unknown path or method).
fn documented_statuses(spec: &serde_json::Value, method: &str, path: &str) -> Option<Vec<u16>> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    // A dot segment (`.`, `..`, or percent-encoded) is resolved by URL parsing before the router
    // sees the path (`/items/.` arrives as `/items`), so the request is not the operation it spells.
    let dot = |s: &&str| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if segments.iter().any(dot) {
        return None;
    }
    let (_, ops) = spec["paths"].as_object()?.iter().find(|(template, _)| {
        let t: Vec<&str> = template[1..].split('/').collect();
        t.len() == segments.len()
            && t.iter()
                .zip(&segments)
                .all(|(t, s)| if t.starts_with('{') { !s.is_empty() } else { t == s })
    })?;
    let op = ops.get(method.to_ascii_lowercase())?;
    Some(
        op["responses"]
            .as_object()?
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect(),
    )
}

/// Cases per run; `make soak` raises it with ITEMS_PROPERTY_CASES.
fn cases() -> u32 {
    std::env::var("ITEMS_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

#[test]
fn any_event_gets_a_non_5xx_answer_and_errors_are_problem_json() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::sync::atomic::{AtomicU32, Ordering};
    // Every case the runner generated, and those lambda_http itself refused (a rejected case is
    // not one of `cases()`: proptest generates another in its place, so `handled` always ends at
    // `cases()` and says nothing about how many never reached the handler).
    let generated = AtomicU32::new(0);
    let rejected = AtomicU32::new(0);
    let handled = AtomicU32::new(0);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let strategy = (flavor(), request_parts(), any::<bool>(), missing());
    let spec: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let documented_calls = AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &strategy,
        |(flavor, (method, path, query, ctype, body), binary, missing)| {
            generated.fetch_add(1, Ordering::Relaxed);
            let (rt, f) = harness();
            let mut req = Req::new(&method, &path).query(&query);
            if let Some(ct) = &ctype {
                req = req.header("content-type", ct);
            }
            req.body = body;
            req.binary = binary;
            let mut event = event_json(flavor, &req);
            for pointer in &missing {
                remove(&mut event, pointer);
            }
            // An event lambda_http itself refuses never reaches the handler.
            let text = event.to_string();
            let Ok(Ok(request)) = std::panic::catch_unwind(|| lambda_http::request::from_str(&text)) else {
                rejected.fetch_add(1, Ordering::Relaxed);
                return Err(TestCaseError::reject("lambda_http refuses this event"));
            };
            let resp = rt.block_on(f.app.handle(request));
            handled.fetch_add(1, Ordering::Relaxed);
            let status = resp.status().as_u16();
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            prop_assert!(
                status < 500,
                "{} {}?{} -> {}: {:?}",
                method,
                path,
                query,
                status,
                resp.body()
            );
            if status >= 400 {
                prop_assert_eq!(header(&resp, "content-type"), Some("application/problem+json"));
                let problem = body_json(&resp);
                prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status)));
                prop_assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
            }
            prop_assert!(resp.headers().contains_key("x-request-id"));
            // Without its stage, a staged event's path cannot be routed (API Gateway always sends it).
            let routable = !missing.contains(&"/requestContext/stage");
            if let Some(listed) = documented_statuses(&spec, &method, &path).filter(|_| routable) {
                documented_calls.fetch_add(1, Ordering::Relaxed);
                prop_assert!(
                    listed.contains(&status),
                    "{} {} -> {} is not among the statuses openapi.json lists for it: {:?} ({:?}, missing {:?})",
                    method,
                    path,
                    status,
                    listed,
                    flavor,
                    missing
                );
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let statuses = statuses.into_inner().unwrap();
    let (generated, rejected, handled) = (generated.into_inner(), rejected.into_inner(), handled.into_inner());
    println!(
        "{generated} events generated, {rejected} refused by lambda_http, {handled} handled; statuses {statuses:?}"
    );
    assert_eq!(handled, cases(), "the runner ran the configured number of cases");
    assert_eq!(
        (generated, rejected),
        (handled, 0),
        "every generated event reached the handler: lambda_http refused {rejected} of {generated}, so the \
         generator makes events API Gateway never sends"
    );
    let documented_calls = documented_calls.load(Ordering::Relaxed);
    println!("{documented_calls} of them called a documented operation, each answered with a listed status");
    assert!(
        documented_calls > cases() / 4,
        "only {documented_calls} events called a documented operation"
    );
    for status in [200, 201, 400, 404, 405, 413, 415] {
        assert!(
            statuses.contains_key(&status),
            "the generator never produced a {status}: {statuses:?}"
        );
    }
}
