//! createSecret (§d 8–14).

use super::*;

#[tokio::test]
async fn create_copies_current_and_changes_only_the_password() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::Created);
    let mut pending = h.pending();
    let password = pending["password"].as_str().unwrap().to_owned();
    assert_ne!(password, "pw-0");
    assert_eq!(password.len(), 32);
    pending["password"] = json!("pw-0");
    assert_eq!(
        pending,
        secret_json("app", "pw-0"),
        "every other key, unknown ones too, is kept"
    );
    assert_eq!(
        h.model().version_with(&h.arn, AWSPENDING).as_deref(),
        Some(token.as_str())
    );
    assert!(h.db.connects().is_empty(), "createSecret never touches the database");
}

#[tokio::test]
async fn create_switches_to_the_alternate_user_in_alternating_mode() {
    let h = harness(Strategy::AlternatingUsers);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let pending = h.pending();
    assert_eq!(pending["username"], "app_clone");
    assert_eq!(pending["masterarn"], json!(h.master_arn));
    assert_eq!(pending["team"], "payments");
}

#[tokio::test]
async fn create_is_idempotent_for_the_same_token() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let first = h.model().version_value(&h.arn, &token).unwrap();
    for _ in 0..3 {
        assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::PendingExists);
    }
    assert_eq!(h.model().version_value(&h.arn, &token).unwrap(), first, "byte for byte");
    assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 1, "no new password");
    assert_eq!(h.model().calls(op::PUT), 1);
}

#[tokio::test]
async fn transient_error_on_pending_lookup_does_not_generate() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    for kind in [
        AwsErrorKind::Throttled,
        AwsErrorKind::ServerError,
        AwsErrorKind::AccessDenied,
    ] {
        h.model().fail_next_for_stage(op::GET, AWSPENDING, kind);
        let err = message(h.step(&token, Step::Create).await);
        assert!(err.contains("cannot read AWSPENDING"), "{err}");
    }
    assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 0);
    assert_eq!(h.model().calls(op::PUT), 0);
    assert_eq!(h.step(&token, Step::Create).await.unwrap(), Outcome::Created);
}

#[tokio::test]
async fn invalid_current_secret_is_a_clear_error_naming_the_key() {
    let cases: [(Value, &str); 5] = [
        (
            json!({"host": HOST, "password": "hunter2-leak", "engine": "postgres"}),
            "\"username\"",
        ),
        (
            json!({"host": HOST, "username": "app", "engine": "postgres"}),
            "\"password\"",
        ),
        (
            json!({"host": HOST, "username": "app", "password": "hunter2-leak"}),
            "\"engine\"",
        ),
        (
            json!({"host": HOST, "username": "app", "password": "hunter2-leak", "engine": "mysql"}),
            "mysql",
        ),
        (json!("hunter2-leak"), "JSON object"),
    ];
    for (current, needle) in cases {
        let h = harness(Strategy::SingleUser);
        h.model()
            .put_version(&h.arn, "bad", Some(&current.to_string()), &[AWSCURRENT]);
        let token = h.begin();
        let err = message(h.step(&token, Step::Create).await);
        assert!(err.contains(needle) && err.contains(&h.arn), "{err}");
        assert!(!err.contains("hunter2"), "value leaked: {err}");
        assert_eq!(h.model().calls(op::PUT), 0);
    }
    let h = harness(Strategy::SingleUser);
    h.model()
        .put_version(&h.arn, "bad", Some("{\"username\": \"hunter2-leak"), &[AWSCURRENT]);
    let token = h.begin();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("not valid JSON") && !err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn password_policy_knobs_reach_get_random_password() {
    let h = harness_with(
        Strategy::SingleUser,
        &[
            ("PASSWORD_LENGTH", "20"),
            ("EXCLUDE_CHARACTERS", "abc"),
            ("EXCLUDE_PUNCTUATION", "true"),
            ("REQUIRE_EACH_INCLUDED_TYPE", "no"),
        ],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let expected = PasswordPolicy {
        length: 20,
        exclude_characters: "abc".into(),
        exclude_punctuation: true,
        require_each_included_type: false,
        ..PasswordPolicy::default()
    };
    assert_eq!(h.model().password_policies(), vec![expected]);
    let password = h.pending_password();
    assert_eq!(password.len(), 20);
    assert!(
        password
            .chars()
            .all(|c| c.is_ascii_alphanumeric() && !"abc".contains(c)),
        "{password}"
    );
}

#[tokio::test]
async fn generated_passwords_with_any_character_are_stored_verbatim() {
    let h = harness(Strategy::SingleUser);
    let tricky = "q'u\\o\"te $$ ;-- %s é ☃ \u{1F511}";
    h.model().script_passwords([tricky]);
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    assert_eq!(h.json(AWSCURRENT)["password"], tricky);
    assert!(h.db.logs_in("app", tricky));
}

#[tokio::test]
async fn create_refuses_a_clone_name_over_63_bytes() {
    let h = harness(Strategy::AlternatingUsers);
    let long = "é".repeat(29);
    let mut current = secret_json(&long, "pw-0");
    current["masterarn"] = json!(h.master_arn);
    h.model()
        .put_version(&h.arn, "long", Some(&current.to_string()), &[AWSCURRENT]);
    let token = h.begin();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("64 bytes") && err.contains("63"), "{err}");
    assert_eq!(h.model().calls(op::RANDOM_PASSWORD), 0);
    assert_eq!(h.model().calls(op::PUT), 0);
}
