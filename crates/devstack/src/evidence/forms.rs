//! The shapes a secret takes on its way into a log, so the leak check can recognise it.
//!
//! A secret rarely reaches a log as its raw bytes. It is first *encoded* for where it travels
//! (percent-encoded into a `postgres://` URL or a form body, quoted into a SQL literal) and then
//! *escaped* by whatever writes the log line (serde_json, which tracing's JSON writer uses; Rust's
//! `Debug`, which `?field` and `{:?}` use; or both, or JSON twice when a JSON document is logged
//! as a string). A search for the raw string misses exactly the secrets that contain the
//! characters those steps rewrite, which are the ones tests choose to break quoting. [`forms`]
//! lists every encoding × escaping of a secret, each distinct string once.

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt;

/// How a secret is encoded for where it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// As is.
    Raw,
    /// Percent-encoded, every byte but ASCII letters and digits (what `percent_encoding`'s
    /// `NON_ALPHANUMERIC` and most hand-built URLs do). `upper`: `%2F` rather than `%2f`.
    PercentStrict {
        /// Upper-case hex digits.
        upper: bool,
    },
    /// Percent-encoded, RFC 3986's unreserved characters (`-._~`) kept.
    PercentUnreserved {
        /// Upper-case hex digits.
        upper: bool,
    },
    /// Percent-encoded with the WHATWG URL standard's userinfo set: what a URL parser writes for
    /// the password of `postgres://user:password@host`.
    PercentUserinfo {
        /// Upper-case hex digits.
        upper: bool,
    },
    /// `application/x-www-form-urlencoded` (AWS query-protocol bodies): space as `+`.
    Form {
        /// Upper-case hex digits.
        upper: bool,
    },
    /// Inside a standard SQL literal: `'` doubled.
    SqlLiteral,
    /// Inside an `E'…'` literal (what `postgres_protocol::escape::escape_literal` writes when the
    /// value has a backslash): `\` doubled, `'` doubled.
    SqlEscapeString,
    /// Inside an `E'…'` literal with `'` written as `\'`.
    SqlEscapeStringBackslashQuote,
}

impl Encoding {
    /// Every encoding, raw first.
    pub const ALL: [Encoding; 12] = [
        Self::Raw,
        Self::PercentStrict { upper: true },
        Self::PercentStrict { upper: false },
        Self::PercentUnreserved { upper: true },
        Self::PercentUnreserved { upper: false },
        Self::PercentUserinfo { upper: true },
        Self::PercentUserinfo { upper: false },
        Self::Form { upper: true },
        Self::Form { upper: false },
        Self::SqlLiteral,
        Self::SqlEscapeString,
        Self::SqlEscapeStringBackslashQuote,
    ];

    /// `secret` in this encoding.
    pub fn apply(self, secret: &str) -> String {
        match self {
            Self::Raw => secret.to_owned(),
            Self::PercentStrict { upper } => percent(secret, NON_ALPHANUMERIC, upper, false),
            Self::PercentUnreserved { upper } => percent(secret, UNRESERVED_KEPT, upper, false),
            Self::PercentUserinfo { upper } => percent(secret, USERINFO, upper, false),
            Self::Form { upper } => percent(secret, FORM, upper, true),
            Self::SqlLiteral => secret.replace('\'', "''"),
            Self::SqlEscapeString => secret.replace('\\', "\\\\").replace('\'', "''"),
            Self::SqlEscapeStringBackslashQuote => secret.replace('\\', "\\\\").replace('\'', "\\'"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::PercentStrict { upper: true } => "percent-encoded (all non-alphanumeric, %XX)",
            Self::PercentStrict { upper: false } => "percent-encoded (all non-alphanumeric, %xx)",
            Self::PercentUnreserved { upper: true } => "percent-encoded (unreserved kept, %XX)",
            Self::PercentUnreserved { upper: false } => "percent-encoded (unreserved kept, %xx)",
            Self::PercentUserinfo { upper: true } => "percent-encoded (URL userinfo, %XX)",
            Self::PercentUserinfo { upper: false } => "percent-encoded (URL userinfo, %xx)",
            Self::Form { upper: true } => "form-urlencoded (%XX)",
            Self::Form { upper: false } => "form-urlencoded (%xx)",
            Self::SqlLiteral => "SQL literal ('')",
            Self::SqlEscapeString => "SQL E'' literal (\\\\, '')",
            Self::SqlEscapeStringBackslashQuote => "SQL E'' literal (\\\\, \\')",
        }
    }
}

/// How the line that carries it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Escaping {
    /// Not escaped (plain-text logs: Postgres, moto, a command's output).
    None,
    /// A JSON string's contents, as serde_json writes them (`\"`, `\\`, `\n`, `\u001b`, …).
    Json,
    /// A JSON string's contents with every non-ASCII character as `\uXXXX` (UTF-16, lower-case
    /// hex), as Python's `json.dumps` writes them (moto, schemathesis).
    JsonAscii,
    /// Rust's `Debug` of a `str` (`\"`, `\\`, `\n`, `\u{1b}`, …).
    Debug,
    /// `Debug` output inside a JSON log line (`?field` in a JSON subscriber).
    JsonOfDebug,
    /// JSON inside a `Debug` (a JSON body printed with `{:?}`).
    DebugOfJson,
    /// JSON inside JSON (a JSON document logged as a string field of a JSON line).
    JsonOfJson,
}

impl Escaping {
    /// Every escaping, none first.
    pub const ALL: [Escaping; 7] = [
        Self::None,
        Self::Json,
        Self::JsonAscii,
        Self::Debug,
        Self::JsonOfDebug,
        Self::DebugOfJson,
        Self::JsonOfJson,
    ];

