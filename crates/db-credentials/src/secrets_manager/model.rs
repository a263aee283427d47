//! An exact in-memory model of Secrets Manager's version-stage rules, for unit tests.
//!
//! Emulators get these rules wrong (moto overwrites a version re-put with another value, keeps a
//! stale default version, and inverts the "rotation in progress" check), so the rules the
//! rotation relies on are written down here from AWS's documentation and proven against this:
//!
//! * RotateSecret turns rotation on and creates an `AWSPENDING` version *without a value* whose id
//!   is the token; it refuses while `AWSPENDING` sits on a version other than `AWSCURRENT`.
//! * GetSecretValue of a version without a value, or with a `VersionId` that does not hold the
//!   asked `VersionStage`, is `ResourceNotFoundException`.
//! * PutSecretValue with an existing token: same value → accepted, nothing changes; different
//!   value → `ResourceExistsException`; a placeholder without a value is filled. The stages given
//!   move to the version (a label is on at most one version).
//! * UpdateSecretVersionStage moving a label that is on another version needs `RemoveFromVersionId`
//!   naming that version (`InvalidParameterException` otherwise); moving `AWSCURRENT` puts
//!   `AWSPREVIOUS` on the version that had it.
//! * DescribeSecret lists only versions that carry at least one stage.
//!
//! It also counts calls, records the `RotationToken` and password policy it was given, serves
//! scripted passwords, and fails chosen calls on demand. The reads are [`ReadSecrets`]; the
//! writes (the rotation function's) are inherent methods with the same names and meaning as the
//! calls, which the rotation crate's own trait delegates to.
//!
//! One file (about 550 lines before its tests) on purpose: it is a transcription of one AWS
//! document, read side by side with it, and compiled only with the `test-util` feature.

use super::{AWSCURRENT, AWSPENDING, AWSPREVIOUS};

use super::{PasswordPolicy, ReadSecrets, SecretDescription, SecretValue, Stage};
use crate::aws::{AwsError, AwsErrorKind};
use secrecy::{ExposeSecret, SecretString};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
};

/// Operation names, as AWS spells them, for [`SecretsModel::calls`] and [`SecretsModel::fail_next`].
pub mod op {
    /// DescribeSecret.
    pub const DESCRIBE: &str = "DescribeSecret";
    /// GetSecretValue.
    pub const GET: &str = "GetSecretValue";
    /// PutSecretValue.
    pub const PUT: &str = "PutSecretValue";
    /// UpdateSecretVersionStage.
    pub const UPDATE_STAGE: &str = "UpdateSecretVersionStage";
    /// GetRandomPassword.
    pub const RANDOM_PASSWORD: &str = "GetRandomPassword";
}

#[derive(Debug, Clone)]
struct Version {
    id: String,
    value: Option<String>,
    stages: Vec<String>,
}

#[derive(Debug, Clone)]
struct Secret {
    arn: String,
    name: String,
    rotation_enabled: Option<bool>,
    versions: Vec<Version>,
    tags: Vec<(String, String)>,
}

impl Secret {
    fn holder(&self, stage: &str) -> Option<usize> {
        self.versions.iter().position(|v| v.stages.iter().any(|s| s == stage))
    }
    fn index(&self, id: &str) -> Option<usize> {
        self.versions.iter().position(|v| v.id == id)
    }
    fn detach(&mut self, stage: &str) -> Option<String> {
        let i = self.holder(stage)?;
        self.versions[i].stages.retain(|s| s != stage);
        Some(self.versions[i].id.clone())
    }
    fn attach(&mut self, stage: &str, index: usize) {
        if !self.versions[index].stages.iter().any(|s| s == stage) {
            self.versions[index].stages.push(stage.to_owned());
        }
    }
    /// Moves `stage` to `index`; moving AWSCURRENT leaves AWSPREVIOUS on the old holder.
    fn move_stage(&mut self, stage: &str, index: usize) {
        let previous = self.detach(stage);
        self.attach(stage, index);
        if stage == AWSCURRENT
            && let Some(old) = previous
            && old != self.versions[index].id
        {
            self.detach(AWSPREVIOUS);
            if let Some(i) = self.index(&old) {
                self.attach(AWSPREVIOUS, i);
            }
        }
    }
}

#[derive(Debug)]
struct Fault {
    operation: &'static str,
    stage: Option<String>,
    kind: AwsErrorKind,
}

