//! A single-user rotation while eight invocations run at once in one environment, with
//! connections replaced mid-window by their short maximum lifetime: zero failed requests.

use super::*;
use futures_util::future::join_all;
use std::sync::atomic::{AtomicBool, Ordering};

/// The version id holding AWSCURRENT.
async fn current_version(sm: &aws_sdk_secretsmanager::Client, arn: &str) -> String {
    let desc = sm.describe_secret().secret_id(arn).send().await.unwrap();
    desc.version_ids_to_stages()
        .unwrap()
        .iter()
        .find(|(_, s)| s.iter().any(|x| x == "AWSCURRENT"))
        .map(|(v, _)| v.clone())
        .unwrap()
}

#[tokio::test]
async fn a_rotation_under_concurrent_load_fails_no_request() {
    let stack = Stack::shared();
    let (f, _) = pooled(
        "poolrot",
        &[("AWS_LAMBDA_MAX_CONCURRENCY", "8"), ("DB_MAX_LIFETIME_SECS", "1")],
    )
    .await;
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let admin = stack.postgres.admin().await.unwrap();
    let stop = AtomicBool::new(false);
    let worker = |w: usize| {
        let (app, stop) = (&f.app, &stop);
        async move {
            let mut failures = Vec::new();
            let mut served = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let resp = if served.is_multiple_of(2) {
                    post(app, format!("w{w}-{served}")).await
                } else {
                    app.handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "rot"))
                        .await
                };
                served += 1;
                if !resp.status().is_success() {
                    failures.push(format!("worker {w}: {} {:?}", resp.status(), resp.body()));
                }
                // Leave the shared cores to the database and the other engineers' builds.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (served, failures)
        }
    };
    let mut renewed_in_window = Vec::new();
    let mut tokens = Vec::new();
    let rotate = async {
        for round in 0..2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = sessions(&admin, &f.db.role).await.3;
            let new_password = format!("Pw-pool-{round}-'\"\\ $$;--%é");
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
            // Connections reach their lifetime inside the window: new logins meet the new password
            // while AWSCURRENT still holds the old one.
            tokio::time::sleep(Duration::from_millis(1400)).await;
            let during = sessions(&admin, &f.db.role).await.3;
            renewed_in_window.push(during.difference(&before).count());
            // finishSecret, then the service removes AWSPENDING.
            let current = current_version(&sm, &f.secret_arn).await;
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
            tokens.push(token);
            tokio::time::sleep(Duration::from_millis(1400)).await;
        }
        stop.store(true, Ordering::SeqCst);
    };
    let (results, ()) = tokio::join!(join_all((0..8).map(worker)), rotate);
    let served: u32 = results.iter().map(|(n, _)| n).sum();
    let failures: Vec<&String> = results.iter().flat_map(|(_, f)| f).collect();
    assert!(
        failures.is_empty(),
        "{} of {served} requests failed: {failures:#?}",
        failures.len()
    );
    assert!(served >= 8 * 2, "every worker ran: {served}");
    for (round, renewed) in renewed_in_window.iter().enumerate() {
        assert!(
            *renewed > 0,
            "round {round}: connections were opened with the new password mid-window"
        );
    }
    let (all, _, _, _) = sessions(&admin, &f.db.role).await;
    assert!(all <= 8, "never more sessions than the pool's size: {all}");
    let h = f
        .app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/health/db"), "rot"))
        .await;
    assert_eq!(h.status(), StatusCode::OK);
    // The health check may take a connection opened before the last finishSecret (AWSPENDING
    // adopted), whose version is the same token.
    assert_eq!(
        body_json(&h)["credentials"]["version_id"],
        tokens.last().unwrap().as_str(),
        "the environment runs on the new version"
    );
}