    /// `text` escaped this way (without the surrounding quotes).
    pub fn apply(self, text: &str) -> String {
        match self {
            Self::None => text.to_owned(),
            Self::Json => json(text),
            Self::JsonAscii => json_ascii(text),
            Self::Debug => debug(text),
            Self::JsonOfDebug => json(&debug(text)),
            Self::DebugOfJson => debug(&json(text)),
            Self::JsonOfJson => json(&json(text)),
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Json => Some("JSON-escaped"),
            Self::JsonAscii => Some("JSON-escaped as ASCII"),
            Self::Debug => Some("Debug-escaped"),
            Self::JsonOfDebug => Some("Debug-escaped inside JSON"),
            Self::DebugOfJson => Some("JSON-escaped inside Debug"),
            Self::JsonOfJson => Some("JSON-escaped twice"),
        }
    }
}

/// One shape of a secret: an encoding, then an escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Form {
    /// How it was encoded.
    pub encoding: Encoding,
    /// How the log line escaped it.
    pub escaping: Escaping,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.escaping.name() {
            None => f.write_str(self.encoding.name()),
            Some(escaping) => write!(f, "{}, {escaping}", self.encoding.name()),
        }
    }
}

/// Every distinct string `secret` can take, each with the first form (raw first) that yields it.
/// A form equal to one listed earlier is dropped: most secrets have three (raw and two
/// percent-encodings of their `-`).
pub fn forms(secret: &str) -> Vec<(Form, String)> {
    let mut out: Vec<(Form, String)> = Vec::new();
    for encoding in Encoding::ALL {
        let encoded = encoding.apply(secret);
        for escaping in Escaping::ALL {
            let text = escaping.apply(&encoded);
            if !out.iter().any(|(_, seen)| *seen == text) {
                out.push((Form { encoding, escaping }, text));
            }
        }
    }
    out
}

/// RFC 3986: everything but ALPHA / DIGIT / `-._~` is encoded.
const UNRESERVED_KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The WHATWG URL standard's userinfo percent-encode set.
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// `application/x-www-form-urlencoded` keeps `*-._` (spaces are handled by the caller).
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

fn json(text: &str) -> String {
    let quoted = serde_json::Value::from(text).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn json_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in json(text).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn debug(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted[1..quoted.len() - 1].to_owned()
}

/// Percent-encodes every character in `set` (and every non-ASCII one) with upper- or lower-case
/// hex, leaving the others as they are; `plus_for_space` for form bodies.
fn percent(secret: &str, set: &'static AsciiSet, upper: bool, plus_for_space: bool) -> String {
    let mut out = String::with_capacity(secret.len() * 3);
    let mut buf = [0u8; 4];
    for c in secret.chars() {
        if plus_for_space && c == ' ' {
            out.push('+');
            continue;
        }
        let c = &*c.encode_utf8(&mut buf);
        let encoded = utf8_percent_encode(c, set).to_string();
        // An encoded character is only `%` and hex digits, so lowering it touches only the digits.
        if encoded != c && !upper {
            out.push_str(&encoded.to_ascii_lowercase());
        } else {
            out.push_str(&encoded);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(secret: &str, text: &str) -> bool {
        forms(secret).iter().any(|(_, f)| f == text)
    }

    #[test]
    fn a_plain_secret_has_three_forms_raw_first() {
        let f = forms("Pw-0123456789abcdef");
        assert_eq!(f[0].1, "Pw-0123456789abcdef");
        assert_eq!(f[0].0.to_string(), "raw");
        let texts: Vec<&str> = f.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["Pw-0123456789abcdef", "Pw%2D0123456789abcdef", "Pw%2d0123456789abcdef"]
        );
    }

    #[test]
    fn quoting_characters_take_every_form_the_writers_produce() {
        let secret = "it's \"q\" \\ 100%\u{1b}é";
        // serde_json, as tracing's JSON writer uses it: \" \\ and \u001b for a control character;
        // Python's json.dumps also writes é as \u00e9.
        assert!(has(secret, r#"it's \"q\" \\ 100%\u001bé"#));
        assert!(has(secret, r#"it's \"q\" \\ 100%\u001b\u00e9"#));
        assert!(has("Pw-😀-emoji", r"Pw-\ud83d\ude00-emoji"));
        // Debug: \u{1b}.
        assert!(has(secret, r#"it's \"q\" \\ 100%\u{1b}é"#));
        // Debug inside JSON.
        assert!(has(secret, r#"it's \\\"q\\\" \\\\ 100%\\u{1b}é"#));
        // SQL: doubled quote; E'' with a doubled backslash.
        assert!(has(secret, "it''s \"q\" \\ 100%\u{1b}é"));
        assert!(has(secret, "it''s \"q\" \\\\ 100%\u{1b}é"));
        assert!(has(secret, "it\\'s \"q\" \\\\ 100%\u{1b}é"));
        // A URL's password, upper and lower hex: the userinfo set keeps ' and %, strict encoders
        // encode both.
        assert!(has(secret, "it's%20%22q%22%20%5C%20100%%1B%C3%A9"));
        assert!(has(secret, "it's%20%22q%22%20%5c%20100%%1b%c3%a9"));
        assert!(has(secret, "it%27s%20%22q%22%20%5C%20100%25%1B%C3%A9"));
        assert!(has(secret, "it%27s%20%22q%22%20%5c%20100%25%1b%c3%a9"));
        // Form bodies: space as +.
        assert!(has(secret, "it%27s+%22q%22+%5C+100%25%1B%C3%A9"));
    }

    #[test]
    fn no_form_is_listed_twice() {
        let f = forms("a'b\"c\\d e/f");
        let mut texts: Vec<&str> = f.iter().map(|(_, t)| t.as_str()).collect();
        let n = texts.len();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), n);
    }
}
