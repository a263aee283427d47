//! Every route, from every event shape.

use crate::common::{events::*, *};
use http::StatusCode;

#[tokio::test]
async fn every_route_works_from_every_event_shape() {
    let f = fixture("routes", &[]).await;
    for flavor in Flavor::ALL {
        let rid = format!("req-{flavor:?}");
        let call = |req: Req<'_>| f.app.handle(request(flavor, &req, &rid));

        let created = call(Req::new("POST", "/items").json(r#"{"name":"widget","description":"a thing"}"#)).await;
        assert_eq!(created.status(), StatusCode::CREATED, "{flavor:?}");
        let item = body_json(&created);
        let id = item["id"].as_i64().expect("id");
        assert_eq!(item["name"], "widget");
        assert_eq!(item["description"], "a thing");
        assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            header(&created, "location"),
            Some(format!("{}/items/{id}", flavor.prefix()).as_str()),
            "{flavor:?}"
        );
        assert_eq!(header(&created, "x-request-id"), Some(rid.as_str()));
        assert_eq!(header(&created, "content-type"), Some("application/json"));

        let path = format!("/items/{id}");
        let got = call(Req::new("GET", &path)).await;
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(body_json(&got), item);

        let listed = call(Req::new("GET", "/items").query("limit=1000&offset=0")).await;
        assert_eq!(listed.status(), StatusCode::OK);
        let page = body_json(&listed);
        assert_eq!((page["limit"].as_i64(), page["offset"].as_i64()), (Some(1000), Some(0)));
        assert!(page["items"].as_array().unwrap().iter().any(|i| i["id"] == id));
        let default_page = body_json(&call(Req::new("GET", "/items")).await);
        assert_eq!(default_page["limit"], 50);

        let replaced = call(Req::new("PUT", &path).json(r#"{"name":"gadget"}"#)).await;
        assert_eq!(replaced.status(), StatusCode::OK);
        let r = body_json(&replaced);
        assert_eq!(
            (r["name"].as_str(), r["description"].is_null()),
            (Some("gadget"), true),
            "PUT replaces the whole item"
        );
        assert!(r["updated_at"].as_str() >= item["updated_at"].as_str());

        let deleted = call(Req::new("DELETE", &path)).await;
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&deleted, "x-request-id"), Some(rid.as_str()));
        for (method, req) in [
            ("GET", Req::new("GET", &path)),
            ("PUT", Req::new("PUT", &path).json(r#"{"name":"x"}"#)),
            ("DELETE", Req::new("DELETE", &path)),
        ] {
            let gone = call(req).await;
            assert_eq!(gone.status(), StatusCode::NOT_FOUND, "{method} after delete");
            assert_eq!(header(&gone, "content-type"), Some("application/problem+json"));
        }

        let health = call(Req::new("GET", "/health")).await;
        assert_eq!(
            (health.status(), body_json(&health)),
            (StatusCode::OK, serde_json::json!({"status": "ok"}))
        );
    }
}

#[tokio::test]
async fn health_db_reports_source_version_tls_and_latency() {
    let f = fixture("healthdb", &[]).await;
    let resp = f
        .app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "h1"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = body_json(&resp);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["database"], "postgresql");
    assert_eq!(h["connection"], "active");
    assert_eq!(h["credentials"]["source"], "secretsmanager");
    assert!(
        h["credentials"].get("secret_id").is_none(),
        "the secret ARN is not public"
    );
    assert!(
        !resp.body().as_ref().windows(12).any(|w| w == b"123456789012"),
        "no account id in the body"
    );
    assert_eq!(h["credentials"]["stage"], "AWSCURRENT");
    assert_eq!(h["credentials"]["stale"], false);
    assert!(h["credentials"]["version_id"].as_str().is_some_and(|v| v.len() > 10));
    assert_eq!(h["tls"]["in_use"], true);
    assert_eq!(h["tls"]["mode"], "verify-full");
    assert!(h["latency_ms"].as_f64().is_some_and(|l| l > 0.0));
    assert!(
        !resp
            .body()
            .as_ref()
            .windows(f.db.password.len())
            .any(|w| w == f.db.password.as_bytes())
    );
}

#[tokio::test]
async fn health_db_says_when_its_connection_outlived_a_rotation() {
    // TTL 0: every check revalidates, so the test need not wait for the default five minutes.
    let f = fixture("healthrot", &[("DB_SECRET_TTL_SECS", "0")]).await;
    let stack = devstack::Stack::shared();
    let health = || async {
        let resp = f
            .app
            .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "hr"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        body_json(&resp)["credentials"].clone()
    };
    let before = health().await;
    let v1 = before["version_id"].as_str().expect("version").to_owned();
    assert_eq!(before["is_current"], true, "{before}");
    assert_eq!(before["current_version_id"], v1.as_str(), "{before}");
    assert!(before["checked_s_ago"].is_u64(), "{before}");

    // A rotation: the database takes a new password and AWSCURRENT moves to it. Postgres keeps
    // the open session, so the environment's connection stays on the first version.
    let password = format!("Pw-{}", devstack::random_token());
    stack.postgres.set_password(&f.db.role, &password).await.unwrap();
    let mut secret = stack.secret_json(&f.db);
    secret["password"] = password.into();
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let put = sm
        .put_secret_value()
        .secret_id(&f.secret_arn)
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap();
    let v2 = put.version_id().expect("new version");

    let after = health().await;
    assert_eq!(
        after["version_id"],
        v1.as_str(),
        "the connection still runs on v1: {after}"
    );
    assert_eq!(after["stage"], "AWSCURRENT", "the stage it logged in with: {after}");
    assert_eq!(after["current_version_id"], v2, "{after}");
    assert_eq!(after["is_current"], false, "{after}");
}

#[tokio::test]
async fn binary_base64_body_is_accepted() {
    let f = fixture("b64", &[]).await;
    let mut req = Req::new("POST", "/items").json(r#"{"name":"encoded"}"#);
    req.binary = true;
    for flavor in Flavor::ALL {
        let resp = f.app.handle(request(flavor, &req, "b")).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{flavor:?}");
    }
}
