//! Passwords and role names that break naive quoting: rotation works and logs in afterwards, and
//! nothing reaches the server log.

use crate::support::*;
use devstack::Stack;
use rotation::Strategy;
use serde_json::json;

const TRICKY_PASSWORDS: [&str; 10] = [
    "it's-a-quote",
    "back\\slash\\",
    "\"double\"quoted\"",
    "$$dollar$$quoted$$",
    "semi;colon; DROP ROLE postgres;",
    "--comment",
    "per%cent%s%d",
    "with inner space ",
    "ünïcødé-☃-\u{1F511}-密码",
    "all: ' \\ \" $$ ; -- % é\u{1F511}",
];

#[tokio::test]
async fn passwords_with_special_characters_round_trip_single_user() {
    let stack = Stack::shared();
    let app = stack.create_app("pw").await.unwrap();
    let arn = stack
        .create_secret(&Stack::secret_name("pw"), &stack.secret_json(&app))
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
    rotator
        .secrets()
        .passwords
        .lock()
        .unwrap()
        .extend(TRICKY_PASSWORDS.iter().map(|p| (*p).to_owned()));
    let driver = driver(stack).await;
    let mut old = app.password.clone();
    for password in TRICKY_PASSWORDS {
        driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(stack, &arn).await;
        assert_eq!(now["password"], password);
        login(stack, &app.role, password, &app.dbname).await.unwrap();
        assert!(login(stack, &app.role, &old, &app.dbname).await.unwrap_err().is_auth());
        old = password.to_owned();
    }
    assert_no_password_in_server_log(stack, &arn, &TRICKY_PASSWORDS).await;
}

#[tokio::test]
async fn passwords_with_special_characters_round_trip_alternating_users() {
    let stack = Stack::shared();
    let app = stack.create_app("pwalt").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_secret(stack).await);
    let arn = stack
        .create_secret(&Stack::secret_name("pwalt"), &secret)
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let passwords = &TRICKY_PASSWORDS[..4];
    rotator
        .secrets()
        .passwords
        .lock()
        .unwrap()
        .extend(passwords.iter().map(|p| (*p).to_owned()));
    let driver = driver(stack).await;
    for password in passwords {
        driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(stack, &arn).await;
        assert_eq!(now["password"], *password);
        assert!(logs_in(stack, &now).await);
    }
    assert_no_password_in_server_log(stack, &arn, passwords).await;
}

#[tokio::test]
async fn role_names_that_need_quoting_single_user() {
    let stack = Stack::shared();
    let long = format!("long_{}", "x".repeat(58));
    assert_eq!(long.len(), 63);
    let driver = driver(stack).await;
    for role in ["App", "my-user", "a\"b", "select", long.as_str()] {
        let dbname = create_role(stack, role, "Initial-pw-1").await;
        let arn = stack
            .create_secret(
                &Stack::secret_name("names"),
                &secret_json(stack, role, "Initial-pw-1", &dbname),
            )
            .await
            .unwrap();
        let rotator = new_rotator(stack, &vars(stack, Strategy::SingleUser, &[])).await;
        let before = rolpassword(stack, role).await.unwrap();
        driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
        let now = current(stack, &arn).await;
        assert_eq!(now["username"], role);
        assert!(logs_in(stack, &now).await, "{role}");
        assert!(
            login(stack, role, "Initial-pw-1", &dbname).await.unwrap_err().is_auth(),
            "{role}"
        );
        assert_ne!(
            rolpassword(stack, role).await.unwrap(),
            before,
            "{role}: that exact role changed"
        );
    }
    assert_eq!(
        rolpassword(stack, "app").await,
        None,
        "no case-folded twin of App appeared"
    );
}

#[tokio::test]
async fn role_names_that_need_quoting_alternating_users() {
    let stack = Stack::shared();
    let master = master_secret(stack).await;
    let driver = driver(stack).await;
    let fits = format!("fit_{}", "y".repeat(53));
    assert_eq!(format!("{fits}_clone").len(), 63);
    for role in ["Alt App", "alt-user", "alt\"q", "table", fits.as_str()] {
        let dbname = create_role(stack, role, "Initial-pw-2").await;
        let mut secret = secret_json(stack, role, "Initial-pw-2", &dbname);
        secret["masterarn"] = json!(master);
        let arn = stack
            .create_secret(&Stack::secret_name("altnames"), &secret)
            .await
            .unwrap();
        let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
        for expected in [format!("{role}_clone"), role.to_owned()] {
            driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
            let now = current(stack, &arn).await;
            assert_eq!(now["username"], expected.as_str());
            assert!(logs_in(stack, &now).await, "{expected}");
        }
    }
}

#[tokio::test]
async fn clone_name_over_63_bytes_is_a_clear_error() {
    let stack = Stack::shared();
    let master = master_secret(stack).await;
    let driver = driver(stack).await;
    // 58 ASCII bytes, and 29 two-byte characters: both make a 64-byte clone name.
    for role in [format!("big_{}", "z".repeat(54)), "é".repeat(29)] {
        let dbname = create_role(stack, &role, "Initial-pw-3").await;
        let mut secret = secret_json(stack, &role, "Initial-pw-3", &dbname);
        secret["masterarn"] = json!(master);
        let arn = stack
            .create_secret(&Stack::secret_name("toolong"), &secret)
            .await
            .unwrap();
        let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
        let err = driver.rotate(&arn, &InProcess(&rotator)).await.unwrap_err().to_string();
        assert!(
            err.contains("createSecret") && err.contains("64 bytes") && err.contains("63"),
            "{err}"
        );
        assert!(version(stack, &arn, "AWSPENDING").await.is_none(), "nothing was put");
        assert!(login(stack, &role, "Initial-pw-3", &dbname).await.is_ok());
    }
}
