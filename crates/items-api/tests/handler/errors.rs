//! Every error status, from every event shape, as problem+json.

use crate::common::{events::*, *};
use http::StatusCode;

fn check_problem(resp: &http::Response<lambda_http::Body>, status: StatusCode, needle: &str, ctx: &str) {
    assert_eq!(resp.status(), status, "{ctx}: {:?}", resp.body());
    assert_eq!(header(resp, "content-type"), Some("application/problem+json"), "{ctx}");
    let p = body_json(resp);
    assert_eq!(p["status"], status.as_u16(), "{ctx}");
    assert_eq!(p["type"], "about:blank");
    assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(p["request_id"], "err-1", "{ctx}");
    assert_eq!(header(resp, "x-request-id"), Some("err-1"), "{ctx}");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "{ctx}: detail {detail:?} should contain {needle:?}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_never_a_5xx() {
    let f = fixture("errors", &[]).await;
    let big = format!(r#"{{"name":"x","description":"{}"}}"#, "a".repeat(70 * 1024));
    let cases: Vec<(Req<'_>, StatusCode, &str)> = vec![
        (
            Req::new("POST", "/items").json("{not json"),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            Req::new("POST", "/items").json(r#"{"name": 42}"#),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            Req::new("POST", "/items").json(r#"{"name":"x","description":["a"]}"#),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            Req::new("POST", "/items").json(r#"{"description":"no name"}"#),
            StatusCode::BAD_REQUEST,
            "missing field `name`",
        ),
        (
            Req::new("POST", "/items").json(r#"{"name":""}"#),
            StatusCode::BAD_REQUEST,
            "blank",
        ),
        (Req::new("POST", "/items").json(""), StatusCode::BAD_REQUEST, "empty"),
        (
            Req::new("PUT", "/items/1").json(r#"{"name":"x","extra":1}"#),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            Req::new("GET", "/items").query("limit=0"),
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Req::new("GET", "/items").query("limit=1001"),
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Req::new("GET", "/items").query("limit=ten"),
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Req::new("GET", "/items").query("offset=-1"),
            StatusCode::BAD_REQUEST,
            "offset",
        ),
        (
            Req::new("GET", "/items").query("limit=5&limit=6"),
            StatusCode::BAD_REQUEST,
            "more than once",
        ),
        (
            Req::new("GET", "/items/abc"),
            StatusCode::BAD_REQUEST,
            "positive whole number",
        ),
        (
            Req::new("DELETE", "/items/0"),
            StatusCode::BAD_REQUEST,
            "positive whole number",
        ),
        (
            Req::new("GET", "/items/99999999999999999999"),
            StatusCode::BAD_REQUEST,
            "positive whole number",
        ),
        (Req::new("GET", "/nowhere"), StatusCode::NOT_FOUND, "no route"),
        (Req::new("GET", "/items/1/extra"), StatusCode::NOT_FOUND, "no route"),
        (
            Req::new("GET", "/items/9223372036854775807"),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (Req::new("PATCH", "/items/1"), StatusCode::METHOD_NOT_ALLOWED, "PATCH"),
        (Req::new("DELETE", "/items"), StatusCode::METHOD_NOT_ALLOWED, "DELETE"),
        (Req::new("POST", "/health"), StatusCode::METHOD_NOT_ALLOWED, "POST"),
        (
            Req::new("POST", "/items").json(&big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit is 65536",
        ),
        (
            Req::new("POST", "/items")
                .header("content-type", "text/plain")
                .raw(br#"{"name":"x"}"#.to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            Req::new("PUT", "/items/1").raw(br#"{"name":"x"}"#.to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "no Content-Type",
        ),
    ];
    for flavor in Flavor::ALL {
        for (req, status, needle) in &cases {
            let resp = f.app.handle(request(flavor, req, "err-1")).await;
            check_problem(
                &resp,
                *status,
                needle,
                &format!("{flavor:?} {} {}?{}", req.method, req.path, req.query),
            );
        }
    }
    let allow = f
        .app
        .handle(request(Flavor::HttpV2, &Req::new("PATCH", "/items/7"), "err-1"))
        .await;
    assert_eq!(header(&allow, "allow"), Some("GET, PUT, DELETE"));
    let allow = f
        .app
        .handle(request(Flavor::RestV1, &Req::new("PUT", "/items"), "err-1"))
        .await;
    assert_eq!(header(&allow, "allow"), Some("GET, POST"));
    let json_suffix = Req::new("POST", "/items")
        .header("content-type", "application/merge-patch+json; charset=utf-8")
        .raw(br#"{"name":"x"}"#.to_vec());
    assert_eq!(
        f.app
            .handle(request(Flavor::HttpV2, &json_suffix, "err-1"))
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn database_down_is_503_with_retry_after_and_no_internal_names() {
    let stack = devstack::Stack::shared();
    let db = stack.create_app("down").await.unwrap();
    let mut secret = stack.secret_json(&db);
    secret["port"] = devstack::free_port().unwrap().into();
    let arn = stack
        .create_secret(&devstack::Stack::secret_name("down"), &secret)
        .await
        .unwrap();
    let app = app_with_retry(stack, &vars(stack, &arn, &[]), short_retry()).await;
    for path in ["/items", "/items/1"] {
        let resp = app
            .handle(request(Flavor::HttpV2, &Req::new("GET", path), "err-1"))
            .await;
        check_problem(&resp, StatusCode::SERVICE_UNAVAILABLE, "unreachable", path);
        assert!(header(&resp, "retry-after").is_some_and(|v| v.parse::<u32>().is_ok()));
        let text = format!("{:?}", resp.body());
        assert!(
            !text.contains(&db.role) && !text.contains("127.0.0.1") && !text.contains(&arn),
            "internal names leaked: {text}"
        );
    }
    let health = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "err-1"))
        .await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&health, "retry-after").is_some());
    let h = body_json(&health);
    assert_eq!(
        (h["status"].as_str(), h["connection"].as_str()),
        (Some("unhealthy"), Some("failed"))
    );
    assert!(h["reason"].as_str().unwrap().contains("unreachable"));
    assert_eq!(
        app.handle(request(Flavor::HttpV2, &Req::new("GET", "/health"), "err-1"))
            .await
            .status(),
        StatusCode::OK
    );

    let wrong = stack
        .create_secret(&devstack::Stack::secret_name("wrongpw"), &{
            let mut s = stack.secret_json(&db);
            s["password"] = devstack::evidence::secret("definitely-wrong").into();
            s
        })
        .await
        .unwrap();
    let app = app_with(stack, &vars(stack, &wrong, &[])).await;
    let resp = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "err-1"))
        .await;
    check_problem(
        &resp,
        StatusCode::SERVICE_UNAVAILABLE,
        "refused the service's credentials",
        "wrong password",
    );
}

/// A row the API cannot write as JSON (a timestamp before the year 0, stored BC by someone with
/// access to the table) answers 500 naming the request id, on the list and on the item, and the
/// other rows stay readable. The handler built a `serde_json::Value` with `json!`, which unwraps
/// the conversion: the invocation panicked.
#[tokio::test]
async fn a_row_without_a_json_form_is_a_500_with_the_request_id_not_a_panic() {
    let f = fixture("bcrow", &[]).await;
    let mut ids = Vec::new();
    for body in [r#"{"name":"good"}"#, r#"{"name":"ancient"}"#] {
        let resp = f
            .app
            .handle(request(Flavor::HttpV2, &Req::new("POST", "/items").json(body), "err-1"))
            .await;
        ids.push(body_json(&resp)["id"].as_i64().unwrap());
    }
    let (good, bc) = (ids[0], ids[1]);
    devstack::Stack::shared()
        .postgres
        .admin_on(&f.db.dbname)
        .await
        .unwrap()
        .execute(
            "UPDATE items SET created_at = '0044-03-15 12:00:00+00 BC' WHERE id = $1",
            &[&bc],
        )
        .await
        .unwrap();
    for path in [format!("/items/{bc}"), "/items".to_owned()] {
        let resp = f
            .app
            .handle(request(Flavor::HttpV2, &Req::new("GET", &path), "err-1"))
            .await;
        check_problem(&resp, StatusCode::INTERNAL_SERVER_ERROR, "err-1", &path);
    }
    let resp = f
        .app
        .handle(request(
            Flavor::HttpV2,
            &Req::new("GET", &format!("/items/{good}")),
            "err-1",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(&resp)["name"], "good");
}
