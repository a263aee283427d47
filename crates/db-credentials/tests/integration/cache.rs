//! The secret cache against moto, counting the calls moto actually received.

use crate::common::*;
use db_credentials::{Config, CredentialProvider};
use devstack::{Moto, MotoOptions, Stack};
use std::time::Duration;

#[tokio::test]
async fn a_thousand_warm_reads_make_one_get_secret_value() {
    let stack = Stack::shared();
    let (_, arn, name) = app_with_secret(stack, "warm").await;
    let provider = provider(stack, &vars(stack, Some(&arn), &[])).await;
    for _ in 0..1000 {
        provider.current().await.expect("credentials");
    }
    assert_eq!(stack.moto.count_calls("GetSecretValue", &name).unwrap(), 1);
    assert_eq!(stack.moto.count_calls("DescribeSecret", &name).unwrap(), 0);
}

#[tokio::test]
async fn revalidation_after_the_ttl_is_one_describe_and_no_fetch_when_unchanged() {
    let stack = Stack::shared();
    let (app, arn, name) = app_with_secret(stack, "ttl").await;
    let provider = provider(stack, &vars(stack, Some(&arn), &[("DB_SECRET_TTL_SECS", "1")])).await;
    let first = provider.current().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = provider.current().await.unwrap();
    assert_eq!(first.origin.version_id, again.origin.version_id);
    assert_eq!(stack.moto.count_calls("GetSecretValue", &name).unwrap(), 1);
    assert_eq!(stack.moto.count_calls("DescribeSecret", &name).unwrap(), 1);

    // A new AWSCURRENT is picked up at the next revalidation.
    sm(stack)
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(with_password(stack, &app, "Pw-next-1").to_string())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = provider.current().await.unwrap();
    assert_ne!(rotated.origin.version_id, first.origin.version_id);
    assert_eq!(stack.moto.count_calls("GetSecretValue", &name).unwrap(), 2);
}

#[tokio::test]
async fn serves_the_cached_secret_while_secrets_manager_hangs() {
    let stack = Stack::shared();
    let moto = Moto::start(&MotoOptions::default()).unwrap();
    let app = stack.create_app("outage").await.unwrap();
    let sdk = moto.sdk_config().await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("app/outage")
        .secret_string(stack.secret_json(&app).to_string())
        .send()
        .await
        .unwrap();
    let mut v = vars(stack, Some("app/outage"), &[("DB_SECRET_TTL_SECS", "0")]);
    v.insert("AWS_ENDPOINT_URL".into(), moto.endpoint());
    let provider = CredentialProvider::with_sdk(Config::from_vars(&v).unwrap(), Some(&sdk));
    let before = provider.current().await.unwrap();
    assert!(!before.origin.stale);
    moto.pause().unwrap();
    let during = provider.current().await;
    moto.resume().unwrap();
    let during = during.expect("the cached value is served during a transient outage");
    assert!(during.origin.stale);
    assert_eq!(during.origin.version_id, before.origin.version_id);
    let status = provider.status().cache.unwrap();
    assert!(status.stale && status.last_error.is_some(), "{status:?}");
    let after = provider.current().await.unwrap();
    assert!(
        !after.origin.stale,
        "the flag clears once Secrets Manager answers again"
    );
}
