//! The item: what clients send, what they get back, and the rules between.

use crate::problem::ApiError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest name, in characters.
pub const NAME_MAX: usize = 200;
/// Longest description, in characters.
pub const DESCRIPTION_MAX: usize = 2000;

/// An item as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Identifier assigned by the database.
    pub id: i64,
    /// 1–200 characters.
    pub name: String,
    /// Up to 2000 characters, or null.
    pub description: Option<String>,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The body of `GET /items`: a page, with the paging it was asked for.
#[derive(Debug, Serialize)]
pub struct Page<'a> {
    /// The items, by id.
    pub items: &'a [Item],
    /// Largest number of items asked for.
    pub limit: i64,
    /// Items skipped before the first.
    pub offset: i64,
}

/// The body of POST and PUT. Unknown fields are refused (a typo must not be silently dropped);
/// the read-only fields of [`Item`] are accepted and ignored, so a client can send back what it read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// Required.
    pub name: String,
    /// Optional; absent and null both mean none.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<serde::de::IgnoredAny>,
}

impl ItemInput {
    /// Parses and validates a request body.
    ///
    /// # Errors
    /// 400 naming the problem: malformed JSON, wrong types, unknown fields, lengths, NUL characters.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "the request body is empty; send a JSON object with a \"name\"".into(),
            ));
        }
        let input: Self = serde_json::from_slice(body).map_err(|e| {
            use serde_json::error::Category;
            ApiError::BadRequest(match e.classify() {
                Category::Syntax | Category::Eof => format!("the request body is not valid JSON: {e}"),
                Category::Io => "the request body could not be read".to_owned(),
                Category::Data => format!("the item is not valid: {e}"),
            })
        })?;
        input.validate()?;
        Ok(input)
    }

    fn validate(&self) -> Result<(), ApiError> {
        let name_len = self.name.chars().count();
        if self.name.trim().is_empty() {
            return Err(ApiError::BadRequest("name must not be empty or blank".into()));
        }
        if name_len > NAME_MAX {
            return Err(ApiError::BadRequest(format!(
                "name is {name_len} characters; the limit is {NAME_MAX}"
            )));
        }
        // Postgres text cannot hold U+0000; refusing it here keeps bad input a 400.
        if self.name.contains('\0') {
            return Err(ApiError::BadRequest(
                "name must not contain NUL (U+0000) characters".into(),
            ));
        }
        if let Some(d) = &self.description {
            let len = d.chars().count();
            if len > DESCRIPTION_MAX {
                return Err(ApiError::BadRequest(format!(
                    "description is {len} characters; the limit is {DESCRIPTION_MAX}"
                )));
            }
            if d.contains('\0') {
                return Err(ApiError::BadRequest(
                    "description must not contain NUL (U+0000) characters".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> String {
        match ItemInput::parse(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400 for {body}: {other:?}"),
        }
    }

    #[test]
    fn accepts_name_and_optional_description() {
        let i = ItemInput::parse(br#"{"name":"a","description":null}"#).unwrap();
        assert_eq!((i.name.as_str(), i.description), ("a", None));
        let i = ItemInput::parse(br#"{"name":"b","description":"d","id":7,"created_at":"x","updated_at":1}"#).unwrap();
        assert_eq!(i.description.as_deref(), Some("d"), "read-only fields are ignored");
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(bad("").contains("empty"));
        assert!(bad("{").contains("not valid JSON"));
        assert!(bad("[1]").contains("not valid"));
        assert!(bad(r#"{"name":5}"#).contains("invalid type"));
        assert!(bad(r#"{}"#).contains("missing field `name`"));
        assert!(bad(r#"{"name":"x","colour":"red"}"#).contains("unknown field `colour`"));
        assert!(bad(r#"{"name":"  "}"#).contains("blank"));
        assert!(bad(&format!(r#"{{"name":"{}"}}"#, "é".repeat(201))).contains("201 characters"));
        assert!(bad(&format!(r#"{{"name":"x","description":"{}"}}"#, "d".repeat(2001))).contains("2001"));
        assert!(bad(r#"{"name":"a\u0000b"}"#).contains("NUL"));
        assert!(bad("\u{feff}{\"name\":\"x\"}").contains("not valid JSON"));
    }

    /// The schema's pattern for `name` and this validator agree on every Unicode scalar value:
    /// schemathesis once found U+0085, whitespace to Rust but not to ECMA-262's `\s`, accepted by
    /// the schema and refused here.
    #[test]
    fn openapi_name_pattern_agrees_with_the_validator_on_every_character() {
        let spec: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let pattern = spec["components"]["schemas"]["ItemInput"]["properties"]["name"]["pattern"]
            .as_str()
            .expect("ItemInput.name has a pattern");
        let re = regex_lite::Regex::new(pattern).expect("the pattern compiles");
        let valid = |name: &str| ItemInput::parse(serde_json::json!({ "name": name }).to_string().as_bytes()).is_ok();
        let mut disagreements = Vec::new();
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let name = c.to_string();
            let server = !name.trim().is_empty() && c != '\0';
            if re.is_match(&name) != server {
                disagreements.push(format!("U+{:04X}", c as u32));
            }
        }
        assert!(
            disagreements.is_empty(),
            "schema and validator disagree on {disagreements:?}"
        );
        for name in ["\u{85}\u{85}", "\u{feff}", " a ", "\u{3000}", "a\u{0}", "\t\u{2028}"] {
            assert_eq!(re.is_match(name), valid(name), "{name:?}");
        }
    }

    #[test]
    fn length_limits_count_characters_not_bytes() {
        assert!(ItemInput::parse(format!(r#"{{"name":"{}"}}"#, "é".repeat(200)).as_bytes()).is_ok());
    }
}
