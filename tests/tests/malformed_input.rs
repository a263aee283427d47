//! Malformed rotation events and secrets (issue: proof §3): each is refused with an error that
//! names what is wrong, no version stage moves, nothing is written to Secrets Manager, and the
//! database password is unchanged. Against moto and Postgres, through the rotation function's
//! own entry point (`handle_json`, what the Lambda runtime calls).

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use devstack::{RotationDriver, Stack};
use rotation::{AwsRotator, Config};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Every version's stages and value: what must not change. A read that fails is the test's
/// failure, never an empty snapshot (two empty snapshots would compare equal whatever changed).
async fn snapshot(sm: &aws_sdk_secretsmanager::Client, arn: &str) -> BTreeMap<String, (Vec<String>, Option<String>)> {
    let list = sm
        .list_secret_version_ids()
        .secret_id(arn)
        .include_deprecated(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("listing the versions of {arn}: {}", DisplayErrorContext(e)));
    let mut out = BTreeMap::new();
    for v in list.versions() {
        let id = v
            .version_id()
            .unwrap_or_else(|| panic!("a version of {arn} without an id"));
        let mut stages: Vec<String> = v.version_stages().to_vec();
        stages.sort();
        // RotateSecret's placeholder has no value: Secrets Manager answers ResourceNotFound for it.
        let value = match sm.get_secret_value().secret_id(arn).version_id(id).send().await {
            Ok(o) => Some(
                o.secret_string()
                    .unwrap_or_else(|| panic!("version {id} of {arn} has no SecretString"))
                    .to_owned(),
            ),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => panic!("reading version {id} of {arn}: {}", DisplayErrorContext(e)),
        };
        out.insert(id.to_owned(), (stages, value));
    }
    assert!(!out.is_empty(), "{arn} has no version");
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
    /// The error must contain this: the function's own words for this refusal, so that a
    /// refusal by something else (Postgres, DNS, moto) cannot pass for it. `{user}` stands for the
    /// app role; ` … ` separates parts that must appear in this order.
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
            "the rotation event has no \"SecretId\" key",
        ),
        c(
            "missing ClientRequestToken",
            None,
            |a, _| json!({"SecretId": a, "Step": "createSecret"}),
            "the rotation event has no \"ClientRequestToken\" key",
        ),
        c(
            "missing Step",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t}),
            "the rotation event has no \"Step\" key",
        ),
        c(
            "unknown step",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "rotate"}),
            "unknown rotation step \"rotate\"",
        ),
        c(
            "step in the wrong case",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "CREATESECRET"}),
            "unknown rotation step \"CREATESECRET\"",
        ),
        c(
            "step is a number",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": 1}),
            "the rotation event's \"Step\" must be a non-empty string",
        ),
        c(
            "SecretId is an object",
            None,
            |_, t| json!({"SecretId": {"arn": "x"}, "ClientRequestToken": t, "Step": "createSecret"}),
            "the rotation event's \"SecretId\" must be a non-empty string",
        ),
        c(
            "token is an array",
            None,
            |a, _| json!({"SecretId": a, "ClientRequestToken": ["t"], "Step": "createSecret"}),
            "the rotation event's \"ClientRequestToken\" must be a non-empty string",
        ),
        c(
            "RotationToken is a number",
            None,
            |a, t| json!({"SecretId": a, "ClientRequestToken": t, "Step": "createSecret", "RotationToken": 7}),
            "the rotation event's \"RotationToken\" must be a non-empty string",
        ),
        c(
            "event is an array",
            None,
            |_, _| json!(["createSecret"]),
            "the event must be a JSON object: a rotation step (SecretId, ClientRequestToken, Step)",
        ),
        c(
            "event is a string",
            None,
            |_, _| json!("createSecret"),
            "the event must be a JSON object: a rotation step (SecretId, ClientRequestToken, Step)",
        ),
        c(
            "empty SecretId",
            None,
            |_, t| json!({"SecretId": "", "ClientRequestToken": t, "Step": "createSecret"}),
            "the rotation event's \"SecretId\" must be a non-empty string",
        ),
        c(
            "huge SecretId",
            None,
            |_, t| json!({"SecretId": "x".repeat(100_000), "ClientRequestToken": t, "Step": "createSecret"}),
            "the rotation event's \"SecretId\" is 100000 characters",
        ),
        c(
            "unknown secret",
            None,
            |_, t| json!({"SecretId": "app/never-created", "ClientRequestToken": t, "Step": "createSecret"}),
            "cannot describe the versions of secret app/never-created: … ResourceNotFoundException",
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
            expect: "is not enabled for rotation",
        },
        // A malformed AWSCURRENT.
        c(
            "current is not JSON",
            Some(json!("{not json")),
            ev("createSecret"),
            "AWSCURRENT version: … is not valid JSON",
        ),
        c(
            "current is a JSON array",
            Some(json!(["username", "password"])),
            ev("createSecret"),
            "AWSCURRENT version: … must hold a JSON object",
        ),
        c(
            "current lacks username",
            with(&|v| {
                v.as_object_mut().unwrap().remove("username");
            }),
            ev("createSecret"),
            "AWSCURRENT version: … has no \"username\" key",
        ),
        c(
            "current lacks password",
            with(&|v| {
                v.as_object_mut().unwrap().remove("password");
            }),
            ev("createSecret"),
            "AWSCURRENT version: … has no \"password\" key",
        ),
        c(
            "current lacks host",
            with(&|v| {
                v.as_object_mut().unwrap().remove("host");
            }),
            ev("createSecret"),
            "AWSCURRENT version: … has no \"host\" key",
        ),
        c(
            "current lacks engine",
            with(&|v| {
                v.as_object_mut().unwrap().remove("engine");
            }),
            ev("createSecret"),
            "AWSCURRENT version: … has no \"engine\" key",
        ),
        c(
            "engine is mysql",
            with(&|v| v["engine"] = json!("mysql")),
            ev("createSecret"),
            "engine \"mysql\" is not supported",
        ),
        c(
            "port is a word",
            with(&|v| v["port"] = json!("fivefourthreetwo")),
            ev("createSecret"),
            "\"port\" must be a port number",
        ),
        c(
            "port out of range",
            with(&|v| v["port"] = json!(70_000)),
            ev("createSecret"),
            "\"port\" must be a port number",
        ),
        c(
            "port is huge",
            with(&|v| v["port"] = json!("9".repeat(10_000))),
            ev("createSecret"),
            "\"port\" must be a port number",
        ),
        c(
            "username is a number",
            with(&|v| v["username"] = json!(42)),
            ev("createSecret"),
            "\"username\" must be a non-empty string",
        ),
        c(
            "password is empty",
            with(&|v| v["password"] = json!("")),
            ev("createSecret"),
            "\"password\" must be a non-empty string",
        ),
        c(
            "ssl is not a boolean",
            with(&|v| v["ssl"] = json!("maybe")),
            ev("createSecret"),
            "\"ssl\" must be true or false",
        ),
        Case {
            name: "alternating without masterarn",
            strategy: "alternating-users",
            current: None,
            rotate: true,
            cancel: false,
            pending: None,
            event: ev("createSecret"),
            expect: "has no \"masterarn\" key",
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
            expect: "_clone would be 66 bytes and Postgres names are limited to 63 bytes",
        },
        // A malformed or hostile AWSPENDING.
        // Another user the current login may change (CREATEROLE and ADMIN OPTION on it), so that
        // only the function's own check stands between the pending version and that user's password.
        Case {
            name: "pending names another user",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: false,
            pending: Some(|g| {
                let mut v = g.clone();
                v["username"] = json!(victim(g["username"].as_str().unwrap()));
                v["password"] = json!("Pw-hostile-pending-1");
                v
            }),
            event: ev("setSecret"),
            expect: "attempting to modify user {user}_victim other than {user} ",
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
            expect: "attempting to modify user for host attacker.invalid:",
        },
        Case {
            name: "pending is not JSON",
            strategy: "single-user",
            current: None,
            rotate: true,
            cancel: false,
            pending: Some(|_| json!("{{{")),
            event: ev("setSecret"),
            expect: "AWSPENDING version: … is not valid JSON",
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
            expect: "unable to log in with the pending credentials: … 28P01: password authentication failed",
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
    // A user the app role may change: CREATEROLE, plus ADMIN OPTION, which Postgres 16+ also asks.
    let victim_password = format!("Pw-victim-{}", devstack::random_token());
    stack
        .postgres
        .create_role(&victim(&app.role), &victim_password)
        .await
        .unwrap();
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER ROLE \"{role}\" CREATEROLE; GRANT \"{victim}\" TO \"{role}\" WITH ADMIN OPTION",
            role = app.role,
            victim = victim(&app.role)
        ))
        .await
        .unwrap();
    let mut secrets = vec![app.password.clone(), victim_password.clone()];
    let all = cases(&good);
    assert!(all.len() >= 30, "{} cases", all.len());
    let mut checked = Vec::new();
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
            if let Some(p) = pending["password"].as_str() {
                secrets.push(devstack::evidence::secret(p.to_owned()));
            }
            devstack::evidence::record_secret(&text);
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
        let expect = case.expect.replace("{user}", &app.role);
        assert!(
            says_in_order(&message, &expect),
            "{}: error {message:?} should say {expect:?}",
            case.name,
        );
        let sightings = devstack::capture::secret_sightings(&message, &secrets);
        assert!(
            sightings.is_empty(),
            "{}: the error shows a password: {sightings:?}",
            case.name
        );

        assert_eq!(
            snapshot(&sm, &arn).await,
            before,
            "{}: Secrets Manager changed",
            case.name
        );
        for (role, password) in [(app.role.clone(), &app.password), (victim(&app.role), &victim_password)] {
            if let Err(e) = logs_in(stack, &role, password, &app.dbname).await {
                panic!("{}: {role}'s password no longer logs in: {e}", case.name);
            }
        }
        checked.push(format!("{}: {message}", case.name));
    }
    println!("{}", checked.join("\n"));
    println!(
        "{} malformed events and secrets refused, each in the function's own words; nothing written, no stage moved",
        checked.len()
    );
}

/// Whether `message` holds every ` … `-separated part of `expect`, in order.
fn says_in_order(message: &str, expect: &str) -> bool {
    let mut rest = message;
    for part in expect.split(" … ") {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The other user of "pending names another user".
fn victim(user: &str) -> String {
    format!("{user}_victim")
}

async fn logs_in(stack: &Stack, role: &str, password: &str, dbname: &str) -> Result<(), db_credentials::ConnectError> {
    let creds = db_credentials::Credentials::new(
        role,
        secrecy::SecretString::from(password.to_owned()),
        "127.0.0.1",
        stack.postgres.port(),
        dbname,
        db_credentials::TlsSettings {
            mode: db_credentials::SslMode::VerifyFull,
            root_cert: Some(stack.postgres.ca_cert()),
        },
    );
    db_credentials::connect(&creds, std::time::Duration::from_secs(5), "malformed-check")
        .await
        .map(drop)
}
