//! The single-user rotation window, done by hand, with a new connection on every request:
//! zero failed requests.

use crate::common::{events::*, *};
use devstack::Stack;

#[tokio::test]
async fn requests_needing_new_connections_succeed_through_a_rotation() {
    let stack = Stack::shared();
    let f = fixture("rotwin", &[("ITEMS_API_FRESH_CONNECTION_PER_REQUEST", "true")]).await;
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let mut failures = Vec::new();
    let mut served = 0;
    let mut hit = |resp: http::Response<lambda_http::Body>, phase: &str| {
        served += 1;
        if !resp.status().is_success() {
            failures.push(format!("{phase}: {} {:?}", resp.status(), resp.body()));
        }
    };
    for _ in 0..5 {
        hit(
            f.app
                .handle(request(
                    Flavor::HttpV2,
                    &Req::new("POST", "/items").json(r#"{"name":"before"}"#),
                    "r",
                ))
                .await,
            "before",
        );
    }

    for round in 0..3 {
        let new_password = format!("Pw-rotated-{round}-'\"\\ $$;--%é");
        let token = uuid::Uuid::new_v4().to_string();
        let mut pending = stack.secret_json(&f.db);
        pending["password"] = new_password.clone().into();
        // createSecret + setSecret: AWSPENDING has the value, the database already uses it.
        sm.put_secret_value()
            .secret_id(&f.secret_arn)
            .client_request_token(&token)
            .secret_string(pending.to_string())
            .version_stages("AWSPENDING")
            .send()
            .await
            .unwrap();
        stack.postgres.set_password(&f.db.role, &new_password).await.unwrap();
        for _ in 0..5 {
            hit(
                f.app
                    .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "r"))
                    .await,
                "window",
            );
            hit(
                f.app
                    .handle(request(
                        Flavor::RestV1,
                        &Req::new("POST", "/items").json(r#"{"name":"during"}"#),
                        "r",
                    ))
                    .await,
                "window",
            );
        }
        // finishSecret, then the service removes AWSPENDING.
        let desc = sm.describe_secret().secret_id(&f.secret_arn).send().await.unwrap();
        let current = desc
            .version_ids_to_stages()
            .unwrap()
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == "AWSCURRENT"))
            .map(|(v, _)| v.clone())
            .unwrap();
        sm.update_secret_version_stage()
            .secret_id(&f.secret_arn)
            .version_stage("AWSCURRENT")
            .move_to_version_id(&token)
            .remove_from_version_id(current)
            .send()
            .await
            .unwrap();
        sm.update_secret_version_stage()
            .secret_id(&f.secret_arn)
            .version_stage("AWSPENDING")
            .remove_from_version_id(&token)
            .send()
            .await
            .unwrap();
        for _ in 0..5 {
            hit(
                f.app
                    .handle(request(Flavor::FunctionUrl, &Req::new("GET", "/items"), "r"))
                    .await,
                "after",
            );
        }
        let h = f
            .app
            .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "r"))
            .await;
        assert_eq!(
            body_json(&h)["credentials"]["version_id"],
            token.as_str(),
            "health reports the new version"
        );
        hit(h, "health");
    }
    assert!(
        failures.is_empty(),
        "{} of {served} requests failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(served, 5 + 3 * (10 + 5 + 1));
}

/// Alternating users: the clone may be the first to connect (the first rotation ran before the
/// API's first request). The table it creates belongs to the user it alternates with, who can use
/// it after the next rotation.
#[tokio::test]
async fn a_clone_creates_the_table_as_the_user_it_alternates_with() {
    let stack = Stack::shared();
    let db = stack.create_app("altown").await.unwrap();
    let clone = format!("{}_clone", db.role);
    let clone_password = devstack::random_token();
    stack.postgres.create_role(&clone, &clone_password).await.unwrap();
    let admin = stack.postgres.admin().await.unwrap();
    admin
        .batch_execute(&format!("GRANT \"{}\" TO \"{clone}\"", db.role))
        .await
        .unwrap();

    let mut secret = stack.secret_json(&db);
    secret["username"] = clone.clone().into();
    secret["password"] = clone_password.clone().into();
    let arn = stack
        .create_secret(&Stack::secret_name("altown"), &secret)
        .await
        .unwrap();
    let as_clone = app_with(stack, &vars(stack, &arn, &[])).await;
    let resp = as_clone
        .handle(request(
            Flavor::HttpV2,
            &Req::new("POST", "/items").json(r#"{"name":"by clone"}"#),
            "c",
        ))
        .await;
    assert_eq!(resp.status(), 201, "{:?}", resp.body());

    let owner: String = stack
        .postgres
        .admin_on(&db.dbname)
        .await
        .unwrap()
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'items'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, db.role);

    // The user itself (as after the next rotation) reads what the clone wrote.
    let base_arn = stack
        .create_secret(&Stack::secret_name("altown-base"), &stack.secret_json(&db))
        .await
        .unwrap();
    let base = app_with(stack, &vars(stack, &base_arn, &[])).await;
    let resp = base
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "b"))
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    assert_eq!(body_json(&resp)["items"][0]["name"], "by clone");
}
