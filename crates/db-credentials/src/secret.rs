//! The JSON a Secrets Manager database secret holds (design §3).
//!
//! Parsing never echoes a value back: serde's own messages quote the offending input, which for a
//! secret can be the password, so every check here is written out and names only the key.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::fmt;

/// Default Postgres port when the secret has none.
pub const DEFAULT_PORT: u16 = 5432;
/// Default database when the secret names none.
pub const DEFAULT_DBNAME: &str = "postgres";
/// Engines the rotation function accepts.
pub const SUPPORTED_ENGINES: [&str; 2] = ["postgres", "aurora-postgresql"];

/// A problem with a secret's content. Names the secret and the key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret string does not parse as JSON.
    #[error("secret {secret_id} is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// Secret ARN or name.
        secret_id: String,
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// The JSON is valid but not an object.
    #[error("secret {secret_id} must hold a JSON object with username and password")]
    NotObject {
        /// Secret ARN or name.
        secret_id: String,
    },
    /// A required key is absent.
    #[error("secret {secret_id} has no \"{key}\" key")]
    MissingKey {
        /// Secret ARN or name.
        secret_id: String,
        /// The missing key.
        key: &'static str,
    },
    /// A key is present with the wrong type or an unusable value.
    #[error("secret {secret_id}: \"{key}\" must be {expected}")]
    InvalidValue {
        /// Secret ARN or name.
        secret_id: String,
        /// The offending key.
        key: &'static str,
        /// What the key must hold.
        expected: &'static str,
    },
    /// The secret version holds binary data instead of a string.
    #[error("secret {secret_id} holds binary data, not a JSON string")]
    Binary {
        /// Secret ARN or name.
        secret_id: String,
    },
    /// `engine` names something other than Postgres.
    #[error("secret {secret_id}: engine \"{engine}\" is not supported; use \"postgres\" or \"aurora-postgresql\"")]
    UnsupportedEngine {
        /// Secret ARN or name.
        secret_id: String,
        /// The engine the secret names (not sensitive).
        engine: String,
    },
}

/// A parsed database secret.
///
/// The password is a [`SecretString`]: `Debug` redacts it and reading it takes an explicit
/// `expose_secret()`. Keys this type does not know are kept and written back unchanged by
/// [`DbSecret::to_secret_string`], so rotation preserves whatever else the owner stored.
#[derive(Clone)]
pub struct DbSecret {
    username: String,
    password: SecretString,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
    engine: Option<String>,
    ssl: Option<bool>,
    ssl_cert_path: Option<String>,
    masterarn: Option<String>,
    db_instance_identifier: Option<String>,
    db_cluster_identifier: Option<String>,
    /// Every key except `password`, exactly as stored, for a faithful round trip.
    rest: Map<String, Value>,
}

impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("engine", &self.engine)
            .field("ssl", &self.ssl)
            .finish_non_exhaustive()
    }
}

