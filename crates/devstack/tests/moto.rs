//! moto's control API and raw AWS calls, made from inside an async test as the suites make them
//! (the blocking client must not need, or upset, the caller's runtime).

use devstack::{Moto, MotoOptions};
use serde_json::json;

#[tokio::test]
async fn records_calls_creates_iam_users_and_names_refusals() {
    let moto = Moto::start(&MotoOptions::default()).unwrap();
    moto.start_recording().unwrap();
    let client = aws_sdk_secretsmanager::Client::new(&moto.setup_sdk_config().await);
    let name = format!("moto-test/{}", devstack::random_token());
    client
        .create_secret()
        .name(&name)
        .secret_string("not-a-secret")
        .send()
        .await
        .unwrap();
    client.get_secret_value().secret_id(&name).send().await.unwrap();
    assert_eq!(moto.count_calls("GetSecretValue", &name).unwrap(), 1);
    assert_eq!(moto.count_calls("CreateSecret", &name).unwrap(), 1);
    assert_eq!(moto.count_calls("GetSecretValue", "no-such-name").unwrap(), 0);

    // Form-encoded IAM over aws_call, its XML answer read back.
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:DescribeSecret", "Resource": "*"}]});
    let (key, secret) = moto.create_iam_user("moto-test", &policy).unwrap();
    assert!(key.starts_with("AKIA") && !secret.is_empty(), "{key}");

    // Refusals carry the status and moto's answer.
    let again = moto.create_iam_user("moto-test", &policy).unwrap_err().to_string();
    assert!(
        again.contains("HTTP 409") && again.contains("EntityAlreadyExists"),
        "{again}"
    );
    let unknown = moto.api("GET", "/moto-api/no-such-thing", "").unwrap_err().to_string();
    assert!(unknown.contains("/moto-api/no-such-thing: HTTP 404"), "{unknown}");
}
