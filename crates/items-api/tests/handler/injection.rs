//! SQL injection attempts through every input leave the table intact and are stored verbatim.

use crate::common::{events::*, *};
use devstack::Stack;

const PAYLOADS: [&str; 6] = [
    "'); DROP TABLE items; --",
    "x' OR '1'='1",
    "1; DELETE FROM items",
    "$$; TRUNCATE items; $$",
    "\\'; DROP TABLE items; --",
    "Robert\"); DROP TABLE items;--",
];

#[tokio::test]
async fn injection_through_every_input_changes_nothing() {
    let f = fixture("inject", &[]).await;
    let call = |req: Req<'_>| f.app.handle(request(Flavor::HttpV2, &req, "i"));
    let keep = body_json(&call(Req::new("POST", "/items").json(r#"{"name":"keep-me"}"#)).await)["id"]
        .as_i64()
        .unwrap();
    let mut stored = Vec::new();
    for p in PAYLOADS {
        let body = serde_json::json!({"name": p, "description": p}).to_string();
        let created = call(Req::new("POST", "/items").json(&body)).await;
        assert_eq!(created.status(), 201);
        let item = body_json(&created);
        assert_eq!(
            (item["name"].as_str(), item["description"].as_str()),
            (Some(p), Some(p)),
            "stored verbatim"
        );
        stored.push(item["id"].as_i64().unwrap());
        let path = format!("/items/{}", item["id"]);
        assert_eq!(call(Req::new("PUT", &path).json(&body)).await.status(), 200);

        let encoded: String = url::form_urlencoded::byte_serialize(p.as_bytes()).collect();
        for query in [
            format!("limit={encoded}"),
            format!("offset={encoded}"),
            format!("limit=5&offset=0{encoded}"),
        ] {
            assert_eq!(
                call(Req::new("GET", "/items").query(&query)).await.status(),
                400,
                "{query}"
            );
        }
        let id_path = format!("/items/{encoded}");
        for method in ["GET", "PUT", "DELETE"] {
            let req = if method == "PUT" {
                Req::new(method, &id_path).json(&body)
            } else {
                Req::new(method, &id_path)
            };
            let status = call(req).await.status().as_u16();
            assert!(status == 400 || status == 404, "{method} {id_path}: {status}");
        }
    }
    // The table is intact: the first row and every injected row are still there, readable.
    assert_eq!(call(Req::new("GET", &format!("/items/{keep}"))).await.status(), 200);
    for id in stored {
        assert_eq!(call(Req::new("GET", &format!("/items/{id}"))).await.status(), 200);
    }
    let admin = Stack::shared().postgres.admin_on(&f.db.dbname).await.unwrap();
    let count = admin
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(count, 1 + PAYLOADS.len() as i64);
}