impl DbSecret {
    /// Parses a secret string. `secret_id` is used only to name the secret in errors.
    ///
    /// # Errors
    /// [`SecretError`] naming the first key that is missing or malformed.
    pub fn parse(secret_id: &str, json: &str) -> Result<Self, SecretError> {
        let value: Value = serde_json::from_str(json).map_err(|e| SecretError::NotJson {
            secret_id: secret_id.to_owned(),
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(mut map) = value else {
            return Err(SecretError::NotObject {
                secret_id: secret_id.to_owned(),
            });
        };
        let id = secret_id;
        let username = required_string(id, &map, "username")?;
        let password = match map.remove("password") {
            Some(Value::String(p)) if !p.is_empty() => SecretString::from(p),
            Some(_) => return Err(invalid(id, "password", "a non-empty string")),
            None => {
                return Err(SecretError::MissingKey {
                    secret_id: id.to_owned(),
                    key: "password",
                });
            }
        };
        let dbname = match optional_string(id, &map, "dbname")? {
            Some(d) => Some(d),
            None => optional_string(id, &map, "database")?,
        };
        Ok(Self {
            username,
            password,
            host: optional_string(id, &map, "host")?,
            port: parse_port(id, map.get("port"))?,
            dbname,
            engine: optional_string(id, &map, "engine")?,
            ssl: parse_bool(id, "ssl", map.get("ssl"))?,
            ssl_cert_path: optional_string(id, &map, "ssl_cert_path")?,
            masterarn: optional_string(id, &map, "masterarn")?,
            db_instance_identifier: optional_string(id, &map, "dbInstanceIdentifier")?,
            db_cluster_identifier: optional_string(id, &map, "dbClusterIdentifier")?,
            rest: map,
        })
    }

    /// The database user.
    pub fn username(&self) -> &str {
        &self.username
    }
    /// The password; read it with `expose_secret()` only where it is sent to the database.
    pub fn password(&self) -> &SecretString {
        &self.password
    }
    /// The host, if the secret names one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    /// The port, defaulting to 5432.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
    /// Whether the secret states a port (an RDS-managed master secret does not).
    pub fn has_port(&self) -> bool {
        self.port.is_some()
    }
    /// The database name (`dbname` or its synonym `database`), defaulting to `postgres`.
    pub fn dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(DEFAULT_DBNAME)
    }
    /// The engine, if set.
    pub fn engine(&self) -> Option<&str> {
        self.engine.as_deref()
    }
    /// The `ssl` flag: `Some(true)` means TLS is mandatory.
    pub fn ssl(&self) -> Option<bool> {
        self.ssl
    }
    /// CA bundle path inside the function, if set.
    pub fn ssl_cert_path(&self) -> Option<&str> {
        self.ssl_cert_path.as_deref()
    }
    /// ARN of the privileged secret (alternating-users rotation).
    pub fn masterarn(&self) -> Option<&str> {
        self.masterarn.as_deref()
    }
    /// RDS instance identifier, which lets host and port come from the RDS API.
    pub fn db_instance_identifier(&self) -> Option<&str> {
        self.db_instance_identifier.as_deref()
    }
    /// RDS cluster identifier, which lets host and port come from the RDS API.
    pub fn db_cluster_identifier(&self) -> Option<&str> {
        self.db_cluster_identifier.as_deref()
    }

    /// Checks that `engine` is present and names Postgres, as the rotation function requires.
    ///
    /// # Errors
    /// [`SecretError::MissingKey`] or [`SecretError::UnsupportedEngine`].
    pub fn check_engine(&self, secret_id: &str) -> Result<(), SecretError> {
        match self.engine.as_deref() {
            None => Err(SecretError::MissingKey {
                secret_id: secret_id.to_owned(),
                key: "engine",
            }),
            Some(e) if SUPPORTED_ENGINES.contains(&e) => Ok(()),
            Some(e) => Err(SecretError::UnsupportedEngine {
                secret_id: secret_id.to_owned(),
                engine: e.to_owned(),
            }),
        }
    }

    /// A copy with another password; every other key is unchanged.
    pub fn with_password(&self, password: SecretString) -> Self {
        Self {
            password,
            ..self.clone()
        }
    }

    /// A copy with another username; every other key is unchanged.
    pub fn with_username(&self, username: &str) -> Self {
        let mut copy = self.clone();
        copy.username = username.to_owned();
        copy.rest.insert("username".into(), Value::String(username.to_owned()));
        copy
    }

    /// The secret as JSON, keys in their stored form plus the password. The result is itself a
    /// secret: it goes to `PutSecretValue` and nowhere else.
    pub fn to_secret_string(&self) -> SecretString {
        let mut map = self.rest.clone();
        map.insert(
            "password".into(),
            Value::String(self.password.expose_secret().to_owned()),
        );
        SecretString::from(Value::Object(map).to_string())
    }
}

fn invalid(secret_id: &str, key: &'static str, expected: &'static str) -> SecretError {
    SecretError::InvalidValue {
        secret_id: secret_id.to_owned(),
        key,
        expected,
    }
}

fn required_string(secret_id: &str, map: &Map<String, Value>, key: &'static str) -> Result<String, SecretError> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(invalid(secret_id, key, "a non-empty string")),
        None => Err(SecretError::MissingKey {
            secret_id: secret_id.to_owned(),
            key,
        }),
    }
}

fn optional_string(
    secret_id: &str,
    map: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, SecretError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(secret_id, key, "a string")),
    }
}

fn parse_port(secret_id: &str, value: Option<&Value>) -> Result<Option<u16>, SecretError> {
    const EXPECTED: &str = "a port number (1-65535) or a numeric string";
    let port = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match port {
        Some(p @ 1..=65535) => Ok(Some(p as u16)),
        _ => Err(invalid(secret_id, "port", EXPECTED)),
    }
}

