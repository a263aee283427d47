//! The provider's branches against the exact in-memory model of Secrets Manager: the cache's
//! refresh and stale paths as the provider uses them, the `AWSPENDING` fallback, versions already
//! refused, and the guard on what a pending version may name.

use super::*;
use crate::{
    aws::AwsErrorKind,
    config::Vars,
    rds::RdsTarget,
    secrets_manager::{
        AWSCURRENT, AWSPENDING,
        model::{SecretsModel, op},
    },
};
use secrecy::ExposeSecret;
use serde_json::json;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// The model behind an `Arc`, so the test keeps a handle while the provider owns its reader.
#[derive(Clone, Default)]
struct Model(Arc<SecretsModel>);

impl ReadSecrets for Model {
    async fn describe(&self, secret_id: &str) -> Result<crate::secrets_manager::SecretDescription, AwsError> {
        self.0.describe(secret_id).await
    }
    async fn get_value(
        &self,
        secret_id: &str,
        stage: Stage,
        version_id: Option<&str>,
    ) -> Result<crate::secrets_manager::SecretValue, AwsError> {
        self.0.get_value(secret_id, stage, version_id).await
    }
}

/// RDS that knows one instance, `app-db`, and counts the calls.
#[derive(Default)]
struct Rds {
    calls: AtomicUsize,
}

impl RdsEndpoints for Rds {
    async fn endpoint(&self, target: &RdsTarget) -> Result<(String, u16), AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match target {
            RdsTarget::Instance(id) if id == "app-db" => Ok(("app-db.rds.internal".into(), 5432)),
            _ => Err(AwsError::new(
                AwsErrorKind::NotFound,
                "DescribeDBInstances",
                "no such instance",
            )),
        }
    }
}

struct Fixture {
    model: Model,
    arn: String,
    provider: CredentialProvider<Model, Rds>,
}

fn secret(user: &str, password: &str) -> serde_json::Value {
    json!({"engine": "postgres", "host": "db.internal", "port": 5432, "dbname": "items", "username": user, "password": password})
}

fn fixture(current: &serde_json::Value, extra: &[(&str, &str)]) -> Fixture {
    let model = Model::default();
    let arn = model.0.create_secret("app/db", &current.to_string());
    let mut vars: Vars = [("DB_SECRET_ARN", arn.as_str()), ("DB_SSLMODE", "require")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let config = Config::from_vars(&vars).expect("config");
    let sdk = SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let provider = CredentialProvider::from_parts(config, model.clone(), Rds::default(), &sdk);
    Fixture { model, arn, provider }
}

impl Fixture {
    fn put(&self, version: &str, value: &serde_json::Value, stages: &[&str]) {
        self.model
            .0
            .put_version(&self.arn, version, Some(&value.to_string()), stages);
    }
    fn gets(&self) -> usize {
        self.model.0.calls(op::GET)
    }
}

fn password(c: &Credentials) -> &str {
    c.password.expose_secret()
}

#[tokio::test]
async fn warm_credentials_cost_nothing_and_a_moved_current_is_fetched_after_the_ttl() {
    let f = fixture(&secret("app", "pw-1"), &[("DB_SECRET_TTL_SECS", "0")]);
    let first = f.provider.current().await.unwrap();
    assert_eq!(
        (first.user.as_str(), password(&first), first.dbname.as_str()),
        ("app", "pw-1", "items")
    );
    assert_eq!(first.origin.stage, Some(Stage::Current));
    f.provider.current().await.unwrap();
    assert_eq!(
        (f.gets(), f.model.0.calls(op::DESCRIBE)),
        (1, 1),
        "unchanged: one DescribeSecret, no get"
    );
    f.put("v2", &secret("app", "pw-2"), &[AWSCURRENT]);
    let moved = f.provider.current().await.unwrap();
    assert_eq!(
        (password(&moved), moved.origin.version_id.as_deref()),
        ("pw-2", Some("v2"))
    );
    assert_eq!(f.gets(), 2);
}

#[tokio::test]
async fn a_transient_failure_serves_the_cached_credentials_marked_stale() {
    let f = fixture(&secret("app", "pw-1"), &[("DB_SECRET_TTL_SECS", "0")]);
    f.provider.current().await.unwrap();
    f.model.0.fail_next(op::DESCRIBE, AwsErrorKind::Timeout);
    let stale = f.provider.current().await.unwrap();
    assert!(stale.origin.stale);
    assert_eq!(password(&stale), "pw-1");
    assert!(f.provider.status().cache.is_some_and(|c| c.stale));
    f.model.0.fail_next(op::DESCRIBE, AwsErrorKind::AccessDenied);
    let err = f.provider.current().await.unwrap_err();
    assert_eq!(
        err.aws().map(|e| e.kind),
        Some(AwsErrorKind::AccessDenied),
        "never papered over"
    );
}

#[tokio::test]
async fn after_a_refusal_a_moved_current_is_offered_and_an_unmoved_one_is_not() {
    let f = fixture(&secret("app", "pw-1"), &[]);
    let refused = f.provider.current().await.unwrap();
    assert!(
        f.provider.after_auth_failure(&refused).await.unwrap().is_none(),
        "AWSCURRENT has not moved: nothing newer"
    );
    f.put("v2", &secret("app_clone", "pw-2"), &[AWSCURRENT]);
    let fresh = f
        .provider
        .after_auth_failure(&refused)
        .await
        .unwrap()
        .expect("the moved version");
    assert_eq!(
        (fresh.user.as_str(), password(&fresh)),
        ("app_clone", "pw-2"),
        "the secret's user wins"
    );
}

#[tokio::test]
async fn pending_is_offered_for_the_same_database_and_adopted_until_current_moves() {
    let f = fixture(&secret("app", "pw-1"), &[("DB_SECRET_TTL_SECS", "0")]);
    let refused = f.provider.current().await.unwrap();
    assert!(
        f.provider.pending(&refused).await.unwrap().is_none(),
        "no AWSPENDING yet"
    );
    f.put("v2", &secret("app", "pw-2"), &[AWSPENDING]);
    let pending = f
        .provider
        .pending(&refused)
        .await
        .unwrap()
        .expect("single user: same user");
    assert_eq!(
        (password(&pending), pending.origin.stage),
        ("pw-2", Some(Stage::Pending))
    );
    f.provider.adopt(&pending, &refused).await;
    let next = f.provider.current().await.unwrap();
    assert_eq!(
        (next.origin.version_id.as_deref(), next.origin.stage),
        (Some("v2"), Some(Stage::Pending))
    );
    f.put("v2", &secret("app", "pw-2"), &[AWSCURRENT]);
    let next = f.provider.current().await.unwrap();
    assert_eq!(next.origin.stage, Some(Stage::Current));
    // Alternating users: the pending version names the alternate user.
    f.put("v3", &secret("app_clone", "pw-3"), &[AWSPENDING]);
    let alternate = f.provider.pending(&next).await.unwrap().expect("the alternate user");
    assert_eq!(alternate.user, "app_clone");
}

#[tokio::test]
async fn a_version_already_refused_is_never_offered_again() {
    let f = fixture(&secret("app", "pw-1"), &[]);
    f.put("v2", &secret("app", "pw-2"), &[AWSPENDING]);
    let current = f.provider.current().await.unwrap();
    let pending = f.provider.pending(&current).await.unwrap().expect("pending");
    assert!(
        f.provider.pending(&pending).await.unwrap().is_none(),
        "the pending version was the one refused"
    );
    assert!(f.provider.after_auth_failure(&current).await.unwrap().is_none());
}

#[tokio::test]
async fn a_pending_version_for_another_user_host_port_or_database_is_refused() {
    for (what, change) in [
        ("user", json!({"username": "admin"})),
        ("host", json!({"host": "attacker.example"})),
        ("port", json!({"port": 6432})),
        ("database", json!({"dbname": "postgres"})),
        ("database key", json!({"dbname": null, "database": "other"})),
    ] {
        let f = fixture(&secret("app", "pw-1"), &[]);
        let mut pending = secret("app", "pw-2");
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                pending.as_object_mut().unwrap().remove(k);
            } else {
                pending[k] = v.clone();
            }
        }
        f.put("v2", &pending, &[AWSPENDING]);
        let refused = f.provider.current().await.unwrap();
        let offered = f.provider.pending(&refused).await.unwrap();
        assert!(offered.is_none(), "{what}: this AWSPENDING must not be used");
    }
}