#[derive(Debug, Default)]
struct State {
    secrets: Vec<Secret>,
    calls: HashMap<&'static str, usize>,
    faults: VecDeque<Fault>,
    passwords: VecDeque<String>,
    rotation_tokens: Vec<Option<String>>,
    policies: Vec<PasswordPolicy>,
    next_id: u64,
    rng: u64,
}

impl State {
    fn secret(&mut self, secret_id: &str, operation: &'static str) -> Result<&mut Secret, AwsError> {
        self.secrets
            .iter_mut()
            .find(|s| s.arn == secret_id || s.name == secret_id)
            .ok_or_else(|| not_found(operation, "Secrets Manager can't find the specified secret."))
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012}", self.next_id)
    }

    /// Counts the call and serves an injected fault if one is queued for it (and its stage).
    fn enter(&mut self, operation: &'static str, stage: Option<&str>) -> Result<(), AwsError> {
        *self.calls.entry(operation).or_default() += 1;
        let matches = |f: &Fault| f.operation == operation && (f.stage.is_none() || f.stage.as_deref() == stage);
        if let Some(fault) = self.faults.iter().position(matches).and_then(|i| self.faults.remove(i)) {
            let kind = fault.kind;
            return Err(AwsError::new(kind, operation, format!("injected {kind:?} failure")));
        }
        Ok(())
    }
}

fn not_found(operation: &'static str, message: &str) -> AwsError {
    AwsError {
        kind: AwsErrorKind::NotFound,
        code: Some("ResourceNotFoundException".into()),
        operation,
        message: message.to_owned(),
    }
}

fn refused(operation: &'static str, code: &str, message: String) -> AwsError {
    AwsError {
        kind: AwsErrorKind::InvalidRequest,
        code: Some(code.to_owned()),
        operation,
        message,
    }
}

/// The model. See the module docs.
#[derive(Debug, Default)]
pub struct SecretsModel {
    state: Mutex<State>,
}

