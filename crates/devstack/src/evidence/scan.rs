//! The leak check's search: every form of every recorded secret (see [`super::forms`]) in every
//! collected log, in one pass over each log (aho-corasick, all patterns at once).

use super::{MIN_SECRET_LEN, SECRETS_FILE, forms::Form};
use aho_corasick::{AhoCorasick, MatchKind};
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// One secret found in one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The log.
    pub file: PathBuf,
    /// Its first line holding this form of this secret (1-based).
    pub line: usize,
    /// The secret: its line in the secrets file (1-based). Never the secret itself.
    pub secret: usize,
    /// The suite that recorded the secret.
    pub recorded_by: String,
    /// The form it was found in.
    pub form: Form,
}

/// Result of a scan.
#[derive(Debug, Default)]
pub struct LeakReport {
    /// Distinct secrets searched for.
    pub secrets: usize,
    /// Distinct strings searched for (every form of every secret).
    pub forms: usize,
    /// Log files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Time spent building the searcher and reading and searching the logs.
    pub elapsed: Duration,
    /// Every (log, secret, form) found, in file order.
    pub leaks: Vec<Leak>,
}

/// A recorded secret: the secrets file's line and the suite that recorded it.
struct Recorded {
    line: usize,
    by: String,
}

/// Reads `dir`'s secrets file: distinct secrets, each with its first line and recorder. A line
/// that is not one of ours is an error: a secret the check cannot read is a secret it cannot find.
fn read_secrets(dir: &Path) -> std::io::Result<Vec<(String, Recorded)>> {
    let text = match std::fs::read_to_string(dir.join(SECRETS_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, Recorded)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{SECRETS_FILE} line {} is not a recorded secret: {e}", i + 1),
            )
        })?;
        let Some(secret) = value["secret"].as_str() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{SECRETS_FILE} line {} has no \"secret\"", i + 1),
            ));
        };
        if secret.chars().count() < MIN_SECRET_LEN || seen.contains_key(secret) {
            continue;
        }
        seen.insert(secret.to_owned(), out.len());
        out.push((
            secret.to_owned(),
            Recorded {
                line: i + 1,
                by: value["by"].as_str().unwrap_or("?").to_owned(),
            },
        ));
    }
    Ok(out)
}

