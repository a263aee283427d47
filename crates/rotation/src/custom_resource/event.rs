//! The event CloudFormation sends a custom resource, parsed in two layers: the envelope (where and
//! how to answer: `ResponseURL`, `StackId`, `RequestId`, `LogicalResourceId`), without which no
//! answer is possible, and the request itself (`RequestType`, `ResourceType`,
//! `ResourceProperties`), whose faults are answered `FAILED` naming what is wrong.
//!
//! Like the rotation event, it is read by hand from a JSON value so that no message quotes a
//! value: the `ResponseURL` is a presigned URL, a credential for one PUT.

use serde_json::{Map, Value};
use std::fmt;

/// The only resource type this function serves.
pub const RESOURCE_TYPE: &str = "Custom::DatabaseRole";

/// Longest `SecretId` Secrets Manager accepts.
const MAX_SECRET_ID: usize = 2048;
/// Bound on the identifiers echoed back (CloudFormation's are far shorter).
const MAX_ID: usize = 1024;
/// Bound on the presigned URL.
const MAX_URL: usize = 8192;

/// What CloudFormation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// The resource is new in the stack.
    Create,
    /// Its properties changed (or the stack was updated and CloudFormation re-sent them).
    Update,
    /// It leaves the stack.
    Delete,
}

impl RequestType {
    /// The name CloudFormation sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Update => "Update",
            Self::Delete => "Delete",
        }
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event cannot be served. Names keys, never values (except a `RequestType` or
/// `ResourceType` that is not ours, cut to 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomResourceEventError {
    /// The payload is not a JSON object.
    #[error("the custom resource event must be a JSON object")]
    NotObject,
    /// A required key is absent.
    #[error("the custom resource event has no \"{key}\" key")]
    MissingKey {
        /// The key, e.g. `ResourceProperties.SecretId`.
        key: &'static str,
    },
    /// A key holds something else than it must.
    #[error("the custom resource event's \"{key}\" must be {expected}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `RequestType` is none of CloudFormation's three.
    #[error("unknown RequestType \"{0}\": expected Create, Update or Delete")]
    UnknownRequestType(String),
    /// `ResourceType` is not [`RESOURCE_TYPE`].
    #[error("this function serves Custom::DatabaseRole, not \"{0}\"")]
    WrongResourceType(String),
    /// `ResourceProperties` holds keys this resource does not take (a typo, most likely).
    #[error(
        "ResourceProperties has unknown key(s) {0}: Custom::DatabaseRole takes SecretId (and CloudFormation's ServiceToken, ServiceTimeout)"
    )]
    UnknownProperties(String),
}

/// The presigned URL to PUT the answer to: `https`, or `http` to a loopback address (a local
/// stand-in for CloudFormation). Its `Debug` and `Display` show scheme, host and path only: the
/// query holds the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseUrl {
    uri: http::Uri,
}

impl ResponseUrl {
    /// Checks and keeps `url`.
    ///
    /// # Errors
    /// [`CustomResourceEventError::Invalid`] for anything but an absolute https URL (or http to
    /// 127.0.0.1, ::1 or localhost).
    pub fn parse(url: &str) -> Result<Self, CustomResourceEventError> {
        let invalid = CustomResourceEventError::Invalid {
            key: "ResponseURL",
            expected: "an https URL (http only to 127.0.0.1, ::1 or localhost)",
        };
        if url.len() > MAX_URL {
            return Err(invalid);
        }
        let uri: http::Uri = url.parse().map_err(|_| invalid.clone())?;
        let host = uri.host().unwrap_or_default();
        let loopback = matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost");
        match uri.scheme_str() {
            Some("https") if !host.is_empty() => Ok(Self { uri }),
            Some("http") if loopback => Ok(Self { uri }),
            _ => Err(invalid),
        }
    }

    /// The full URL, signature included: only for the request itself.
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// `scheme://host/path`, for logs and messages.
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}{}",
            self.uri.scheme_str().unwrap_or_default(),
            self.uri.authority().map_or("", |a| a.as_str()),
            self.uri.path()
        )
    }
}

impl fmt::Debug for ResponseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseUrl({}?[REDACTED])", self.redacted())
    }
}

impl fmt::Display for ResponseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Where and how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ResponseURL`.
    pub response_url: ResponseUrl,
    /// `StackId`, echoed back.
    pub stack_id: String,
    /// `RequestId`, echoed back.
    pub request_id: String,
    /// `LogicalResourceId`, echoed back.
    pub logical_resource_id: String,
    /// `PhysicalResourceId` (Update and Delete).
    pub physical_resource_id: Option<String>,
}

/// `ResourceProperties` of `Custom::DatabaseRole`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// The application secret: its `AWSCURRENT` names the role, its password and database, and
    /// `masterarn`.
    pub secret_id: String,
    /// `ServiceTimeout` in seconds, when given.
    pub service_timeout: Option<u32>,
}

/// One invocation by CloudFormation. The envelope is always valid; what CloudFormation asks is
/// kept with its fault, if any, to be answered `FAILED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResourceEvent {
    /// Where and how to answer.
    pub envelope: Envelope,
    /// `RequestType`.
    pub request_type: Result<RequestType, CustomResourceEventError>,
    /// `ResourceType` and `ResourceProperties` (and, on Update, `OldResourceProperties`).
    pub properties: Result<Properties, CustomResourceEventError>,
}

