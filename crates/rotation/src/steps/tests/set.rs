//! setSecret (§d 15–26).

use super::*;

#[tokio::test]
async fn set_is_a_no_op_when_pending_already_logs_in() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.db.add_role("app", &h.pending_password(), false);
    assert_eq!(h.step(&token, Step::Set).await.unwrap(), Outcome::PendingAlreadyWorks);
    assert!(h.db.changes().is_empty());
    assert_eq!(h.db.connects().len(), 1, "only the pending login");
}

#[tokio::test]
async fn set_refuses_a_pending_user_other_than_the_one_it_may_change() {
    for (strategy, pending_user, expected) in [
        (Strategy::SingleUser, "admin", "app"),
        (Strategy::AlternatingUsers, "app", "app_clone"),
        (Strategy::AlternatingUsers, "admin", "app_clone"),
    ] {
        let h = harness(strategy);
        let token = h.begin();
        let mut pending = secret_json(pending_user, "new-pw");
        pending["masterarn"] = json!(h.master_arn);
        h.model()
            .put_version(&h.arn, &token, Some(&pending.to_string()), &[AWSPENDING]);
        let err = message(h.step(&token, Step::Set).await);
        assert!(
            err.contains(&format!(
                "attempting to modify user {pending_user} other than {expected}"
            )),
            "{err}"
        );
        assert!(h.db.connects().is_empty(), "no login before the check");
        assert!(h.db.changes().is_empty());
    }
}

#[tokio::test]
async fn set_refuses_a_pending_host_other_than_current_without_connecting_to_it() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    let mut pending = secret_json("app", "new-pw");
    pending["host"] = json!("attacker.example");
    h.model()
        .put_version(&h.arn, &token, Some(&pending.to_string()), &[AWSPENDING]);
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("host attacker.example:5432 other than current host db.internal:5432"),
        "{err}"
    );
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn set_changes_the_password_with_current() {
    let h = harness(Strategy::SingleUser);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set]).await.unwrap();
    let new = h.pending_password();
    assert!(h.db.logs_in("app", &new));
    assert!(!h.db.logs_in("app", "pw-0"));
    assert_eq!(h.db.changes(), vec!["ALTER app"]);
    let users: Vec<String> = h.db.connects().into_iter().map(|(u, _)| u).collect();
    assert_eq!(users, ["app", "app"], "pending refused, then current");
}

#[tokio::test]
async fn set_falls_back_to_previous_when_current_fails() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "prev",
        Some(&json!({"username": "app", "password": "pw-prev"}).to_string()),
        &[AWSPREVIOUS],
    );
    h.db.add_role("app", "pw-prev", false);
    let token = h.begin();
    h.steps(&token, &[Step::Create, Step::Set]).await.unwrap();
    assert!(h.db.logs_in("app", &h.pending_password()));
    assert_eq!(h.db.connects().len(), 3, "pending, current, previous");
}

#[tokio::test]
async fn previous_naming_another_user_or_host_is_never_tried() {
    for previous in [
        json!({"username": "admin", "password": "admin-pw", "host": HOST}),
        json!({"username": "app", "password": "pw-prev", "host": "elsewhere.example"}),
    ] {
        let h = harness(Strategy::SingleUser);
        h.model()
            .put_version(&h.arn, "prev", Some(&previous.to_string()), &[AWSPREVIOUS]);
        h.db.add_role("app", "pw-prev", false);
        let token = h.begin();
        h.step(&token, Step::Create).await.unwrap();
        let err = message(h.step(&token, Step::Set).await);
        assert!(err.contains("not tried"), "{err}");
        assert_eq!(h.db.connects().len(), 2, "pending and current only");
        assert!(h.db.changes().is_empty());
    }
}

#[tokio::test]
async fn set_fails_clearly_when_nothing_logs_in() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "prev",
        Some(&json!({"username": "app", "password": "pw-prev"}).to_string()),
        &[AWSPREVIOUS],
    );
    h.db.add_role("app", "changed-by-someone", false);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(err.contains("unable to log into db.internal:5432 as app"), "{err}");
    for attempt in ["pending: ", "current: ", "previous: "] {
        assert!(err.contains(attempt), "{attempt} missing from {err}");
    }
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("pw-prev") && !err.contains(&h.pending_password()),
        "{err}"
    );
}

