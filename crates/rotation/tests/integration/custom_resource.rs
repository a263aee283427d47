//! `Custom::DatabaseRole` against real Postgres and moto, with a local stand-in for CloudFormation
//! serving each event's ResponseURL on 127.0.0.1: the answer's document, the role's rights, items-api
//! serving as the role, alternating-users rotation of it through an RDS-like master, idempotence,
//! and FAILED answers that change nothing. The last test sends the events through the rotation
//! binary under `cargo lambda watch`.

use crate::{cloudformation::LocalCloudFormation, support::*};
use devstack::{Stack, Watch, watch::workspace_root};
use items_api::{App, Settings};
use rotation::{Strategy, custom_resource::HttpsResponder};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What mode 1 of the template has before the resource is created: an RDS-like master (CREATEROLE,
/// a member of rds_superuser, not superuser) owning the application database, its secret, and the
/// application secret naming a role that does not exist yet.
struct Mode1 {
    master: String,
    master_password: String,
    master_arn: String,
    role: String,
    password: String,
    dbname: String,
    secret_arn: String,
}

async fn mode1(stack: &Stack, prefix: &str) -> Mode1 {
    let suffix = &devstack::random_token()[..10];
    let master = format!("{prefix}_master_{suffix}");
    let master_password = format!("Master-{}", devstack::random_token());
    stack
        .postgres
        .create_rds_master(&master, &master_password)
        .await
        .unwrap();
    let dbname = format!("{prefix}_{suffix}_db");
    stack.postgres.create_database(&dbname, &master).await.unwrap();
    let master_arn = stack
        .create_secret(
            &Stack::secret_name(&format!("{prefix}-master")),
            &json!({"engine": "postgres", "host": stack.postgres.host(), "port": stack.postgres.port(),
                    "username": master, "password": master_password}),
        )
        .await
        .unwrap();
    let role = format!("{prefix}_app_{suffix}");
    let password = format!("App-{}", devstack::random_token());
    devstack::evidence::record_secret(&password);
    let secret_arn = stack
        .create_secret(
            &Stack::secret_name(prefix),
            &json!({"engine": "postgres", "host": stack.postgres.host(), "port": stack.postgres.port(),
                    "username": role, "password": password, "dbname": dbname, "masterarn": master_arn}),
        )
        .await
        .unwrap();
    Mode1 {
        master,
        master_password,
        master_arn,
        role,
        password,
        dbname,
        secret_arn,
    }
}

/// Sends `event` through the in-process handler and returns CloudFormation's view of the answer.
async fn send(cfn: &LocalCloudFormation, rotator: &TestRotator, request_id: &str, event: &Value) -> Value {
    let responder = HttpsResponder::new().unwrap();
    let answered = rotator.handle_custom_resource(event, None, &responder).await.unwrap();
    let received = cfn.answer(request_id, Duration::from_secs(5)).await;
    assert_eq!(received.method, "PUT");
    assert_eq!(
        received.header("content-type"),
        None,
        "the presigned URL is signed without one"
    );
    let doc = received.json();
    assert_eq!(
        doc["Status"],
        json!(answered.status),
        "what was sent is what was returned"
    );
    doc
}

async fn rotator(stack: &Stack) -> TestRotator {
    new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await
}

async fn role_facts(stack: &Stack, role: &str) -> Value {
    let row = stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
                    pg_has_role(oid, 'rds_superuser', 'MEMBER'), xmin::text::bigint
             FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    json!({"super": row.get::<_, bool>(0), "createrole": row.get::<_, bool>(1), "createdb": row.get::<_, bool>(2),
           "login": row.get::<_, bool>(3), "replication": row.get::<_, bool>(4), "bypassrls": row.get::<_, bool>(5),
           "rds_superuser": row.get::<_, bool>(6), "xmin": row.get::<_, i64>(7)})
}

/// xmin of the catalogue rows the resource may change: any change to them shows.
async fn footprint(stack: &Stack, m: &Mode1) -> Vec<i64> {
    let admin = stack.postgres.admin_on(&m.dbname).await.unwrap();
    let row = admin
        .query_one(
            "SELECT (SELECT xmin::text::bigint FROM pg_authid WHERE rolname = $1),
                    (SELECT xmin::text::bigint FROM pg_namespace WHERE nspname = $1),
                    (SELECT xmin::text::bigint FROM pg_database WHERE datname = $2),
                    (SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid WHERE r.rolname = $1)",
            &[&m.role, &m.dbname],
        )
        .await
        .unwrap();
    (0..4).map(|i| row.get::<_, i64>(i)).collect()
}

/// items-api, in process, logged in with the application secret.
async fn items_api(stack: &Stack, secret_arn: &str) -> App {
    let vars: db_credentials::config::Vars = stack.lambda_env(secret_arn).into_iter().collect();
    let config = db_credentials::Config::from_vars(&vars).unwrap();
    let provider = db_credentials::CredentialProvider::with_sdk(config, Some(&stack.moto.sdk_config().await));
    App::new(
        db_credentials::Database::new(provider, "custom-resource-test"),
        Settings::from_vars(&vars).unwrap(),
    )
}

async fn call(app: &App, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map_or(lambda_http::Body::Empty, |b| lambda_http::Body::Text(b.to_string()));
    let resp = app.handle(req.body(body).unwrap()).await;
    let status = resp.status().as_u16();
    let json = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

#[tokio::test]
async fn create_makes_a_role_with_exactly_what_the_api_needs() {
    let stack = Stack::shared();
    let m = mode1(stack, "crnew").await;
    let cfn = LocalCloudFormation::start().await;
    let rotator = rotator(stack).await;
    let (request_id, event) = cfn.event("Create", &m.secret_arn, None);
    let started = Instant::now();
    let doc = send(&cfn, &rotator, &request_id, &event).await;
    println!(
        "custom resource Create (role, CONNECT, schema) answered in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(doc["Status"], "SUCCESS", "{doc}");
    assert_eq!(doc["PhysicalResourceId"], m.role.as_str());
    assert_eq!(doc["RequestId"], request_id.as_str());
    assert_eq!(doc["StackId"], event["StackId"]);
    assert_eq!(doc["LogicalResourceId"], "AppDatabaseRole");
    assert_eq!(doc["Data"], json!({}));
    let mut keys: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "Data",
            "LogicalResourceId",
            "PhysicalResourceId",
            "Reason",
            "RequestId",
            "StackId",
            "Status"
        ]
    );
    assert!(
        doc["Reason"]
            .as_str()
            .unwrap()
            .contains(&format!("created role {}", m.role)),
        "{doc}"
    );

    let facts = role_facts(stack, &m.role).await;
    for right in [
        "super",
        "createrole",
        "createdb",
        "replication",
        "bypassrls",
        "rds_superuser",
    ] {
        assert_eq!(facts[right], false, "{right}: {facts}");
    }
    assert_eq!(facts["login"], true);
    assert!(rolpassword(stack, &m.role).await.unwrap().starts_with("SCRAM-SHA-256$"));
    let conn = connect_as(stack, &m.role, &m.password, &m.dbname).await;
    // Its own schema, first on the default search_path, owned by it; nothing anywhere else.
    let row = conn
        .client
        .query_one(
            "SELECT current_schemas(false)::text[], (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = current_user)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), vec![m.role.clone(), "public".to_owned()]);
    assert_eq!(row.get::<_, String>(1), m.role);
    conn.client
        .batch_execute("CREATE TABLE own (x int); DROP TABLE own")
        .await
        .unwrap();
    let err = conn
        .client
        .batch_execute("CREATE TABLE public.nope (x int)")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    let master = stack.postgres.connect_as(&m.master, &m.dbname).await.unwrap();
    master
        .batch_execute("CREATE SCHEMA other; CREATE TABLE other.secret_stuff (x int)")
        .await
        .unwrap();
    let err = conn
        .client
        .simple_query("SELECT * FROM other.secret_stuff")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    // Another application's database (made the same way) is closed to it, and it to the other.
    let other = mode1(stack, "crother").await;
    let (other_id, other_event) = cfn.event("Create", &other.secret_arn, None);
    assert_eq!(send(&cfn, &rotator, &other_id, &other_event).await["Status"], "SUCCESS");
    let refused = login(stack, &m.role, &m.password, &other.dbname).await.unwrap_err();
    assert!(
        refused.detail.contains("permission denied for database"),
        "{}",
        refused.detail
    );
    let refused = login(stack, &other.role, &other.password, &m.dbname).await.unwrap_err();
    assert!(
        refused.detail.contains("permission denied for database"),
        "{}",
        refused.detail
    );

    // items-api serves as the role: the store creates `items` in the role's schema.
    let app = items_api(stack, &m.secret_arn).await;
    let (status, created) = call(&app, "POST", "/items", Some(json!({"name": "first"}))).await;
    assert_eq!(status, 201, "{created}");
    let (status, list) = call(&app, "GET", "/items", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["name"], "first");
    let owner: String = stack
        .postgres
        .admin_on(&m.dbname)
        .await
        .unwrap()
        .query_one(
            "SELECT relnamespace::regnamespace::text || ' ' || relowner::regrole::text FROM pg_class WHERE relname = 'items'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, format!("{} {}", m.role, m.role));
}

#[tokio::test]
async fn a_repeated_create_or_an_update_changes_nothing_and_delete_keeps_everything() {
    let stack = Stack::shared();
    let m = mode1(stack, "cridem").await;
    let cfn = LocalCloudFormation::start().await;
    let rotator = rotator(stack).await;
    let (id, event) = cfn.event("Create", &m.secret_arn, None);
    assert_eq!(send(&cfn, &rotator, &id, &event).await["Status"], "SUCCESS");
    let conn = connect_as(stack, &m.role, &m.password, &m.dbname).await;
    conn.client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    let before = (footprint(stack, &m).await, rolpassword(stack, &m.role).await);
    for kind in ["Create", "Update"] {
        let (id, event) = cfn.event(kind, &m.secret_arn, Some(&m.role));
        let doc = send(&cfn, &rotator, &id, &event).await;
        assert_eq!(doc["Status"], "SUCCESS", "{kind}: {doc}");
        assert_eq!(doc["PhysicalResourceId"], m.role.as_str(), "{kind}: stable id");
        assert!(
            doc["Reason"].as_str().unwrap().contains("nothing changed"),
            "{kind}: {doc}"
        );
        assert_eq!(
            (footprint(stack, &m).await, rolpassword(stack, &m.role).await),
            before,
            "{kind} changed the role, its schema or the database"
        );
    }
    let (id, event) = cfn.event("Delete", &m.secret_arn, Some(&m.role));
    let doc = send(&cfn, &rotator, &id, &event).await;
    assert_eq!(doc["Status"], "SUCCESS");
    assert_eq!(doc["PhysicalResourceId"], m.role.as_str());
    assert!(doc["Reason"].as_str().unwrap().contains("are kept"), "{doc}");
    assert_eq!(footprint(stack, &m).await, before.0);
    let kept: i32 = connect_as(stack, &m.role, &m.password, &m.dbname)
        .await
        .client
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 42);
}

#[tokio::test]
async fn the_role_rotates_with_alternating_users_through_the_rds_like_master() {
    let stack = Stack::shared();
    let m = mode1(stack, "crrot").await;
    let cfn = LocalCloudFormation::start().await;
    let rotator = rotator(stack).await;
    let (id, event) = cfn.event("Create", &m.secret_arn, None);
    assert_eq!(send(&cfn, &rotator, &id, &event).await["Status"], "SUCCESS");
    let app = items_api(stack, &m.secret_arn).await;
    assert_eq!(
        call(&app, "POST", "/items", Some(json!({"name": "before"}))).await.0,
        201
    );
    let driver = driver(stack).await;
    for round in 0..3 {
        driver
            .rotate(&m.secret_arn, &InProcess(&rotator))
            .await
            .unwrap_or_else(|e| panic!("rotation {round}: {e}"));
        let now = current(stack, &m.secret_arn).await;
        assert!(logs_in(stack, &now).await, "rotation {round}");
        // A fresh items-api (a cold start) logs in with the new AWSCURRENT and sees every item.
        let fresh = items_api(stack, &m.secret_arn).await;
        let (status, created) = call(
            &fresh,
            "POST",
            "/items",
            Some(json!({"name": format!("round {round}")})),
        )
        .await;
        assert_eq!(status, 201, "rotation {round}: {created}");
        let (_, list) = call(&fresh, "GET", "/items?limit=50", None).await;
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            round + 2,
            "rotation {round}: {list}"
        );
    }
    // An Update after rotations (AWSCURRENT names the clone) is still about the user, and changes
    // nothing.
    let before = footprint(stack, &m).await;
    let (id, event) = cfn.event("Update", &m.secret_arn, Some(&m.role));
    let doc = send(&cfn, &rotator, &id, &event).await;
    assert_eq!(doc["Status"], "SUCCESS", "{doc}");
    assert_eq!(doc["PhysicalResourceId"], m.role.as_str());
    assert_eq!(footprint(stack, &m).await, before);
}

#[tokio::test]
async fn an_upgraded_stack_keeps_the_items_the_master_owned() {
    let stack = Stack::shared();
    let m = mode1(stack, "crupg").await;
    // What the earlier version did: items-api logged in as the master, so `items` is the master's,
    // in public.
    let master = stack.postgres.connect_as(&m.master, &m.dbname).await.unwrap();
    master
        .batch_execute(
            "CREATE TABLE public.items (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL,
               description TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO public.items (name) VALUES ('from the master''s days')",
        )
        .await
        .unwrap();
    let cfn = LocalCloudFormation::start().await;
    let rotator = rotator(stack).await;
    let (id, event) = cfn.event("Create", &m.secret_arn, None);
    let doc = send(&cfn, &rotator, &id, &event).await;
    assert_eq!(doc["Status"], "SUCCESS", "{doc}");
    assert!(doc["Reason"].as_str().unwrap().contains("public.items"), "{doc}");
    let app = items_api(stack, &m.secret_arn).await;
    let (status, list) = call(&app, "GET", "/items", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["name"], "from the master's days");
    let (status, created) = call(&app, "POST", "/items", Some(json!({"name": "new"}))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(call(&app, "DELETE", &format!("/items/{id}"), None).await.0, 204);
}

#[tokio::test]
async fn bad_events_and_a_master_that_cannot_log_in_are_answered_failed_and_change_nothing() {
    let stack = Stack::shared();
    let m = mode1(stack, "crbad").await;
    let cfn = LocalCloudFormation::start().await;
    let rotator = rotator(stack).await;
    let missing = format!("{}-missing", m.secret_arn);
    for (change, needle) in [
        (
            json!({"RequestType": "Replace"}),
            "unknown RequestType \"Replace\"".to_owned(),
        ),
        (
            json!({"ResourceProperties": {"ServiceToken": "arn"}}),
            "ResourceProperties.SecretId".to_owned(),
        ),
        (json!({"ResourceProperties": {"SecretId": missing}}), missing.clone()),
    ] {
        let (id, mut event) = cfn.event("Create", &m.secret_arn, None);
        for (k, v) in change.as_object().unwrap() {
            event[k] = v.clone();
        }
        let doc = send(&cfn, &rotator, &id, &event).await;
        assert_eq!(doc["Status"], "FAILED");
        assert!(doc["Reason"].as_str().unwrap().contains(&needle), "{needle}: {doc}");
    }
    // The master's password changed behind the secret's back.
    stack
        .postgres
        .set_password(&m.master, &format!("Changed-{}", devstack::random_token()))
        .await
        .unwrap();
    let (id, event) = cfn.event("Create", &m.secret_arn, None);
    let started = Instant::now();
    let doc = send(&cfn, &rotator, &id, &event).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(doc["Status"], "FAILED");
    let reason = doc["Reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("master secret {}: unable to log in", m.master_arn)) && reason.contains("28P01"),
        "{reason}"
    );
    assert!(!reason.contains(&m.master_password) && !reason.contains(&m.password));
    assert_eq!(rolpassword(stack, &m.role).await, None, "no role was made");
    let public_connect: bool = stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one("SELECT has_database_privilege('public', $1, 'CONNECT')", &[&m.dbname])
        .await
        .unwrap()
        .get(0);
    assert!(public_connect, "the database's grants are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_cloudformation_and_refuses_an_ambiguous_event() {
    let stack = Stack::shared();
    let m = mode1(stack, "crbin").await;
    let cfn = LocalCloudFormation::start().await;
    let mut env = stack.moto.env();
    env.extend([
        ("ROTATION_STRATEGY".to_owned(), "alternating-users".to_owned()),
        ("DB_SSLMODE".to_owned(), "verify-full".to_owned()),
        (
            "DB_SSL_ROOT_CERT".to_owned(),
            stack.postgres.ca_cert().display().to_string(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned()),
    ]);
    let mut watch = Watch::start(&workspace_root(env!("CARGO_MANIFEST_DIR")), &env, &[]).expect("watch starts");
    watch
        .wait_listening(Duration::from_secs(60))
        .await
        .expect("watch listens");
    let invoke = |event: Value| {
        let url = format!("{}/2015-03-31/functions/rotation/invocations", watch.base_url());
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .timeout(Duration::from_secs(600))
                .json(&event)
                .send()
                .await
                .unwrap();
            serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap_or(Value::Null)
        }
    };
    let mut timings = Vec::new();
    for (kind, status) in [
        ("Create", "SUCCESS"),
        ("Create", "SUCCESS"),
        ("Update", "SUCCESS"),
        ("Delete", "SUCCESS"),
    ] {
        let (id, event) = cfn.event(kind, &m.secret_arn, Some(&m.role));
        let started = Instant::now();
        let returned = invoke(event).await;
        timings.push(format!("{kind} {:.0} ms", started.elapsed().as_secs_f64() * 1000.0));
        let doc = cfn.answer(&id, Duration::from_secs(5)).await;
        assert_eq!(doc.header("content-type"), None);
        let doc = doc.json();
        assert_eq!(doc["Status"], status, "{kind}: {doc}\n{}", watch.output());
        assert_eq!(doc["PhysicalResourceId"], m.role.as_str());
        assert_eq!(
            returned["status"], status,
            "{kind}: the function returns after answering: {returned}"
        );
    }
    println!(
        "through the binary (first includes compiling under watch): {}",
        timings.join(", ")
    );
    let (id, mut bad) = cfn.event("Create", &m.secret_arn, None);
    bad["ResourceType"] = json!("Custom::Other");
    invoke(bad).await;
    assert_eq!(cfn.answer(&id, Duration::from_secs(5)).await.json()["Status"], "FAILED");
    // Keys of both shapes: neither a step runs nor an answer is sent.
    let (id, mut ambiguous) = cfn.event("Create", &m.secret_arn, None);
    ambiguous["Step"] = json!("finishSecret");
    ambiguous["ClientRequestToken"] = json!("t");
    let returned = invoke(ambiguous).await;
    assert!(
        returned["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("refusing to guess"),
        "{returned}"
    );
    assert!(cfn.received(&id).is_empty());
    assert!(
        connect_as(stack, &m.role, &m.password, &m.dbname)
            .await
            .client
            .simple_query("SELECT 1")
            .await
            .is_ok()
    );
    let output = watch.output();
    assert!(
        !output.contains(&m.password) && !output.contains("X-Amz-Signature=sig"),
        "a secret reached the log"
    );
}