/// Searches every log in `dir/logs` for every form of every secret in `dir`'s secrets file.
///
/// # Errors
/// When the directory or a file in it cannot be read, or the secrets file is not ours.
pub fn scan(dir: &Path) -> std::io::Result<LeakReport> {
    let started = Instant::now();
    let secrets = read_secrets(dir)?;
    // Distinct strings to search for, each with every (secret, form) that yields it: a form of
    // one secret may equal a form of another.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut patterns: Vec<String> = Vec::new();
    let mut owners: Vec<Vec<(usize, Form)>> = Vec::new();
    for (s, (secret, _)) in secrets.iter().enumerate() {
        for (form, text) in super::forms::forms(secret) {
            let id = *index.entry(text.clone()).or_insert_with(|| {
                patterns.push(text);
                owners.push(Vec::new());
                patterns.len() - 1
            });
            owners[id].push((s, form));
        }
    }
    let mut report = LeakReport {
        secrets: secrets.len(),
        forms: patterns.len(),
        ..LeakReport::default()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("logs"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let searcher = if patterns.is_empty() {
        None
    } else {
        // Standard semantics, so every overlapping match is reported: a secret inside another
        // (a password inside its secret's JSON) is found as itself too.
        Some(
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .map_err(|e| std::io::Error::other(format!("cannot build the searcher: {e}")))?,
        )
    };
    for file in files {
        let bytes = std::fs::read(&file)?;
        report.files += 1;
        report.bytes += bytes.len() as u64;
        let Some(searcher) = &searcher else { continue };
        let mut found: HashSet<(usize, Form)> = HashSet::new();
        for m in searcher.find_overlapping_iter(&bytes) {
            for &(s, form) in &owners[m.pattern().as_usize()] {
                if found.insert((s, form)) {
                    report.leaks.push(Leak {
                        file: file.clone(),
                        line: bytes[..m.start()].iter().filter(|b| **b == b'\n').count() + 1,
                        secret: secrets[s].1.line,
                        recorded_by: secrets[s].1.by.clone(),
                        form,
                    });
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::forms::{Encoding, Escaping};

    fn evidence(secrets: &[&str], logs: &[(&str, String)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("evidence-test-{}", crate::random_token()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let lines: String = secrets
            .iter()
            .map(|s| serde_json::json!({"secret": s, "by": "devstack.test"}).to_string() + "\n")
            .collect();
        std::fs::write(dir.join(SECRETS_FILE), lines).unwrap();
        for (name, content) in logs {
            std::fs::write(dir.join("logs").join(name), content).unwrap();
        }
        dir
    }

    #[test]
    fn finds_a_planted_secret_and_reports_only_its_line_and_form() {
        let dir = evidence(
            &["short", "Pw-planted-0001", "Pw-absent-0002", "Pw-planted-0001"],
            &[
                ("a.log", "connected\nuser=app password=Pw-planted-0001\n".into()),
                ("b.log", "nothing here\n".into()),
            ],
        );
        let report = scan(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(report.secrets, 2, "short and duplicate entries are dropped");
        assert_eq!(report.files, 2);
        assert_eq!(report.leaks.len(), 1, "{:?}", report.leaks);
        let leak = &report.leaks[0];
        assert!(leak.file.ends_with("a.log"));
        assert_eq!((leak.secret, leak.line), (2, 2));
        assert_eq!(leak.form.encoding, Encoding::Raw);
        assert_eq!(leak.form.escaping, Escaping::None);
    }

    /// `%2F` → `%2f`, letters outside escapes untouched.
    fn lower_escapes(s: &str) -> String {
        let mut out = String::new();
        let mut digits = 0u8;
        for c in s.chars() {
            out.push(if digits > 0 { c.to_ascii_lowercase() } else { c });
            digits = if c == '%' { 2 } else { digits.saturating_sub(1) };
        }
        out
    }

    /// One leak of each form, each in a log of its own, of a secret made to break quoting. A
    /// search for the raw string (what the check did before) finds only the first.
    #[test]
    fn finds_one_planted_leak_of_every_form_and_says_which() {
        let secret = "Pw-it's \"quoted\" \\ 50%/@:\u{1}é";
        let json_line = |s: &str| serde_json::json!({"fields": {"message": "connect", "password": s}}).to_string();
        let debug = format!("{secret:?}");
        let pct = |s: String| format!("DATABASE_URL=postgres://app:{s}@127.0.0.1:5432/app");
        let planted = [
            ("raw", format!("password={secret}"), "raw"),
            ("json", json_line(secret), "raw, JSON-escaped"),
            (
                "json-ascii",
                json_line(secret).replace('é', "\\u00e9"),
                "raw, JSON-escaped as ASCII",
            ),
            (
                "debug",
                format!("Credentials {{ password: {debug} }}"),
                "raw, Debug-escaped",
            ),
            (
                "json-of-debug",
                json_line(&format!("Credentials {{ password: {debug} }}")),
                "raw, Debug-escaped inside JSON",
            ),
            (
                "pct-upper",
                pct(percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string()),
                "percent-encoded (all non-alphanumeric, %XX)",
            ),
            (
                "pct-lower",
                pct(lower_escapes(
                    &percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string(),
                )),
                "percent-encoded (all non-alphanumeric, %xx)",
            ),
            (
                "sql",
                format!(
                    "LOG:  statement: ALTER ROLE app PASSWORD {}",
                    postgres_protocol::escape::escape_literal(&secret.replace('\\', ""))
                ),
                "SQL literal ('')",
            ),
            (
                "sql-e",
                format!(
                    "LOG:  statement: ALTER ROLE app PASSWORD{}",
                    postgres_protocol::escape::escape_literal(secret)
                ),
                "SQL E'' literal (\\\\, '')",
            ),
        ];
        let logs: Vec<(&str, String)> = planted.iter().map(|(n, c, _)| (*n, c.clone())).collect();
        let secrets = [secret, &secret.replace('\\', "")];
        let dir = evidence(&secrets, &logs);
        let report = scan(&dir).unwrap();
        let raw_only: Vec<&str> = planted
            .iter()
            .filter(|(_, content, _)| content.contains(secret) || content.contains(secrets[1]))
            .map(|(n, _, _)| *n)
            .collect();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(raw_only, ["raw"], "a raw search misses every other form");
        for (name, _, form) in &planted {
            let found: Vec<String> = report
                .leaks
                .iter()
                .filter(|l| l.file.ends_with(name))
                .map(|l| l.form.to_string())
                .collect();
            assert!(
                found.iter().any(|f| f == form),
                "{name}: expected {form}, found {found:?}"
            );
        }
    }
}