#[tokio::test]
async fn the_guard_compares_the_secrets_not_the_overrides() {
    // DATABASE_HOST sends both versions through a proxy; the versions themselves must still agree.
    let f = fixture(&secret("app", "pw-1"), &[("DATABASE_HOST", "proxy.internal")]);
    let refused = f.provider.current().await.unwrap();
    assert_eq!(refused.host, "proxy.internal");
    let mut elsewhere = secret("app", "pw-2");
    elsewhere["host"] = json!("attacker.example");
    f.put("v2", &elsewhere, &[AWSPENDING]);
    assert!(f.provider.pending(&refused).await.unwrap().is_none());
    f.put("v3", &secret("app", "pw-3"), &[AWSPENDING]);
    let ok = f.provider.pending(&refused).await.unwrap().expect("same database");
    assert_eq!(ok.host, "proxy.internal");
}

#[tokio::test]
async fn a_secret_without_a_host_gets_the_rds_endpoint_for_both_versions() {
    let current = json!({"username": "app", "password": "pw-1", "dbInstanceIdentifier": "app-db"});
    let f = fixture(&current, &[]);
    let creds = f.provider.current().await.unwrap();
    assert_eq!((creds.host.as_str(), creds.port), ("app-db.rds.internal", 5432));
    f.put(
        "v2",
        &json!({"username": "app", "password": "pw-2", "dbInstanceIdentifier": "app-db"}),
        &[AWSPENDING],
    );
    assert!(f.provider.pending(&creds).await.unwrap().is_some());
    f.put(
        "v3",
        &json!({"username": "app", "password": "pw-3", "dbInstanceIdentifier": "other-db"}),
        &[AWSPENDING],
    );
    assert!(
        f.provider.pending(&creds).await.is_err_or_none(),
        "an instance RDS does not know is never logged into"
    );
}

trait ErrOrNone {
    fn is_err_or_none(&self) -> bool;
}

impl<T, E> ErrOrNone for Result<Option<T>, E> {
    fn is_err_or_none(&self) -> bool {
        !matches!(self, Ok(Some(_)))
    }
}