/// Whether `value` has the shape of a CloudFormation custom resource event rather than a rotation
/// step: `RequestType` or `ResponseURL` present. The caller refuses a payload that also carries a
/// rotation key (`Step`, `ClientRequestToken`).
pub fn looks_like_custom_resource(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.contains_key("RequestType") || m.contains_key("ResponseURL"))
}

fn string(
    map: &Map<String, Value>,
    key: &'static str,
    max: usize,
    expected: &'static str,
) -> Result<String, CustomResourceEventError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(CustomResourceEventError::MissingKey { key }),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Ok(s.clone()),
        Some(_) => Err(CustomResourceEventError::Invalid { key, expected }),
    }
}

impl CustomResourceEvent {
    /// Parses the event.
    ///
    /// # Errors
    /// [`CustomResourceEventError`] when the envelope is unusable: there is then nowhere to send
    /// an answer.
    pub fn from_json(value: &Value) -> Result<Self, CustomResourceEventError> {
        let Value::Object(map) = value else {
            return Err(CustomResourceEventError::NotObject);
        };
        let url = string(map, "ResponseURL", MAX_URL, "an https URL")?;
        let id = "a non-empty string of at most 1024 characters";
        let envelope = Envelope {
            response_url: ResponseUrl::parse(&url)?,
            stack_id: string(map, "StackId", MAX_ID, id)?,
            request_id: string(map, "RequestId", MAX_ID, id)?,
            logical_resource_id: string(map, "LogicalResourceId", MAX_ID, id)?,
            physical_resource_id: match map.get("PhysicalResourceId") {
                None | Some(Value::Null) => None,
                Some(_) => Some(string(map, "PhysicalResourceId", MAX_ID, id)?),
            },
        };
        let request_type = match map.get("RequestType") {
            None | Some(Value::Null) => Err(CustomResourceEventError::MissingKey { key: "RequestType" }),
            Some(Value::String(s)) => match s.as_str() {
                "Create" => Ok(RequestType::Create),
                "Update" => Ok(RequestType::Update),
                "Delete" => Ok(RequestType::Delete),
                other => Err(CustomResourceEventError::UnknownRequestType(
                    other.chars().take(64).collect(),
                )),
            },
            Some(_) => Err(CustomResourceEventError::Invalid {
                key: "RequestType",
                expected: "Create, Update or Delete",
            }),
        };
        let properties = Self::properties(map, request_type.as_ref().ok().copied());
        Ok(Self {
            envelope,
            request_type,
            properties,
        })
    }