#[tokio::test]
async fn missing_or_malformed_previous_does_not_mask_the_real_error() {
    for (previous, why) in [
        (None, "no AWSPREVIOUS version"),
        (Some("{not json"), "AWSPREVIOUS is unusable"),
        (Some("{\"password\":\"pw\"}"), "AWSPREVIOUS is unusable"),
    ] {
        let h = harness(Strategy::SingleUser);
        if let Some(previous) = previous {
            h.model().put_version(&h.arn, "prev", Some(previous), &[AWSPREVIOUS]);
        }
        h.db.add_role("app", "changed-by-someone", false);
        let token = h.begin();
        h.step(&token, Step::Create).await.unwrap();
        let err = message(h.step(&token, Step::Set).await);
        assert!(
            err.contains("current: FATAL 28P01: password authentication failed"),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
    }
    let h = harness(Strategy::SingleUser);
    h.db.add_role("app", "changed-by-someone", false);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    h.model()
        .fail_next_for_stage(op::GET, AWSPREVIOUS, AwsErrorKind::Throttled);
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("current: FATAL 28P01") && err.contains("AWSPREVIOUS could not be read"),
        "{err}"
    );
}

#[tokio::test]
async fn alternating_first_rotation_creates_the_clone_then_only_changes_passwords() {
    let h = harness(Strategy::AlternatingUsers);
    let first = h.begin();
    h.step(&first, Step::Create).await.unwrap();
    assert_eq!(h.step(&first, Step::Set).await.unwrap(), Outcome::UserCreated);
    h.steps(&first, &[Step::Test, Step::Finish]).await.unwrap();
    h.model().end_rotation(&h.arn);
    assert_eq!(h.db.state().roles["app_clone"].member_of, vec!["app"]);
    assert!(h.db.logs_in("app", "pw-0"), "the original user is untouched");
    assert_eq!(h.json(AWSCURRENT)["username"], "app_clone");

    h.rotate().await;
    assert_eq!(h.json(AWSCURRENT)["username"], "app");
    h.rotate().await;
    assert_eq!(h.json(AWSCURRENT)["username"], "app_clone");
    assert_eq!(h.db.changes(), ["CREATE app_clone", "ALTER app", "ALTER app_clone"]);
    let current = h.json(AWSCURRENT);
    assert!(h.db.logs_in("app_clone", current["password"].as_str().unwrap()));
    let previous = h.json(AWSPREVIOUS);
    assert!(
        h.db.logs_in("app", previous["password"].as_str().unwrap()),
        "the previous user keeps working"
    );
}

#[tokio::test]
async fn alternating_current_login_failure_aborts_before_touching_the_master() {
    let h = harness(Strategy::AlternatingUsers);
    h.db.add_role("app", "changed-by-someone", false);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let gets = h.model().calls(op::GET);
    let err = message(h.step(&token, Step::Set).await);
    assert!(err.contains("unable to log in with the current credentials"), "{err}");
    assert_eq!(
        h.model().calls(op::GET),
        gets + 2,
        "current and pending only, never the master"
    );
    assert!(h.db.connects().iter().all(|(u, _)| u != "admin"));
    assert!(h.db.changes().is_empty());
}

#[tokio::test]
async fn alternating_without_masterarn_is_a_clear_error() {
    let h = harness(Strategy::AlternatingUsers);
    h.model().put_version(
        &h.arn,
        "nomaster",
        Some(&secret_json("app", "pw-0").to_string()),
        &[AWSCURRENT],
    );
    let token = h.begin();
    let writes = h.model().writes();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("no \"masterarn\" key"), "{err}");
    assert_eq!(h.model().writes(), writes, "refused before anything is written");
    assert_eq!(
        h.model().version_value(&h.arn, &token),
        None,
        "the placeholder stays empty"
    );
}

#[tokio::test]
async fn current_without_host_or_rds_identifier_is_refused_before_writing() {
    let h = harness(Strategy::SingleUser);
    h.model().put_version(
        &h.arn,
        "nohost",
        Some(&json!({"engine":"postgres","username":"app","password":"pw-0"}).to_string()),
        &[AWSCURRENT],
    );
    let token = h.begin();
    let writes = h.model().writes();
    let err = message(h.step(&token, Step::Create).await);
    assert!(err.contains("no \"host\" key"), "{err}");
    assert_eq!(h.model().writes(), writes);
}

#[tokio::test]
async fn master_on_another_host_is_refused() {
    let h = harness(Strategy::AlternatingUsers);
    h.model().put_version(
        &h.master_arn,
        "m2",
        Some(&json!({"username":"admin","password":"admin-pw","host":"other.example","port":PORT}).to_string()),
        &[AWSCURRENT],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("current database host db.internal is not the host of master secret")
            && err.contains("other.example"),
        "{err}"
    );
    assert!(h.db.connects().iter().all(|(_, host)| !host.starts_with("other")));
}

