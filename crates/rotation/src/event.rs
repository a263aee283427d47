//! The event Secrets Manager sends once per step: `{"SecretId","ClientRequestToken","Step"}` plus
//! an optional `RotationToken`.
//!
//! The event is parsed by hand from a JSON value rather than by serde's derive, because serde's
//! messages quote the offending input and the `RotationToken` is a credential: every error here
//! names the key, never a value.

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::{fmt, str::FromStr};

/// The four steps of the rotation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// `createSecret`: put the new version as `AWSPENDING`.
    Create,
    /// `setSecret`: make the database accept the pending password.
    Set,
    /// `testSecret`: log in with the pending version.
    Test,
    /// `finishSecret`: move `AWSCURRENT` to the pending version.
    Finish,
}

impl Step {
    /// All four, in protocol order.
    pub const ALL: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

    /// The name Secrets Manager sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = EventError;

    /// Accepts the camelCase names the service sends and the snake_case ones AWS's user guide shows.
    fn from_str(s: &str) -> Result<Self, EventError> {
        match s {
            "createSecret" | "create_secret" => Ok(Self::Create),
            "setSecret" | "set_secret" => Ok(Self::Set),
            "testSecret" | "test_secret" => Ok(Self::Test),
            "finishSecret" | "finish_secret" => Ok(Self::Finish),
            other => Err(EventError::UnknownStep {
                step: other.chars().take(64).collect(),
            }),
        }
    }
}

/// Longest `SecretId` Secrets Manager accepts (an ARN or a name).
pub const MAX_SECRET_ID: usize = 2048;
/// Longest `ClientRequestToken` Secrets Manager accepts.
pub const MAX_TOKEN: usize = 64;

/// Why an event was refused. Names keys, never values (except an unknown step's name).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is not a JSON object.
    #[error(
        "the event must be a JSON object: a rotation step (SecretId, ClientRequestToken, Step), a CloudFormation custom resource request, {{\"Preflight\": {{\"SecretId\": …}}}} or {{\"Revoke\": {{\"SecretId\": …}}}}"
    )]
    NotObject,
    /// A required key is absent.
    #[error("the rotation event has no \"{key}\" key")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A key holds something other than a non-empty string.
    #[error("the rotation event's \"{key}\" must be a non-empty string")]
    InvalidValue {
        /// The offending key.
        key: &'static str,
    },
    /// A key is longer than Secrets Manager allows.
    #[error("the rotation event's \"{key}\" is {len} characters; Secrets Manager allows at most {max}")]
    TooLong {
        /// The offending key.
        key: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload has keys of a rotation step and of a CloudFormation request.
    #[error(
        "the event carries both rotation keys (Step, ClientRequestToken) and CloudFormation keys (RequestType, ResponseURL); refusing to guess which it is"
    )]
    Ambiguous,
    /// An operator's request (`Preflight`, `Revoke`) beside keys of another shape, or both.
    #[error(
        "the event carries \"{key}\" beside keys of another event (Step, ClientRequestToken, RequestType, ResponseURL, Preflight or Revoke); an operator's request is an object with that one key, refusing to guess"
    )]
    Mixed {
        /// `Preflight` or `Revoke`.
        key: &'static str,
    },
    /// An operator's request whose body is not an object, or lacks a usable key.
    #[error("the \"{request}\" request {problem}")]
    Request {
        /// `Preflight` or `Revoke`.
        request: &'static str,
        /// What is wrong, naming the key (never its value).
        problem: String,
    },
    /// `Step` names no step of the protocol.
    #[error("unknown rotation step \"{step}\": expected createSecret, setSecret, testSecret or finishSecret")]
    UnknownStep {
        /// The name received (at most 64 characters of it).
        step: String,
    },
}

/// What an invocation is: a rotation step from Secrets Manager, or a CloudFormation custom
/// resource request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `{"SecretId","ClientRequestToken","Step"}`.
    RotationStep,
    /// `{"RequestType","ResponseURL",…}`: see [`crate::custom_resource`].
    CustomResource,
    /// `{"Preflight": {"SecretId"}}`: every check of a rotation, changing nothing
    /// ([`crate::preflight`]).
    Preflight,
    /// `{"Revoke": {"SecretId", "GraceSeconds"}}`: end the superseded credential's sessions and
    /// logins ([`crate::revoke`]).
    Revoke,
}

