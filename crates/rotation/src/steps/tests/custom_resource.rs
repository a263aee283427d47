//! `Custom::DatabaseRole` against the model, the fake database and a fake CloudFormation that
//! records what it is sent.

use super::*;
use crate::custom_resource::{CustomResourceError, Respond, RespondError, ResponseUrl, Status};

/// Records every PUT; fails the first `fail` of them.
#[derive(Default)]
struct FakeCloudFormation {
    puts: StdMutex<Vec<Value>>,
    fail: StdMutex<u32>,
}

impl Respond for FakeCloudFormation {
    async fn put(&self, url: &ResponseUrl, body: Vec<u8>, _timeout: Duration) -> Result<(), RespondError> {
        let mut fail = self.fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(RespondError::Put {
                url: url.redacted(),
                detail: "HTTP 503".into(),
            });
        }
        self.puts.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
        Ok(())
    }
}

impl FakeCloudFormation {
    fn answers(&self) -> Vec<Value> {
        self.puts.lock().unwrap().clone()
    }
}

fn request(kind: &str, secret_id: &str) -> Value {
    let mut v: Value = serde_json::from_str(match kind {
        "Create" => include_str!("../../../tests/fixtures/cloudformation-custom-resource-create.json"),
        "Update" => include_str!("../../../tests/fixtures/cloudformation-custom-resource-update.json"),
        _ => include_str!("../../../tests/fixtures/cloudformation-custom-resource-delete.json"),
    })
    .unwrap();
    v["ResourceProperties"]["SecretId"] = json!(secret_id);
    v
}

/// The alternating-users harness plus an application secret for a role that does not exist yet.
fn with_new_app(h: &H) -> String {
    let mut secret = secret_json("items_app", "App-pw-1");
    secret["masterarn"] = json!(h.master_arn);
    h.model().create_secret("app/items", &secret.to_string())
}

#[tokio::test]
async fn create_makes_the_role_and_a_repeated_create_or_an_update_changes_nothing() {
    let h = harness(Strategy::AlternatingUsers);
    let arn = with_new_app(&h);
    let cfn = FakeCloudFormation::default();
    for kind in ["Create", "Create", "Update"] {
        let answered = h
            .rotator
            .handle_custom_resource(&request(kind, &arn), None, &cfn)
            .await
            .unwrap();
        assert_eq!(answered.status, Status::Success, "{kind}: {}", answered.reason);
        assert_eq!(answered.physical_resource_id, "items_app");
    }
    assert!(h.db.logs_in("items_app", "App-pw-1"));
    assert_eq!(h.db.changes(), ["CREATE items_app"], "created once, then left alone");
    let answers = cfn.answers();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["Status"], "SUCCESS");
    assert_eq!(answers[0]["PhysicalResourceId"], "items_app");
    assert_eq!(answers[0]["LogicalResourceId"], "AppDatabaseRole");
    assert_eq!(answers[0]["Data"], json!({}));
    assert!(
        answers[0]["Reason"]
            .as_str()
            .unwrap()
            .contains("created role items_app")
    );
    assert!(
        answers[1]["Reason"].as_str().unwrap().contains("nothing changed"),
        "{}",
        answers[1]["Reason"]
    );
    assert!(!answers.iter().any(|a| a.to_string().contains("App-pw-1")));
}

#[tokio::test]
async fn an_existing_role_whose_password_is_not_the_secrets_gets_it() {
    let h = harness(Strategy::AlternatingUsers);
    let arn = with_new_app(&h);
    h.db.add_role("items_app", "Someone-else-set-this", false);
    let cfn = FakeCloudFormation::default();
    let answered = h
        .rotator
        .handle_custom_resource(&request("Create", &arn), None, &cfn)
        .await
        .unwrap();
    assert_eq!(answered.status, Status::Success, "{}", answered.reason);
    assert!(h.db.logs_in("items_app", "App-pw-1"));
}

#[tokio::test]
async fn after_alternating_rotations_the_resource_is_still_the_user_not_the_clone() {
    let h = harness(Strategy::AlternatingUsers);
    h.rotate().await;
    assert_eq!(h.json(AWSCURRENT)["username"], "app_clone");
    let cfn = FakeCloudFormation::default();
    let changes = h.db.changes();
    let answered = h
        .rotator
        .handle_custom_resource(&request("Update", &h.arn), None, &cfn)
        .await
        .unwrap();
    assert_eq!(answered.status, Status::Success, "{}", answered.reason);
    assert_eq!(answered.physical_resource_id, "app");
    assert_eq!(h.db.changes(), changes, "no password touched");
}

