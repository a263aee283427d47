//! An in-memory log sink for tests that assert on what a `tracing` subscriber wrote: clone it
//! into `with_writer`, then read everything written with [`LogCapture::text`], or ask
//! [`LogCapture::secret_sightings`] whether any form of a secret reached it.

use crate::evidence::forms::{Form, forms};
use std::{
    io::Write,
    sync::{Arc, Mutex, PoisonError},
};

/// Collects every byte written to any of its clones.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far.
    ///
    /// # Panics
    /// When it is not UTF-8: a subscriber writes text, so anything else is a failure to report.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()).expect("log output is UTF-8")
    }

    /// Where any form of any of `secrets` appears in what was written (see [`secret_sightings`]).
    pub fn secret_sightings<S: AsRef<str>>(&self, secrets: &[S]) -> Vec<Sighting> {
        secret_sightings(&self.text(), secrets)
    }
}

/// A secret seen in log text. Says which secret (its index in the list searched for), in which
/// form and where; never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Index of the secret in the list searched for.
    pub secret: usize,
    /// The form it was found in.
    pub form: Form,
    /// The line (1-based).
    pub line: usize,
    /// Found in a decoded string of a JSON line (field value or key) rather than in the text.
    pub decoded: bool,
}

impl std::fmt::Display for Sighting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "secret #{} appears {} in {} line {}",
            self.secret,
            self.form,
            if self.decoded {
                "a decoded field of"
            } else {
                "the text of"
            },
            self.line
        )
    }
}

/// Searches log `text` for every form of every secret (see [`crate::evidence::forms`]): in each
/// line as written, and in every string a JSON line decodes to (values and keys, at any depth),
/// where JSON's own escaping is undone and a secret shows up raw or as its `Debug`.
pub fn secret_sightings<S: AsRef<str>>(text: &str, secrets: &[S]) -> Vec<Sighting> {
    let patterns: Vec<Vec<(Form, String)>> = secrets.iter().map(|s| forms(s.as_ref())).collect();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut strings = Vec::new();
        if line.starts_with('{')
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
        {
            collect_strings(&value, &mut strings);
        }
        for (secret, forms) in patterns.iter().enumerate() {
            for (form, pattern) in forms {
                let seen = |decoded| Sighting {
                    secret,
                    form: *form,
                    line: i + 1,
                    decoded,
                };
                if line.contains(pattern.as_str()) {
                    out.push(seen(false));
                } else if strings.iter().any(|s| s.contains(pattern.as_str())) {
                    out.push(seen(true));
                }
            }
        }
    }
    out
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON subscriber escapes `"` and `\`: the raw secret is not in the text, but its field
    /// decodes to it. A `?field` adds Debug's escaping on top.
    #[test]
    fn a_secret_that_breaks_quoting_is_seen_through_json_and_debug() {
        let secret = r#"Pw-'"\ $$;--%é"#;
        let capture = LogCapture::default();
        let subscriber = tracing_subscriber::fmt().json().with_writer(capture.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(password = %secret, "display");
            tracing::info!(password = ?secret, "debug");
        });
        let text = capture.text();
        assert!(!text.contains(secret), "JSON hides the raw form from a plain search");
        let seen = capture.secret_sightings(&["Pw-unrelated-1", secret]);
        let lines: Vec<usize> = seen.iter().map(|s| s.line).collect();
        assert!(lines.contains(&1) && lines.contains(&2), "{seen:?}");
        assert!(seen.iter().all(|s| s.secret == 1));
        assert!(seen.iter().any(|s| s.line == 1 && s.decoded), "{seen:?}");
        assert!(!seen.iter().any(|s| s.to_string().contains(secret)));
    }
}