/// Tells the two shapes apart by their keys. A payload with keys of both is refused rather than
/// guessed at: the wrong guess would run a rotation step, or answer CloudFormation, for an event
/// that meant the other.
///
/// # Errors
/// [`EventError::NotObject`], or [`EventError::Ambiguous`].
pub fn kind(value: &Value) -> Result<EventKind, EventError> {
    let Value::Object(map) = value else {
        return Err(EventError::NotObject);
    };
    let custom = crate::custom_resource::event::looks_like_custom_resource(value);
    let rotation = map.contains_key("Step") || map.contains_key("ClientRequestToken");
    // An operator's request is an object with exactly its one key: a Secrets Manager event or a
    // CloudFormation request never has it, and anything beside it is refused rather than guessed.
    for (key, kind) in [("Preflight", EventKind::Preflight), ("Revoke", EventKind::Revoke)] {
        if map.contains_key(key) {
            return if map.len() == 1 {
                Ok(kind)
            } else {
                Err(EventError::Mixed { key })
            };
        }
    }
    match (custom, rotation) {
        (true, true) => Err(EventError::Ambiguous),
        (true, false) => Ok(EventKind::CustomResource),
        (false, _) => Ok(EventKind::RotationStep),
    }
}

/// The body of an operator's request (`{"<request>": {…}}`) and its `SecretId`.
///
/// # Errors
/// [`EventError::Request`] naming what is missing or malformed, never a value.
pub fn operator_request<'a>(
    value: &'a Value,
    request: &'static str,
) -> Result<(&'a serde_json::Map<String, Value>, String), EventError> {
    let problem = |p: &str| EventError::Request {
        request,
        problem: p.to_owned(),
    };
    let Some(Value::Object(body)) = value.get(request) else {
        return Err(problem("must be an object: {\"SecretId\": \"<secret ARN or name>\"}"));
    };
    match body.get("SecretId") {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_SECRET_ID => Ok((body, s.clone())),
        Some(Value::String(s)) if !s.is_empty() => Err(problem(&format!(
            "has a SecretId of {} characters; Secrets Manager allows at most {MAX_SECRET_ID}",
            s.chars().count()
        ))),
        None | Some(Value::Null) => Err(problem("has no \"SecretId\" key")),
        Some(_) => Err(problem("needs \"SecretId\" to be a non-empty string")),
    }
}

/// One invocation of the rotation function.
///
/// `Debug` shows the `RotationToken` as `[REDACTED]`; it is read only where it is passed on to
/// PutSecretValue.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Value")]
pub struct RotationEvent {
    /// Secret ARN or name, as the service sent it.
    pub secret_id: String,
    /// `ClientRequestToken`: the id of the version this rotation creates.
    pub token: String,
    /// The step to run.
    pub step: Step,
    /// `RotationToken`, sent for rotation through an assumed role or across accounts.
    pub rotation_token: Option<SecretString>,
}

impl RotationEvent {
    /// An event without a `RotationToken` (tests, tools).
    pub fn new(secret_id: &str, token: &str, step: Step) -> Self {
        Self {
            secret_id: secret_id.to_owned(),
            token: token.to_owned(),
            step,
            rotation_token: None,
        }
    }

    /// Parses the JSON the service sends.
    ///
    /// # Errors
    /// [`EventError`] naming the first missing or malformed key.
    pub fn from_json(value: &Value) -> Result<Self, EventError> {
        let Value::Object(map) = value else {
            return Err(EventError::NotObject);
        };
        let required = |key: &'static str| match map.get(key) {
            None | Some(Value::Null) => Err(EventError::MissingKey { key }),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(EventError::InvalidValue { key }),
        };
        // The service's own limits: refusing longer values keeps them out of every later message.
        let bounded = |key: &'static str, max: usize| {
            required(key).and_then(|v| match v.chars().count() {
                len if len > max => Err(EventError::TooLong { key, len, max }),
                _ => Ok(v),
            })
        };
        let secret_id = bounded("SecretId", MAX_SECRET_ID)?;
        let token = bounded("ClientRequestToken", MAX_TOKEN)?;
        let step = required("Step")?.parse()?;
        let rotation_token = match map.get("RotationToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(SecretString::from(s.clone())),
            Some(_) => return Err(EventError::InvalidValue { key: "RotationToken" }),
        };
        Ok(Self {
            secret_id,
            token,
            step,
            rotation_token,
        })
    }
}

