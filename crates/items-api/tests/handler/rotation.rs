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