    fn properties(
        map: &Map<String, Value>,
        request_type: Option<RequestType>,
    ) -> Result<Properties, CustomResourceEventError> {
        match map.get("ResourceType") {
            Some(Value::String(t)) if t == RESOURCE_TYPE => {}
            Some(Value::String(t)) => {
                return Err(CustomResourceEventError::WrongResourceType(
                    t.chars().take(64).collect(),
                ));
            }
            None | Some(Value::Null) => return Err(CustomResourceEventError::MissingKey { key: "ResourceType" }),
            Some(_) => {
                return Err(CustomResourceEventError::Invalid {
                    key: "ResourceType",
                    expected: "Custom::DatabaseRole",
                });
            }
        }
        if request_type == Some(RequestType::Update) {
            match map.get("OldResourceProperties") {
                Some(Value::Object(_)) => {}
                None | Some(Value::Null) => {
                    return Err(CustomResourceEventError::MissingKey {
                        key: "OldResourceProperties",
                    });
                }
                Some(_) => {
                    return Err(CustomResourceEventError::Invalid {
                        key: "OldResourceProperties",
                        expected: "an object",
                    });
                }
            }
        }
        let props = match map.get("ResourceProperties") {
            Some(Value::Object(p)) => p,
            None | Some(Value::Null) => {
                return Err(CustomResourceEventError::MissingKey {
                    key: "ResourceProperties",
                });
            }
            Some(_) => {
                return Err(CustomResourceEventError::Invalid {
                    key: "ResourceProperties",
                    expected: "an object",
                });
            }
        };
        let unknown: Vec<String> = props
            .keys()
            .filter(|k| !matches!(k.as_str(), "ServiceToken" | "ServiceTimeout" | "SecretId"))
            .map(|k| format!("\"{}\"", k.chars().take(64).collect::<String>()))
            .collect();
        if !unknown.is_empty() {
            return Err(CustomResourceEventError::UnknownProperties(unknown.join(", ")));
        }
        let secret_id = match props.get("SecretId") {
            None | Some(Value::Null) => {
                return Err(CustomResourceEventError::MissingKey {
                    key: "ResourceProperties.SecretId",
                });
            }
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_SECRET_ID => s.clone(),
            Some(_) => {
                return Err(CustomResourceEventError::Invalid {
                    key: "ResourceProperties.SecretId",
                    expected: "a secret ARN or name (a non-empty string of at most 2048 characters)",
                });
            }
        };
        // CloudFormation sends every property as a string ("300"); a number is accepted too.
        let service_timeout = match props.get("ServiceTimeout") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => s.trim().parse::<u32>().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(_) => None,
        };
        if props.get("ServiceTimeout").is_some_and(|v| !v.is_null()) && service_timeout.is_none_or(|t| t == 0) {
            return Err(CustomResourceEventError::Invalid {
                key: "ResourceProperties.ServiceTimeout",
                expected: "a number of seconds, such as \"300\"",
            });
        }
        Ok(Properties {
            secret_id,
            service_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let raw = match name {
            "create" => include_str!("../../tests/fixtures/cloudformation-custom-resource-create.json"),
            "update" => include_str!("../../tests/fixtures/cloudformation-custom-resource-update.json"),
            _ => include_str!("../../tests/fixtures/cloudformation-custom-resource-delete.json"),
        };
        serde_json::from_str(raw).unwrap()
    }

    #[test]
    fn parses_the_three_requests_cloudformation_sends() {
        for (name, kind) in [
            ("create", RequestType::Create),
            ("update", RequestType::Update),
            ("delete", RequestType::Delete),
        ] {
            let v = fixture(name);
            assert!(looks_like_custom_resource(&v));
            let e = CustomResourceEvent::from_json(&v).unwrap();
            assert_eq!(e.request_type, Ok(kind));
            assert_eq!(e.envelope.logical_resource_id, "AppDatabaseRole");
            let p = e.properties.unwrap();
            assert_eq!(
                p.secret_id,
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:items/app-AbCdEf"
            );
            assert_eq!(p.service_timeout, Some(300));
            assert_eq!(e.envelope.physical_resource_id.is_some(), kind != RequestType::Create);
        }
    }

    #[test]
    fn a_rotation_event_is_not_a_custom_resource() {
        let v: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/example-secretsmanager-secret-rotation-event.json"
        ))
        .unwrap();
        assert!(!looks_like_custom_resource(&v));
    }

    #[test]
    fn the_response_url_never_shows_its_signature() {
        let e = CustomResourceEvent::from_json(&fixture("create")).unwrap();
        let shown = format!("{:?} {}", e, e.envelope.response_url);
        assert!(
            !shown.contains("X-Amz-Signature") && !shown.contains("AKIAEXAMPLE"),
            "{shown}"
        );
        assert!(shown.contains("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/"));
        for bad in ["http://example.com/x", "ftp://127.0.0.1/x", "not a url", "/relative"] {
            assert!(ResponseUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(ResponseUrl::parse("http://127.0.0.1:9/put?sig=1").is_ok());
    }

    #[test]
    fn an_unanswerable_event_is_an_error_and_a_faulty_one_is_kept_for_a_failed_answer() {
        let mut v = fixture("create");
        v.as_object_mut().unwrap().remove("ResponseURL");
        assert_eq!(
            CustomResourceEvent::from_json(&v).unwrap_err(),
            CustomResourceEventError::MissingKey { key: "ResponseURL" }
        );
        for (change, needle) in [
            (json!({"RequestType": "Destroy"}), "unknown RequestType \"Destroy\""),
            (json!({"ResourceType": "Custom::Other"}), "not \"Custom::Other\""),
            (
                json!({"ResourceProperties": {"ServiceToken": "x"}}),
                "ResourceProperties.SecretId",
            ),
            (
                json!({"ResourceProperties": {"SecretId": ""}}),
                "ResourceProperties.SecretId",
            ),
            (
                json!({"ResourceProperties": {"SecretId": "s", "SecretID": "s"}}),
                "unknown key(s) \"SecretID\"",
            ),
            (
                json!({"ResourceProperties": {"SecretId": "s", "ServiceTimeout": "soon"}}),
                "ServiceTimeout",
            ),
        ] {
            let mut v = fixture("create");
            for (k, val) in change.as_object().unwrap() {
                v[k] = val.clone();
            }
            let e = CustomResourceEvent::from_json(&v).unwrap();
            let err = e
                .request_type
                .clone()
                .err()
                .or(e.properties.clone().err())
                .unwrap()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let mut v = fixture("update");
        v.as_object_mut().unwrap().remove("OldResourceProperties");
        let e = CustomResourceEvent::from_json(&v).unwrap();
        assert!(e.properties.unwrap_err().to_string().contains("OldResourceProperties"));
    }
}
