//! Secrets Manager calls, counted by moto's request recorder (what moto actually received).

use crate::common::{events::*, *};
use devstack::Stack;
use http::StatusCode;
use std::time::Duration;

#[tokio::test]
async fn a_thousand_warm_invocations_make_exactly_one_get_secret_value() {
    let f = fixture("warmcalls", &[]).await;
    for i in 0..1000 {
        let path = if i % 2 == 0 { "/items" } else { "/health/db" };
        let resp = f.app.handle(request(Flavor::HttpV2, &Req::new("GET", path), "w")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let moto = &Stack::shared().moto;
    assert_eq!(moto.count_calls("GetSecretValue", &f.secret_name).unwrap(), 1);
    assert_eq!(moto.count_calls("DescribeSecret", &f.secret_name).unwrap(), 0);
}

#[tokio::test]
async fn revalidation_after_the_ttl_costs_one_describe_and_no_fetch() {
    // A new connection per request, so every request consults the credential cache.
    // The TTL leaves a wide margin: each batch must fit inside it.
    let f = fixture(
        "ttlcalls",
        &[
            ("DB_SECRET_TTL_SECS", "3"),
            ("ITEMS_API_FRESH_CONNECTION_PER_REQUEST", "true"),
        ],
    )
    .await;
    for _ in 0..5 {
        assert_eq!(
            f.app
                .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "t"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for _ in 0..5 {
        assert_eq!(
            f.app
                .handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "t"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let moto = &Stack::shared().moto;
    assert_eq!(
        moto.count_calls("GetSecretValue", &f.secret_name).unwrap(),
        1,
        "nothing changed: no second fetch"
    );
    assert_eq!(
        moto.count_calls("DescribeSecret", &f.secret_name).unwrap(),
        1,
        "one revalidation after the TTL"
    );
}