impl SecretsModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// CreateSecret: one version holding `value` as `AWSCURRENT`. Returns the ARN.
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        let mut state = self.lock();
        let id = state.new_id();
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-Ab12Cd");
        state.secrets.push(Secret {
            arn: arn.clone(),
            name: name.to_owned(),
            rotation_enabled: None,
            versions: vec![Version {
                id,
                value: Some(value.to_owned()),
                stages: vec![AWSCURRENT.to_owned()],
            }],
            tags: Vec::new(),
        });
        arn
    }

    /// RotateSecret: turns rotation on and leaves the valueless `AWSPENDING` placeholder. Returns
    /// the token.
    ///
    /// # Errors
    /// `NotFound`, or `InvalidRequestException` while `AWSPENDING` is on a version other than
    /// `AWSCURRENT` ("a previous rotation isn't complete").
    pub fn rotate_secret(&self, secret_id: &str) -> Result<String, AwsError> {
        let mut state = self.lock();
        let token = state.new_id();
        let secret = state.secret(secret_id, "RotateSecret")?;
        if let Some(p) = secret.holder(AWSPENDING)
            && Some(p) != secret.holder(AWSCURRENT)
        {
            return Err(refused(
                "RotateSecret",
                "InvalidRequestException",
                "A previous rotation isn't complete. That rotation will be reattempted.".into(),
            ));
        }
        secret.rotation_enabled = Some(true);
        secret.detach(AWSPENDING);
        secret.versions.push(Version {
            id: token.clone(),
            value: None,
            stages: vec![AWSPENDING.to_owned()],
        });
        Ok(token)
    }

    /// What the service does after finishSecret succeeded: removes `AWSPENDING` wherever it is.
    pub fn end_rotation(&self, secret_id: &str) {
        let mut state = self.lock();
        if let Ok(secret) = state.secret(secret_id, "UpdateSecretVersionStage") {
            secret.detach(AWSPENDING);
        }
    }

    /// Adds a version directly (test set-up for states a rotation would not produce), moving its
    /// stages from wherever they are. `AWSCURRENT` moves without leaving `AWSPREVIOUS`.
    ///
    /// # Panics
    /// When the secret does not exist (a broken test set-up).
    pub fn put_version(&self, secret_id: &str, version_id: &str, value: Option<&str>, stages: &[&str]) {
        let mut state = self.lock();
        let secret = state.secret(secret_id, "test set-up").expect("secret exists");
        for s in stages {
            secret.detach(s);
        }
        secret.versions.retain(|v| v.id != version_id);
        secret.versions.push(Version {
            id: version_id.to_owned(),
            value: value.map(str::to_owned),
            stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        });
    }

    /// Sets `RotationEnabled` (`None`: the field is absent from DescribeSecret).
    pub fn set_rotation_enabled(&self, secret_id: &str, enabled: Option<bool>) {
        if let Ok(secret) = self.lock().secret(secret_id, "test set-up") {
            secret.rotation_enabled = enabled;
        }
    }

    /// Sets the secret's tags (RDS-managed master secrets carry `aws:rds:primaryDBInstanceArn`).
    pub fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) {
        if let Ok(secret) = self.lock().secret(secret_id, "test set-up") {
            secret.tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        }
    }

    /// Makes the next call to `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: AwsErrorKind) {
        self.lock().faults.push_back(Fault {
            operation,
            stage: None,
            kind,
        });
    }

    /// Makes the next GetSecretValue or UpdateSecretVersionStage for `stage` fail with `kind`.
    pub fn fail_next_for_stage(&self, operation: &'static str, stage: &str, kind: AwsErrorKind) {
        self.lock().faults.push_back(Fault {
            operation,
            stage: Some(stage.to_owned()),
            kind,
        });
    }

    /// Passwords GetRandomPassword returns next, in order, before it generates its own.
    pub fn script_passwords<I: IntoIterator<Item = S>, S: Into<String>>(&self, passwords: I) {
        self.lock().passwords.extend(passwords.into_iter().map(Into::into));
    }

    /// How many times `operation` was called.
    pub fn calls(&self, operation: &str) -> usize {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    /// PutSecretValue + UpdateSecretVersionStage calls: everything that could change the secret.
    pub fn writes(&self) -> usize {
        self.calls(op::PUT) + self.calls(op::UPDATE_STAGE)
    }

    /// The `RotationToken` of every PutSecretValue, in order.
    pub fn rotation_tokens(&self) -> Vec<Option<String>> {
        self.lock().rotation_tokens.clone()
    }

    /// The policy of every GetRandomPassword, in order.
    pub fn password_policies(&self) -> Vec<PasswordPolicy> {
        self.lock().policies.clone()
    }

    /// The value of the version holding `stage`, if it has one.
    pub fn value(&self, secret_id: &str, stage: &str) -> Option<String> {
        let mut state = self.lock();
        let secret = state.secret(secret_id, "test").ok()?;
        let i = secret.holder(stage)?;
        secret.versions[i].value.clone()
    }

    /// The value of a version.
    pub fn version_value(&self, secret_id: &str, version_id: &str) -> Option<String> {
        let mut state = self.lock();
        let secret = state.secret(secret_id, "test").ok()?;
        let i = secret.index(version_id)?;
        secret.versions[i].value.clone()
    }

    /// Every version's stages (including versions left without any), sorted, for assertions.
    pub fn stages(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        let mut state = self.lock();
        let Ok(secret) = state.secret(secret_id, "test") else {
            return BTreeMap::new();
        };
        secret
            .versions
            .iter()
            .map(|v| {
                let mut stages = v.stages.clone();
                stages.sort();
                (v.id.clone(), stages)
            })
            .collect()
    }

    /// The version holding `stage`.
    pub fn version_with(&self, secret_id: &str, stage: &str) -> Option<String> {
        let mut state = self.lock();
        let secret = state.secret(secret_id, "test").ok()?;
        let i = secret.holder(stage)?;
        Some(secret.versions[i].id.clone())
    }

    fn generate(state: &mut State, policy: &PasswordPolicy) -> String {
        const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
        let mut classes: Vec<Vec<char>> = Vec::new();
        let mut push = |excluded: bool, chars: &str| {
            if !excluded {
                let allowed: Vec<char> = chars
                    .chars()
                    .filter(|c| !policy.exclude_characters.contains(*c))
                    .collect();
                if !allowed.is_empty() {
                    classes.push(allowed);
                }
            }
        };
        push(policy.exclude_lowercase, "abcdefghijklmnopqrstuvwxyz");
        push(policy.exclude_uppercase, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        push(policy.exclude_numbers, "0123456789");
        push(policy.exclude_punctuation, PUNCTUATION);
        let all: Vec<char> = classes.iter().flatten().copied().collect();
        if all.is_empty() {
            return String::new();
        }
        let mut next = || {
            // xorshift64: deterministic, which is all a model needs.
            state.rng ^= state.rng << 13;
            state.rng ^= state.rng >> 7;
            state.rng ^= state.rng << 17;
            state.rng
        };
        let length = policy.length as usize;
        let mut out: Vec<char> = (0..length).map(|_| all[(next() % all.len() as u64) as usize]).collect();
        if policy.require_each_included_type && length >= classes.len() {
            for (i, class) in classes.iter().enumerate() {
                out[i] = class[(next() % class.len() as u64) as usize];
            }
        }
        out.into_iter().collect()
    }
}

impl ReadSecrets for SecretsModel {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, AwsError> {
        let mut state = self.lock();
        state.enter(op::DESCRIBE, None)?;
        let secret = state.secret(secret_id, op::DESCRIBE)?;
        Ok(SecretDescription {
            arn: secret.arn.clone(),
            rotation_enabled: secret.rotation_enabled,
            versions: secret
                .versions
                .iter()
                .filter(|v| !v.stages.is_empty())
                .map(|v| (v.id.clone(), v.stages.clone()))
                .collect(),
            tags: secret.tags.clone(),
        })
    }

    async fn get_value(
        &self,
        secret_id: &str,
        stage: Stage,
        version_id: Option<&str>,
    ) -> Result<SecretValue, AwsError> {
        let stage = stage.label();
        let mut state = self.lock();
        state.enter(op::GET, Some(stage))?;
        let secret = state.secret(secret_id, op::GET)?;
        let missing = || {
            not_found(
                op::GET,
                &format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {} and staging label: {stage}",
                    version_id.unwrap_or("")
                ),
            )
        };
        let index = secret.holder(stage).ok_or_else(missing)?;
        let version = &secret.versions[index];
        if version_id.is_some_and(|id| id != version.id) {
            return Err(missing());
        }
        let value = version.value.clone().ok_or_else(missing)?;
        Ok(SecretValue {
            version_id: version.id.clone(),
            secret_string: Some(SecretString::from(value)),
        })
    }
}