#[tokio::test]
async fn delete_keeps_the_role_and_touches_nothing() {
    let h = harness(Strategy::AlternatingUsers);
    let cfn = FakeCloudFormation::default();
    let answered = h
        .rotator
        .handle_custom_resource(&request("Delete", &h.arn), None, &cfn)
        .await
        .unwrap();
    assert_eq!(answered.status, Status::Success);
    assert_eq!(answered.physical_resource_id, "items_app", "the event's own id");
    assert!(answered.reason.contains("are kept"), "{}", answered.reason);
    assert_eq!(h.model().calls(op::GET) + h.model().calls(op::DESCRIBE), 0);
    assert!(h.db.connects().is_empty());
}

#[tokio::test]
async fn malformed_requests_are_answered_failed_with_the_reason_and_change_nothing() {
    let h = harness(Strategy::AlternatingUsers);
    let arn = with_new_app(&h);
    for (change, needle) in [
        (json!({"RequestType": "Destroy"}), "unknown RequestType \"Destroy\""),
        (
            json!({"ResourceType": "Custom::Database"}),
            "serves Custom::DatabaseRole",
        ),
        (
            json!({"ResourceProperties": {"ServiceToken": "arn"}}),
            "ResourceProperties.SecretId",
        ),
        (
            json!({"ResourceProperties": {"SecretId": arn, "Password": "x"}}),
            "unknown key(s) \"Password\"",
        ),
        (json!({"ResourceProperties": {"SecretId": "app/none"}}), "app/none"),
    ] {
        let mut event = request("Create", &arn);
        for (k, v) in change.as_object().unwrap() {
            event[k] = v.clone();
        }
        let cfn = FakeCloudFormation::default();
        let answered = h.rotator.handle_custom_resource(&event, None, &cfn).await.unwrap();
        assert_eq!(answered.status, Status::Failed, "{needle}");
        assert!(answered.reason.contains(needle), "{needle}: {}", answered.reason);
        assert_eq!(cfn.answers()[0]["Status"], "FAILED");
        assert_eq!(
            cfn.answers()[0]["PhysicalResourceId"],
            "AppDatabaseRole",
            "no role to name yet"
        );
    }
    assert!(h.db.changes().is_empty());
}

#[tokio::test]
async fn a_master_that_cannot_log_in_is_a_failed_answer() {
    let h = harness(Strategy::AlternatingUsers);
    let arn = with_new_app(&h);
    h.db.add_role("admin", "rotated-elsewhere", true);
    let cfn = FakeCloudFormation::default();
    let answered = h
        .rotator
        .handle_custom_resource(&request("Create", &arn), None, &cfn)
        .await
        .unwrap();
    assert_eq!(answered.status, Status::Failed);
    assert!(
        answered.reason.contains("master secret") && answered.reason.contains("unable to log in"),
        "{}",
        answered.reason
    );
    assert!(h.db.changes().is_empty());
}

#[tokio::test]
async fn a_hanging_database_is_answered_within_the_budget() {
    let h = harness_with(Strategy::AlternatingUsers, &[("ROTATION_STEP_TIMEOUT_MS", "2000")]);
    let arn = with_new_app(&h);
    h.db.state().hang = true;
    let cfn = FakeCloudFormation::default();
    let started = Instant::now();
    let answered = h
        .rotator
        .handle_custom_resource(&request("Create", &arn), None, &cfn)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answered.status, Status::Failed);
    assert!(
        answered.reason.contains("did not finish within 1000 ms") || answered.reason.contains("cannot connect"),
        "{}",
        answered.reason
    );
    assert_eq!(cfn.answers().len(), 1);
}

#[tokio::test]
async fn an_answer_that_fails_is_retried_and_an_unanswerable_event_is_an_error() {
    let h = harness(Strategy::AlternatingUsers);
    let cfn = FakeCloudFormation::default();
    *cfn.fail.lock().unwrap() = 2;
    let answered = h
        .rotator
        .handle_custom_resource(&request("Delete", &h.arn), None, &cfn)
        .await
        .unwrap();
    assert_eq!(answered.status, Status::Success);
    assert_eq!(cfn.answers().len(), 1, "third attempt delivered");

    *cfn.fail.lock().unwrap() = 10;
    let err = h
        .rotator
        .handle_custom_resource(&request("Delete", &h.arn), None, &cfn)
        .await
        .unwrap_err();
    assert!(matches!(err, CustomResourceError::NotDelivered { .. }), "{err}");
    assert!(!err.to_string().contains("X-Amz-Signature"), "{err}");

    let mut event = request("Create", &h.arn);
    event.as_object_mut().unwrap().remove("ResponseURL");
    let err = h.rotator.handle_custom_resource(&event, None, &cfn).await.unwrap_err();
    assert!(
        matches!(err, CustomResourceError::Unanswerable(_)) && err.to_string().contains("ResponseURL"),
        "{err}"
    );
}
