//! A cold start while Secrets Manager throttles or fails (a storm of environments starting at
//! once), through devstack's fault-injecting stand-in in front of moto: the SDK's retry with
//! jitter rides through a few faults; when they outlast it, the answer is a 503 with
//! `Retry-After`, never a 500.

use super::*;
use devstack::faults::{Fault, FaultProxy};

/// An App whose AWS calls go through `proxy`.
async fn app_through(proxy: &FaultProxy, secret_arn: &str) -> items_api::App {
    let stack = Stack::shared();
    let sdk = stack
        .moto
        .sdk_config()
        .await
        .into_builder()
        .endpoint_url(proxy.url())
        .build();
    let v = vars(stack, secret_arn, &[]);
    let config = db_credentials::Config::from_vars(&v).unwrap();
    let provider = db_credentials::CredentialProvider::with_sdk(config, Some(&sdk));
    items_api::App::new(
        db_credentials::Database::new(provider, "items-api-test"),
        Settings::from_vars(&v).unwrap(),
    )
}

#[tokio::test]
async fn a_cold_start_rides_through_a_throttled_or_failed_secret_read() {
    let stack = Stack::shared();
    let f = fixture("throttle", &[]).await;
    for fault in Fault::ALL {
        // One fault: the SDK makes 3 attempts within 8 s, and a loaded machine's moto needs the
        // slack of the other two (seen: two faults, then a slow moto, ended in 503).
        let proxy = FaultProxy::start(stack.moto.port(), fault, 1).await.unwrap();
        let app = app_through(&proxy, &f.secret_arn).await;
        let resp = app
            .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "throttle"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{fault:?}: {:?}", resp.body());
        assert_eq!(proxy.injected(), 1, "{fault:?}: the first call met the fault");
        assert!(proxy.forwarded() >= 1, "{fault:?}: and a retry reached moto");
    }
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_a_503_with_retry_after() {
    let stack = Stack::shared();
    let f = fixture("throttled", &[]).await;
    let proxy = FaultProxy::start(stack.moto.port(), Fault::Throttling, usize::MAX)
        .await
        .unwrap();
    let app = app_through(&proxy, &f.secret_arn).await;
    let resp = app
        .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "throttled"))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{:?}", resp.body());
    assert!(header(&resp, "retry-after").is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s >= 1)));
    let p = body_json(&resp);
    assert_eq!(p["condition"], "credentials-unavailable", "{p}");
    assert!(
        proxy.injected() >= 2,
        "the SDK retried before giving up: {}",
        proxy.injected()
    );
    assert_eq!(proxy.forwarded(), 0);
}
