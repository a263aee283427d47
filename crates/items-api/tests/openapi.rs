//! `openapi.json` is kept true: every route and method it lists is one the handler serves (and
//! the other way round), and every status it lists for an operation is produced by the handler
//! from a real event, with the documented content type, headers and body schema.

#[path = "common/mod.rs"]
mod common;

use common::{events::*, *};
use devstack::Stack;
use items_api::routes::ROUTES;
use serde_json::Value;
use std::collections::BTreeSet;

fn spec() -> Value {
    serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json is JSON")
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut node = spec;
            for part in r.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            resolve(spec, node)
        }
        None => v,
    }
}

/// A small structural check: types, required properties, additionalProperties=false, enums,
/// nullable, arrays. Enough to catch a response that drifted from the description.
fn conforms(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(spec, schema);
    if value.is_null() {
        return if schema["nullable"] == true || schema.get("type").is_none() {
            Ok(())
        } else {
            Err(format!("{at}: null not allowed"))
        };
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in {allowed:?}"));
    }
    let ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {value} is not {}", schema["type"]));
    }
    if let Some(obj) = value.as_object() {
        let props = schema["properties"].as_object();
        for req in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(req) {
                return Err(format!("{at}: missing required {req}"));
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(spec, s, v, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: undocumented property {k}"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            conforms(spec, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn routes_and_methods_match_the_handler_both_ways() {
    let spec = spec();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| *m != "parameters")
                .map(move |m| (path.clone(), m.to_uppercase()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(move |m| ((*path).to_owned(), (*m).to_owned())))
        .collect();
    assert_eq!(documented, served);
}

#[tokio::test]
async fn every_documented_status_is_produced_as_documented() {
    let spec = spec();
    let f = fixture("openapi", &[]).await;
    let stack = Stack::shared();
    let db = stack.create_app("openapidown").await.unwrap();
    let mut down_secret = stack.secret_json(&db);
    down_secret["port"] = devstack::free_port().unwrap().into();
    let down_arn = stack
        .create_secret(&Stack::secret_name("openapidown"), &down_secret)
        .await
        .unwrap();
    let down = app_with_retry(stack, &vars(stack, &down_arn, &[]), short_retry()).await;

    let existing = body_json(
        &f.app
            .handle(request(
                Flavor::HttpV2,
                &Req::new("POST", "/items").json(r#"{"name":"doc"}"#),
                "o",
            ))
            .await,
    )["id"]
        .as_i64()
        .unwrap();
    let scratch = body_json(
        &f.app
            .handle(request(
                Flavor::HttpV2,
                &Req::new("POST", "/items").json(r#"{"name":"gone"}"#),
                "o",
            ))
            .await,
    )["id"]
        .as_i64()
        .unwrap();
    let item = format!("/items/{existing}");
    let scratch = format!("/items/{scratch}");
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(65 * 1024));
    let scenario = |path: &str, method: &str, status: &str| -> Option<(Req<'static>, bool)> {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let (item, scratch, big) = (leak(item.clone()), leak(scratch.clone()), leak(big.clone()));
        let r = match (path, method, status) {
            ("/items", "get", "200") => Req::new("GET", "/items").query("limit=10"),
            ("/items", "get", "400") => Req::new("GET", "/items").query("limit=0"),
            ("/items", "get", "503") => return Some((Req::new("GET", "/items"), true)),
            ("/items", "post", "201") => Req::new("POST", "/items").json(r#"{"name":"n","description":null}"#),
            ("/items", "post", "400") => Req::new("POST", "/items").json("{"),
            ("/items", "post", "413") => Req::new("POST", "/items").json(big),
            ("/items", "post", "415") => Req::new("POST", "/items")
                .header("content-type", "text/csv")
                .raw(b"name\nx".to_vec()),
            ("/items", "post", "503") => return Some((Req::new("POST", "/items").json(r#"{"name":"n"}"#), true)),
            ("/items/{id}", "get", "200") => Req::new("GET", item),
            ("/items/{id}", "get", "400") => Req::new("GET", "/items/x"),
            ("/items/{id}", "get", "404") => Req::new("GET", "/items/9223372036854775806"),
            ("/items/{id}", "get", "503") => return Some((Req::new("GET", "/items/1"), true)),
            ("/items/{id}", "put", "200") => Req::new("PUT", item).json(r#"{"name":"renamed"}"#),
            ("/items/{id}", "put", "400") => Req::new("PUT", item).json(r#"{"name":7}"#),
            ("/items/{id}", "put", "404") => Req::new("PUT", "/items/9223372036854775806").json(r#"{"name":"n"}"#),
            ("/items/{id}", "put", "413") => Req::new("PUT", item).json(big),
            ("/items/{id}", "put", "415") => Req::new("PUT", item).raw(b"{}".to_vec()),
            ("/items/{id}", "put", "503") => return Some((Req::new("PUT", "/items/1").json(r#"{"name":"n"}"#), true)),
            ("/items/{id}", "delete", "204") => Req::new("DELETE", scratch),
            ("/items/{id}", "delete", "400") => Req::new("DELETE", "/items/-5"),
            ("/items/{id}", "delete", "404") => Req::new("DELETE", "/items/9223372036854775806"),
            ("/items/{id}", "delete", "503") => return Some((Req::new("DELETE", "/items/1"), true)),
            ("/health", "get", "200") => Req::new("GET", "/health"),
            ("/health/db", "get", "200") => Req::new("GET", "/health/db"),
            ("/health/db", "get", "503") => return Some((Req::new("GET", "/health/db"), true)),
            _ => return None,
        };
        Some((r, false))
    };

    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap().iter().filter(|(m, _)| *m != "parameters") {
            let responses = op["responses"].as_object().unwrap();
            assert_eq!(
                responses["default"]["$ref"], "#/components/responses/Error",
                "{method} {path}: a problem document for any other status"
            );
            for (status, response) in responses.iter().filter(|(s, _)| *s != "default") {
                let (req, on_down) = scenario(path, method, status)
                    .unwrap_or_else(|| panic!("no scenario for {method} {path} {status}"));
                let app = if on_down { &down } else { &f.app };
                let resp = app.handle(request(Flavor::HttpV2, &req, "o")).await;
                let what = format!("{} {path} -> {status}", method.to_uppercase());
                assert_eq!(resp.status().as_str(), status, "{what}: {:?}", resp.body());
                let response = resolve(&spec, response);
                for name in response["headers"].as_object().into_iter().flatten().map(|(k, _)| k) {
                    assert!(
                        resp.headers().contains_key(name.to_lowercase().as_str()),
                        "{what}: header {name} missing"
                    );
                }
                match response["content"].as_object() {
                    None => assert!(
                        matches!(resp.body(), lambda_http::Body::Empty),
                        "{what}: body not documented"
                    ),
                    Some(content) => {
                        let ctype = header(&resp, "content-type").unwrap_or_default();
                        let media = content
                            .get(ctype)
                            .unwrap_or_else(|| panic!("{what}: content type {ctype} not documented"));
                        conforms(&spec, &media["schema"], &body_json(&resp), "body")
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 25, "every documented (operation, status) pair was exercised");
}