impl SecretsModel {
    /// PutSecretValue of `value` as version `token` with stage `AWSPENDING`.
    ///
    /// # Errors
    /// As Secrets Manager: `ResourceExistsException` for a used token with another value.
    pub async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.enter(op::PUT, Some(AWSPENDING))?;
        state
            .rotation_tokens
            .push(rotation_token.map(|t| t.expose_secret().to_owned()));
        let secret = state.secret(secret_id, op::PUT)?;
        let value = value.expose_secret();
        let index = match secret.index(token) {
            Some(i) => match &secret.versions[i].value {
                Some(existing) if existing == value => return Ok(()),
                Some(_) => {
                    return Err(refused(
                        op::PUT,
                        "ResourceExistsException",
                        format!(
                            "A resource with the ID you requested already exists: version {token} has another value"
                        ),
                    ));
                }
                None => {
                    secret.versions[i].value = Some(value.to_owned());
                    i
                }
            },
            None => {
                secret.versions.push(Version {
                    id: token.to_owned(),
                    value: Some(value.to_owned()),
                    stages: Vec::new(),
                });
                secret.versions.len() - 1
            }
        };
        secret.move_stage(AWSPENDING, index);
        Ok(())
    }

    /// UpdateSecretVersionStage: attach `stage` to `move_to` and/or detach it from `remove_from`.
    ///
    /// # Errors
    /// As Secrets Manager: `InvalidParameterException` when the label is elsewhere and
    /// `remove_from` does not name it.
    pub async fn update_stage(
        &self,
        secret_id: &str,
        stage: Stage,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), AwsError> {
        let stage = stage.label();
        let mut state = self.lock();
        state.enter(op::UPDATE_STAGE, Some(stage))?;
        let secret = state.secret(secret_id, op::UPDATE_STAGE)?;
        let holder = secret.holder(stage).map(|i| secret.versions[i].id.clone());
        if let Some(from) = remove_from
            && holder.as_deref() != Some(from)
        {
            return Err(refused(
                op::UPDATE_STAGE,
                "InvalidParameterException",
                format!("The staging label {stage} is not attached to version {from}"),
            ));
        }
        let Some(to) = move_to else {
            secret.detach(stage);
            return Ok(());
        };
        let index = secret
            .index(to)
            .ok_or_else(|| not_found(op::UPDATE_STAGE, &format!("version {to} does not exist")))?;
        match holder {
            Some(h) if h != to && remove_from.is_none() => Err(refused(
                op::UPDATE_STAGE,
                "InvalidParameterException",
                format!(
                    "The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
                ),
            )),
            _ => {
                secret.move_stage(stage, index);
                Ok(())
            }
        }
    }

    /// GetRandomPassword: a scripted password if one is queued, else one generated by `policy`.
    ///
    /// # Errors
    /// Only a fault armed with [`SecretsModel::fail_next`].
    pub async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, AwsError> {
        let mut state = self.lock();
        state.enter(op::RANDOM_PASSWORD, None)?;
        state.policies.push(policy.clone());
        if let Some(p) = state.passwords.pop_front() {
            return Ok(SecretString::from(p));
        }
        if state.rng == 0 {
            state.rng = 0x9E37_79B9_7F4A_7C15;
        }
        Ok(SecretString::from(Self::generate(&mut state, policy)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[tokio::test]
    async fn placeholder_pending_has_no_value() {
        let m = SecretsModel::new();
        let arn = m.create_secret("app", "v1");
        let token = m.rotate_secret(&arn).unwrap();
        let d = m.describe(&arn).await.unwrap();
        assert!(d.has_stage(&token, Stage::Pending));
        assert_eq!(d.rotation_enabled, Some(true));
        let err = m.get_value(&arn, Stage::Pending, Some(&token)).await.unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
        let current = m.get_value(&arn, Stage::Current, None).await.unwrap();
        assert_eq!(current.secret_string.unwrap().expose_secret(), "v1");
    }

    #[tokio::test]
    async fn put_with_the_same_token_is_idempotent_only_for_the_same_value() {
        let m = SecretsModel::new();
        let arn = m.create_secret("app", "v1");
        let token = m.rotate_secret(&arn).unwrap();
        m.put_pending(&arn, &token, &s("v2"), None).await.unwrap();
        m.put_pending(&arn, &token, &s("v2"), None).await.unwrap();
        let err = m.put_pending(&arn, &token, &s("v3"), None).await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("ResourceExistsException"));
        assert_eq!(m.version_value(&arn, &token).as_deref(), Some("v2"));
    }

    #[tokio::test]
    async fn moving_current_needs_remove_from_and_sets_previous() {
        let m = SecretsModel::new();
        let arn = m.create_secret("app", "v1");
        let old = m.version_with(&arn, AWSCURRENT).unwrap();
        let token = m.rotate_secret(&arn).unwrap();
        m.put_pending(&arn, &token, &s("v2"), None).await.unwrap();
        let err = m
            .update_stage(&arn, Stage::Current, Some(&token), None)
            .await
            .unwrap_err();
        assert!(err.message.contains("RemoveFromVersionId"), "{err}");
        m.update_stage(&arn, Stage::Current, Some(&token), Some(&old))
            .await
            .unwrap();
        let stages = m.stages(&arn);
        assert_eq!(stages[&old], vec![AWSPREVIOUS]);
        assert_eq!(stages[&token], vec![AWSCURRENT, AWSPENDING]);
        let err = m
            .update_stage(&arn, Stage::Current, Some(&token), Some(&old))
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::InvalidRequest, "old no longer holds the label");
    }

    #[tokio::test]
    async fn rotate_refuses_while_pending_is_on_another_version() {
        let m = SecretsModel::new();
        let arn = m.create_secret("app", "v1");
        let token = m.rotate_secret(&arn).unwrap();
        m.put_pending(&arn, &token, &s("v2"), None).await.unwrap();
        assert!(m.rotate_secret(&arn).is_err());
        let old = m.version_with(&arn, AWSCURRENT).unwrap();
        m.update_stage(&arn, Stage::Current, Some(&token), Some(&old))
            .await
            .unwrap();
        let next = m.rotate_secret(&arn).unwrap();
        assert_eq!(m.version_with(&arn, AWSPENDING).as_deref(), Some(next.as_str()));
    }

    #[tokio::test]
    async fn generated_passwords_follow_the_policy_and_faults_are_served_once() {
        let m = SecretsModel::new();
        let policy = PasswordPolicy {
            length: 40,
            exclude_punctuation: true,
            ..PasswordPolicy::default()
        };
        let p = m.random_password(&policy).await.unwrap();
        let p = p.expose_secret();
        assert_eq!(p.len(), 40);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
        assert!(p.chars().any(|c| c.is_ascii_digit()) && p.chars().any(|c| c.is_ascii_uppercase()));
        m.fail_next(op::RANDOM_PASSWORD, AwsErrorKind::Throttled);
        assert!(m.random_password(&policy).await.is_err());
        assert!(m.random_password(&policy).await.is_ok());
        assert_eq!(m.calls(op::RANDOM_PASSWORD), 3);
    }
}
