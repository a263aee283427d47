//! Malformed rotation events and secrets (issue: proof §3): each is refused with an error that
//! names what is wrong, no version stage moves, nothing is written to Secrets Manager, and the
//! database password is unchanged. Against moto and Postgres, through the rotation function's
//! own entry point (`handle_json`, what the Lambda runtime calls).

use devstack::{RotationDriver, Stack};
use rotation::{AwsRotator, Config};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Every version's stages and value: what must not change.
async fn snapshot(sm: &aws_sdk_secretsmanager::Client, arn: &str) -> BTreeMap<String, (Vec<String>, Option<String>)> {
    let Ok(list) = sm
        .list_secret_version_ids()
        .secret_id(arn)
        .include_deprecated(true)
        .send()
        .await
    else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for v in list.versions() {
        let id = v.version_id().unwrap_or_default().to_owned();
        let mut stages: Vec<String> = v.version_stages().to_vec();
        stages.sort();
        let value = sm
            .get_secret_value()
            .secret_id(arn)
            .version_id(&id)
            .send()
            .await
            .ok()
            .and_then(|o| o.secret_string().map(str::to_owned));
        out.insert(id, (stages, value));
    }
    out
}

struct Case {
    name: &'static str,
    strategy: &'static str,
    /// The secret's AWSCURRENT value (None: a well-formed one for the app role).
    current: Option<Value>,
    /// Start a rotation (RotateSecret placeholder) before the event.
    rotate: bool,
    /// Then cancel it (CancelRotateSecret: rotation disabled, the placeholder stays).
    cancel: bool,
    /// Put this as the pending value (needs `rotate`).
    pending: Option<fn(&Value) -> Value>,
    /// Build the event from (secret ARN, rotation token).
    event: fn(&str, &str) -> Value,
    /// The error must contain this.
    expect: &'static str,
}

fn ev(step: &'static str) -> fn(&str, &str) -> Value {
    match step {
        "createSecret" => |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "createSecret"}),
        "setSecret" => |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "setSecret"}),
        "testSecret" => |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "testSecret"}),
        _ => |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "finishSecret"}),
    }
}