#[tokio::test]
async fn rds_managed_master_gets_its_endpoint_from_the_rds_api() {
    let h = harness(Strategy::AlternatingUsers);
    h.model().put_version(
        &h.master_arn,
        "managed",
        Some(&json!({"username":"admin","password":"admin-pw"}).to_string()),
        &[AWSCURRENT],
    );
    h.model().set_tags(
        &h.master_arn,
        &[(
            "aws:rds:primaryDBInstanceArn",
            "arn:aws:rds:us-east-1:123456789012:db:itemsdb",
        )],
    );
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    assert_eq!(h.step(&token, Step::Set).await.unwrap(), Outcome::UserCreated);
    assert_eq!(*h.rds.0.lock().unwrap(), vec![RdsTarget::Instance("itemsdb".into())]);
    assert!(h.db.connects().contains(&("admin".into(), format!("{HOST}:{PORT}"))));
}

#[tokio::test]
async fn child_secret_whose_host_comes_from_rds_tags_rotates_through_every_step() {
    let h = harness(Strategy::SingleUser);
    let mut no_host = secret_json("app", "pw-0");
    no_host.as_object_mut().unwrap().remove("host");
    h.model()
        .put_version(&h.arn, "tagged", Some(&no_host.to_string()), &[AWSCURRENT]);
    h.model().set_tags(
        &h.arn,
        &[(
            "aws:rds:primaryDBInstanceArn",
            "arn:aws:rds:us-east-1:123456789012:db:itemsdb",
        )],
    );
    let token = h.begin();
    for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
        h.step(&token, step).await.unwrap_or_else(|e| panic!("{step:?}: {e}"));
    }
    assert!(
        h.rds
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|t| *t == RdsTarget::Instance("itemsdb".into()))
    );
    assert!(
        h.db.connects()
            .iter()
            .any(|(u, host)| u == "app" && *host == format!("{HOST}:{PORT}"))
    );
    assert_eq!(
        h.model().version_with(&h.arn, AWSCURRENT).as_deref(),
        Some(token.as_str())
    );
}

#[tokio::test]
async fn permission_denied_on_alter_is_a_clear_error() {
    let h = harness(Strategy::SingleUser);
    h.db.state().restrict_password_commands = true;
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("app is not allowed to change the password of role app on db.internal:5432 (SQLSTATE 42501"),
        "{err}"
    );
    assert!(!err.contains("unable to log"), "{err}");
}

#[tokio::test]
async fn single_user_with_a_masterarn_lets_the_master_set_a_restricted_password() {
    let h = harness(Strategy::SingleUser);
    let mut current = secret_json("app", "pw-0");
    current["masterarn"] = json!(h.master_arn);
    h.model()
        .put_version(&h.arn, "with-master", Some(&current.to_string()), &[AWSCURRENT]);
    h.db.state().restrict_password_commands = true;
    let token = h.begin();
    h.steps(&token, &Step::ALL).await.unwrap();
    let now = h.json(AWSCURRENT);
    assert_eq!(now["username"], "app");
    assert!(h.db.logs_in("app", now["password"].as_str().unwrap()));
    let users: Vec<String> = h.db.connects().into_iter().map(|(u, _)| u).collect();
    assert_eq!(
        users,
        ["app", "app", "admin", "app", "app"],
        "pending, current (refused ALTER), master, test, finish"
    );
}

#[tokio::test]
async fn an_existing_clone_with_more_rights_than_the_user_is_refused_and_nothing_moves() {
    let h = harness(Strategy::AlternatingUsers);
    h.db.add_role("app_clone", "whatever", true);
    let current = h.model().version_with(&h.arn, AWSCURRENT);
    let token = h.begin();
    h.step(&token, Step::Create).await.unwrap();
    let err = message(h.step(&token, Step::Set).await);
    assert!(
        err.contains("refusing to rotate to app_clone: the existing alternate user is a superuser")
            && err.contains("nothing was changed and AWSCURRENT stays on app"),
        "{err}"
    );
    assert!(h.db.changes().is_empty());
    assert!(
        h.db.logs_in("app_clone", "whatever"),
        "the clone's password is untouched"
    );
    assert!(
        h.step(&token, Step::Test).await.is_err(),
        "the pending password never worked"
    );
    assert_eq!(h.model().version_with(&h.arn, AWSCURRENT), current);
}

#[tokio::test]
async fn an_existing_clone_gets_its_membership_back() {
    let h = harness(Strategy::AlternatingUsers);
    h.db.add_role("app_clone", "whatever", false);
    h.rotate().await;
    assert_eq!(h.db.state().roles["app_clone"].member_of, vec!["app"]);
    assert_eq!(h.db.changes(), ["ALTER app_clone"]);
}
