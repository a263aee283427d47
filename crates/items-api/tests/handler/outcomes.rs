//! Requests whose connection dropped after the database applied them: the answer never contradicts
//! what was done. A write whose outcome is unknown is never repeated; a DELETE that succeeded is
//! never answered 404.

use crate::common::{events::*, *};
use devstack::Stack;
use http::StatusCode;

async fn behind_proxy(prefix: &str) -> (items_api::App, DropProxy, devstack::AppDatabase) {
    let stack = Stack::shared();
    let proxy = DropProxy::start(stack.postgres.port()).await;
    let db = stack.create_app(prefix).await.unwrap();
    let app = app_for(
        &url_vars(stack, &db, Some(proxy.port)),
        items_api::db::RetryPolicy::default(),
    )
    .await;
    (app, proxy, db)
}

async fn rows(db: &devstack::AppDatabase, sql: &str) -> i64 {
    Stack::shared()
        .postgres
        .admin_on(&db.dbname)
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_delete_that_committed_before_the_connection_dropped_is_never_404() {
    let (app, proxy, db) = behind_proxy("delcommit").await;
    let created = app
        .handle(request(
            Flavor::HttpV2,
            &Req::new("POST", "/items").json(r#"{"name":"doomed"}"#),
            "d",
        ))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = body_json(&created)["id"].as_i64().unwrap();
    let path = format!("/items/{id}");
    proxy.arm();
    let deleted = app
        .handle(request(Flavor::HttpV2, &Req::new("DELETE", &path), "d"))
        .await;
    assert_eq!(proxy.dropped(), 1, "the answer to the DELETE was lost");
    assert_eq!(
        rows(&db, &format!("SELECT count(*) FROM items WHERE id = {id}")).await,
        0,
        "it committed"
    );
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "{:?}", deleted.body());
    // A DELETE whose first attempt ran to completion still tells a missing item apart.
    let again = app
        .handle(request(Flavor::HttpV2, &Req::new("DELETE", &path), "d"))
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_post_whose_answer_was_lost_is_not_repeated() {
    let (app, proxy, db) = behind_proxy("postlost").await;
    assert_eq!(
        app.handle(request(Flavor::HttpV2, &Req::new("GET", "/items"), "p"))
            .await
            .status(),
        StatusCode::OK
    );
    proxy.arm();
    let resp = app
        .handle(request(
            Flavor::HttpV2,
            &Req::new("POST", "/items").json(r#"{"name":"maybe"}"#),
            "p",
        ))
        .await;
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&resp, "retry-after").is_some());
    assert!(
        body_json(&resp)["detail"]
            .as_str()
            .unwrap()
            .contains("may not have been applied")
    );
    assert_eq!(
        rows(&db, "SELECT count(*) FROM items WHERE name = 'maybe'").await,
        1,
        "applied once, and not sent again"
    );
}