fn cases(good: &Value) -> Vec<Case> {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        Some(v)
    };
    let c = |name, current, event, expect| Case {
        name,
        strategy: "single-user",
        current,
        rotate: true,
        cancel: false,
        pending: None,
        event,
        expect,
    };
    vec![
        // Events.
        c(
            "missing SecretId",
            None,
            |_, t| json!({"ClientRequestToken": t, "Step": "createSecret"}),
            "SecretId",
        ),
        c(
            "missing ClientRequestToken",
            None,
            |a, _| json!({"SecretId": a, "Step": "createSecret"}),
            "ClientRequestToken",
        ),
        c(
            "missing Step",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t}),
            "Step",
        ),
        c(
            "unknown step",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "rotate"}),
            "rotate",
        ),
        c(
            "step in the wrong case",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "CREATESECRET"}),
            "CREATESECRET",
        ),
        c(
            "step is a number",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": 1}),
            "Step",
        ),
        c(
            "SecretId is an object",
            None,
            |_, t| json!({"SecretId": {"arn": "x"}, "ClientRequestToken": t, "Step": "createSecret"}),
            "SecretId",
        ),
        c(
            "token is an array",
            None,
            |a, _| json!({"SecretId": a, "ClientRequestToken": ["t"], "Step": "createSecret"}),
            "ClientRequestToken",
        ),
        c(
            "RotationToken is a number",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "createSecret", "RotationToken": 7}),
            "RotationToken",
        ),
        c("event is an array", None, |_, _| json!(["createSecret"]), "event"),
        c("event is a string", None, |_, _| json!("createSecret"), "event"),
        c(
            "empty SecretId",
            None,
            |_, t| json!({"SecretId": "", "ClientRequestToken": t, "Step": "createSecret"}),
            "SecretId",
        ),
        c(
            "huge SecretId",
            None,
            |_, t| json!({"SecretId": "x".repeat(100_000), "ClientRequestToken": t, "Step": "createSecret"}),
            "SecretId",
        ),
        c(
            "unknown secret",
            None,
            |_, t| json!({"SecretId": "app/never-created", "ClientRequestToken": t, "Step": "createSecret"}),
            "app/never-created",
        ),
        // Impossible stage states.
        c(
            "foreign token while another rotation is pending",
            None,
            |a, _| json!({"SecretId": a, "ClientRequestToken": "11111111-2222-3333-4444-555555555555", "Step": "setSecret"}),
            "another rotation is in progress",
        ),
        Case {
            name: "rotation not enabled",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: true,
            pending: None,
            event: ev("createSecret"),
            expect: "not enabled",
        },
        // A malformed AWSCURRENT.
        c(
            "current is not JSON",
            Some(json!("{not json")),
            ev("createSecret"),
            "not valid JSON",
        ),
        c(
            "current is a JSON array",
            Some(json!(["username", "password"])),
            ev("createSecret"),
            "JSON object",
        ),
        c(
            "current lacks username",
            with(&|v| {
                v.as_object_mut().unwrap().remove("username");
            }),
            ev("createSecret"),
            "\"username\"",
        ),
        c(
            "current lacks password",
            with(&|v| {
                v.as_object_mut().unwrap().remove("password");
            }),
            ev("createSecret"),
            "\"password\"",
        ),
        c(
            "current lacks host",
            with(&|v| {
                v.as_object_mut().unwrap().remove("host");
            }),
            ev("createSecret"),
            "host",
        ),
        c(
            "current lacks engine",
            with(&|v| {
                v.as_object_mut().unwrap().remove("engine");
            }),
            ev("createSecret"),
            "\"engine\"",
        ),
        c(
            "engine is mysql",
            with(&|v| v["engine"] = json!("mysql")),
            ev("createSecret"),
            "mysql",
        ),
        c(
            "port is a word",
            with(&|v| v["port"] = json!("fivefourthreetwo")),
            ev("createSecret"),
            "\"port\"",
        ),
        c(
            "port out of range",
            with(&|v| v["port"] = json!(70_000)),
            ev("createSecret"),
            "\"port\"",
        ),
        c(
            "port is huge",
            with(&|v| v["port"] = json!("9".repeat(10_000))),
            ev("createSecret"),
            "\"port\"",
        ),
        c(
            "username is a number",
            with(&|v| v["username"] = json!(42)),
            ev("createSecret"),
            "\"username\"",
        ),
        c(
            "password is empty",
            with(&|v| v["password"] = json!("")),
            ev("createSecret"),
            "\"password\"",
        ),
        c(
            "ssl is not a boolean",
            with(&|v| v["ssl"] = json!("maybe")),
            ev("createSecret"),
            "\"ssl\"",
        ),
        Case {
            name: "alternating without masterarn",
            strategy: "alternating-users",
            current: None,
            rotate: true,
            cancel: false,
            pending: None,
            event: ev("createSecret"),
            expect: "masterarn",
        },
        Case {
            name: "alternating clone name over 63 bytes",
            strategy: "alternating-users",
            current: with(&|v| {
                v["username"] = json!("u".repeat(60));
                v["masterarn"] = json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:m");
            }),
            rotate: true,
            cancel: false,
            pending: None,
            event: ev("createSecret"),
            expect: "63",
        },
        // A malformed or hostile AWSPENDING.
        Case {
            name: "pending names another user",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: false,
            pending: Some(|g| {
                let mut v = g.clone();
                v["username"] = json!("postgres");
                v["password"] = json!("Pw-hostile-pending-1");
                v
            }),
            event: ev("setSecret"),
            expect: "postgres",
        },
        Case {
            name: "pending names another host",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: false,
            pending: Some(|g| {
                let mut v = g.clone();
                v["host"] = json!("attacker.invalid");
                v["password"] = json!("Pw-hostile-pending-2");
                v
            }),
            event: ev("setSecret"),
            expect: "attacker.invalid",
        },
        Case {
            name: "pending is not JSON",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: false,
            pending: Some(|_| json!("{{{")),
            event: ev("setSecret"),
            expect: "not valid JSON",
        },
        Case {
            name: "pending password does not log in at testSecret",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: false,
            pending: Some(|g| {
                let mut v = g.clone();
                v["password"] = json!("Pw-never-set-3");
                v
            }),
            event: ev("testSecret"),
            expect: "log",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_and_secrets_are_refused_and_change_nothing() {
    let stack = Stack::shared();
    let sdk = stack.moto.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let driver = RotationDriver::new(&stack.moto).await.unwrap();
    let app = stack.create_app("malformed").await.unwrap();
    let good = stack.secret_json(&app);
    let all = cases(&good);
    assert!(all.len() >= 30, "{} cases", all.len());
    let mut checked = 0;
    for case in all {
        let vars: db_credentials::config::Vars = [
            ("ROTATION_STRATEGY", case.strategy.to_owned()),
            ("DB_SSLMODE", "verify-full".to_owned()),
            ("DB_SSL_ROOT_CERT", stack.postgres.ca_cert().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let rotator = AwsRotator::from_sdk(Config::from_vars(&vars).unwrap(), &sdk);
        let current = case.current.clone().unwrap_or_else(|| good.clone());
        let name = Stack::secret_name("malformed");
        let text = match &current {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let arn = sm
            .create_secret()
            .name(&name)
            .secret_string(text)
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_owned();
        let token = if case.rotate {
            driver.begin(&arn).await.unwrap()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        if case.cancel {
            sm.cancel_rotate_secret().secret_id(&arn).send().await.unwrap();
        }
        if let Some(make) = case.pending {
            let pending = make(&good);
            let text = match &pending {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            devstack::evidence::record_secret(pending["password"].as_str().unwrap_or_default());
            sm.put_secret_value()
                .secret_id(&arn)
                .client_request_token(&token)
                .secret_string(text)
                .version_stages("AWSPENDING")
                .send()
                .await
                .unwrap();
        }
        let before = snapshot(&sm, &arn).await;

        let event = (case.event)(&arn, &token);
        let result = rotator.handle_json(&event).await;
        let message = match result {
            Ok(outcome) => panic!("{}: accepted ({outcome:?})", case.name),
            Err(e) => e.to_string(),
        };
        assert!(
            message.contains(case.expect),
            "{}: error {message:?} should mention {:?}",
            case.name,
            case.expect
        );
        assert!(
            !message.contains(&app.password),
            "{}: the error shows a password",
            case.name
        );
        assert!(
            !message.contains("Pw-hostile") && !message.contains("Pw-never-set"),
            "{}: the error shows a password",
            case.name
        );

        assert_eq!(
            snapshot(&sm, &arn).await,
            before,
            "{}: Secrets Manager changed",
            case.name
        );
        assert!(
            stack.postgres.admin().await.is_ok() && role_password_unchanged(stack, &app).await,
            "{}: the database password changed",
            case.name
        );
        checked += 1;
    }
    println!("{checked} malformed events and secrets refused; nothing written, no stage moved");
}

async fn role_password_unchanged(stack: &Stack, app: &devstack::AppDatabase) -> bool {
    let creds = db_credentials::Credentials::new(
        &app.role,
        secrecy::SecretString::from(app.password.clone()),
        "127.0.0.1",
        stack.postgres.port(),
        &app.dbname,
        db_credentials::TlsSettings {
            mode: db_credentials::SslMode::VerifyFull,
            root_cert: Some(stack.postgres.ca_cert()),
        },
    );
    db_credentials::connect(&creds, std::time::Duration::from_secs(5), "malformed-check")
        .await
        .is_ok()
}