/// `true`/`false` or the strings "true"/"false" in any case, as AWS's rotation templates accept.
pub(crate) fn parse_bool(
    secret_id: &str,
    key: &'static str,
    value: Option<&Value>,
) -> Result<Option<bool>, SecretError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(invalid(secret_id, key, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf";

    #[test]
    fn parses_full_secret_and_applies_defaults() {
        let s = DbSecret::parse(
            ID,
            r#"{"username":"app","password":"pw","host":"db.local","engine":"postgres"}"#,
        )
        .expect("valid");
        assert_eq!(s.username(), "app");
        assert_eq!(s.password().expose_secret(), "pw");
        assert_eq!(s.host(), Some("db.local"));
        assert_eq!(s.port(), 5432);
        assert!(!s.has_port());
        assert_eq!(s.dbname(), "postgres");
        assert!(s.check_engine(ID).is_ok());
    }

    #[test]
    fn accepts_port_as_string_and_database_synonym() {
        let s = DbSecret::parse(
            ID,
            r#"{"username":"u","password":"p","port":" 6543","database":"items"}"#,
        )
        .unwrap();
        assert_eq!(s.port(), 6543);
        assert_eq!(s.dbname(), "items");
        let s = DbSecret::parse(ID, r#"{"username":"u","password":"p","dbname":"a","database":"b"}"#).unwrap();
        assert_eq!(s.dbname(), "a", "dbname wins over database");
    }

    #[test]
    fn ssl_accepts_bool_and_strings() {
        for (raw, want) in [
            ("true", Some(true)),
            ("\"TRUE\"", Some(true)),
            ("\"false\"", Some(false)),
            ("null", None),
        ] {
            let s = DbSecret::parse(ID, &format!(r#"{{"username":"u","password":"p","ssl":{raw}}}"#)).unwrap();
            assert_eq!(s.ssl(), want, "ssl={raw}");
        }
        let err = DbSecret::parse(ID, r#"{"username":"u","password":"p","ssl":"yes"}"#).unwrap_err();
        assert!(matches!(err, SecretError::InvalidValue { key: "ssl", .. }));
    }

    #[test]
    fn errors_name_the_key_and_secret_but_never_the_value() {
        let cases = [
            (r#"{"password":"hunter2-leak"}"#, "\"username\""),
            (r#"{"username":"u"}"#, "\"password\""),
            (r#"{"username":"u","password":87654321}"#, "\"password\""),
            (
                r#"{"username":"u","password":"hunter2-leak","port":"hunter2-leak"}"#,
                "\"port\"",
            ),
            (r#"{"username":"u","password":"hunter2-leak","port":70000}"#, "\"port\""),
            (
                r#"{"username":"u","password":"hunter2-leak","host":["hunter2-leak"]}"#,
                "\"host\"",
            ),
            (r#"{"username":"u","password":"hunter2-leak""#, "not valid JSON"),
            (r#"["hunter2-leak"]"#, "JSON object"),
        ];
        for (json, needle) in cases {
            let msg = DbSecret::parse(ID, json).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg} should mention {needle}");
            assert!(msg.contains(ID), "{msg} should name the secret");
            assert!(
                !msg.contains("hunter2") && !msg.contains("87654321"),
                "value leaked: {msg}"
            );
        }
    }

    #[test]
    fn debug_redacts_password() {
        let s = DbSecret::parse(ID, r#"{"username":"u","password":"hunter2-leak"}"#).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }

    #[test]
    fn unknown_keys_survive_round_trip() {
        let json = r#"{"username":"app","password":"old","engine":"postgres","host":"h","port":"5432","dbname":"d","team":"payments","nested":{"a":[1,2]}}"#;
        let s = DbSecret::parse(ID, json).unwrap();
        let rotated = s.with_password(SecretString::from("new"));
        let out: Value = serde_json::from_str(rotated.to_secret_string().expose_secret()).unwrap();
        let mut expected: Value = serde_json::from_str(json).unwrap();
        expected["password"] = Value::String("new".into());
        assert_eq!(out, expected, "only the password changes; port stays a string");
    }

    #[test]
    fn with_username_rewrites_the_key() {
        let s = DbSecret::parse(ID, r#"{"username":"app","password":"p","masterarn":"arn:m"}"#).unwrap();
        let c = s.with_username("app_clone");
        assert_eq!(c.username(), "app_clone");
        let out: Value = serde_json::from_str(c.to_secret_string().expose_secret()).unwrap();
        assert_eq!(out["username"], "app_clone");
        assert_eq!(out["masterarn"], "arn:m");
        assert_eq!(c.masterarn(), Some("arn:m"));
    }

    #[test]
    fn engine_check_names_what_is_wrong() {
        let s = DbSecret::parse(ID, r#"{"username":"u","password":"p"}"#).unwrap();
        assert!(matches!(
            s.check_engine(ID),
            Err(SecretError::MissingKey { key: "engine", .. })
        ));
        let s = DbSecret::parse(ID, r#"{"username":"u","password":"p","engine":"mysql"}"#).unwrap();
        let msg = s.check_engine(ID).unwrap_err().to_string();
        assert!(msg.contains("mysql") && msg.contains("postgres"), "{msg}");
        let s = DbSecret::parse(ID, r#"{"username":"u","password":"p","engine":"aurora-postgresql"}"#).unwrap();
        assert!(s.check_engine(ID).is_ok());
    }
}