impl TryFrom<Value> for RotationEvent {
    type Error = EventError;
    fn try_from(value: Value) -> Result<Self, EventError> {
        Self::from_json(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    #[test]
    fn parses_the_aws_fixture() {
        let raw = include_str!("../tests/fixtures/example-secretsmanager-secret-rotation-event.json");
        let event: RotationEvent = serde_json::from_str(raw).unwrap();
        assert_eq!(event.step, Step::Create);
        assert_eq!(
            event.secret_id,
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:id-ABCD1E"
        );
        assert_eq!(event.token, "1ab23456-cde7-8912-34fg-h56i78j9k12l");
        assert!(event.rotation_token.is_none());
    }

    #[test]
    fn accepts_every_step_in_both_spellings() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        assert_eq!("finish_secret".parse::<Step>(), Ok(Step::Finish));
    }

    #[test]
    fn unknown_step_is_a_clear_error() {
        let err =
            RotationEvent::from_json(&json!({"SecretId":"s","ClientRequestToken":"t","Step":"rotate"})).unwrap_err();
        assert_eq!(err, EventError::UnknownStep { step: "rotate".into() });
        assert!(err.to_string().contains("createSecret"), "{err}");
    }

    #[test]
    fn missing_keys_are_clear_errors() {
        let full = json!({"SecretId":"s","ClientRequestToken":"t","Step":"createSecret"});
        for key in ["SecretId", "ClientRequestToken", "Step"] {
            let mut v = full.clone();
            v.as_object_mut().unwrap().remove(key);
            let err = serde_json::from_value::<RotationEvent>(v).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        assert_eq!(
            RotationEvent::from_json(&json!(["SecretId"])).unwrap_err(),
            EventError::NotObject
        );
        let err =
            RotationEvent::from_json(&json!({"SecretId":7,"ClientRequestToken":"t","Step":"setSecret"})).unwrap_err();
        assert_eq!(err, EventError::InvalidValue { key: "SecretId" });
    }

    #[test]
    fn the_two_shapes_are_told_apart_and_a_mix_is_refused() {
        let step = json!({"SecretId":"s","ClientRequestToken":"t","Step":"createSecret"});
        assert_eq!(kind(&step), Ok(EventKind::RotationStep));
        let cfn: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/cloudformation-custom-resource-create.json"
        ))
        .unwrap();
        assert_eq!(kind(&cfn), Ok(EventKind::CustomResource));
        let mut both = cfn.clone();
        both["Step"] = json!("finishSecret");
        assert_eq!(kind(&both), Err(EventError::Ambiguous));
        let mut both = step.clone();
        both["ResponseURL"] = json!("https://example.com/x");
        assert_eq!(kind(&both), Err(EventError::Ambiguous));
        assert_eq!(kind(&json!("createSecret")), Err(EventError::NotObject));
        // A rotation event that lacks everything is still a rotation event, refused by its parser.
        assert_eq!(kind(&json!({})), Ok(EventKind::RotationStep));
    }

    #[test]
    fn operator_requests_are_their_own_shape_and_never_mixed() {
        assert_eq!(kind(&json!({"Preflight": {"SecretId": "s"}})), Ok(EventKind::Preflight));
        assert_eq!(
            kind(&json!({"Revoke": {"SecretId": "s", "GraceSeconds": 0}})),
            Ok(EventKind::Revoke)
        );
        let step = json!({"SecretId":"s","ClientRequestToken":"t","Step":"createSecret","Preflight":{}});
        assert_eq!(kind(&step), Err(EventError::Mixed { key: "Preflight" }));
        let both = json!({"Preflight": {"SecretId": "s"}, "Revoke": {"SecretId": "s"}});
        assert!(matches!(kind(&both), Err(EventError::Mixed { .. })));
        let mut cfn: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/cloudformation-custom-resource-create.json"
        ))
        .unwrap();
        cfn["Revoke"] = json!({"SecretId": "s"});
        assert_eq!(kind(&cfn), Err(EventError::Mixed { key: "Revoke" }));
    }

    #[test]
    fn rotation_token_is_kept_secret() {
        let v = json!({"SecretId":"s","ClientRequestToken":"t","Step":"setSecret","RotationToken":"rt-hunter2"});
        let event = RotationEvent::from_json(&v).unwrap();
        assert_eq!(event.rotation_token.as_ref().unwrap().expose_secret(), "rt-hunter2");
        assert!(!format!("{event:?}").contains("hunter2"));
        let bad =
            json!({"SecretId":"s","ClientRequestToken":"t","Step":"setSecret","RotationToken":{"v":"rt-hunter2"}});
        let err = serde_json::from_value::<RotationEvent>(bad).unwrap_err().to_string();
        assert!(err.contains("RotationToken") && !err.contains("hunter2"), "{err}");
    }
}

#[cfg(test)]
mod limits {
    use super::*;
    use serde_json::json;

    #[test]
    fn overlong_ids_are_refused_without_being_echoed() {
        let long = "x".repeat(MAX_SECRET_ID + 1);
        let err =
            RotationEvent::from_json(&json!({"SecretId": long, "ClientRequestToken": "t", "Step": "createSecret"}))
                .unwrap_err();
        assert!(matches!(err, EventError::TooLong { key: "SecretId", .. }));
        assert!(!err.to_string().contains("xxxx"), "{err}");
        let err = RotationEvent::from_json(
            &json!({"SecretId": "s", "ClientRequestToken": "t".repeat(65), "Step": "setSecret"}),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            EventError::TooLong {
                key: "ClientRequestToken",
                len: 65,
                max: 64
            }
        ));
    }
}
