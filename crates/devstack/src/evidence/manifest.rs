//! The logs each suite must leave in the evidence, so a suite whose logs silently went missing
//! (a subscriber that never saw an event, a guardian that never copied) fails the leak check
//! instead of passing it with less to search.
//!
//! The manifest is a text file, one suite a line: the suite (`<package>.<binary>`) and the kinds
//! of log it must leave, each at least once and never empty. `#` starts a comment.
//!
//! ```text
//! e2e.rotation_faults      test postgres moto
//! e2e.rotation_under_load  test postgres moto functions-under-watch
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Suite → the kinds of log it must leave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Every suite named, with its kinds.
    pub suites: BTreeMap<String, BTreeSet<String>>,
}

/// What is wrong with the collected logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A suite did not leave a log it must.
    Missing {
        /// The suite.
        suite: String,
        /// The kind of log.
        kind: String,
    },
    /// A log is empty.
    Empty {
        /// Its file name.
        file: String,
    },
    /// A suite left logs but the manifest does not name it.
    Unlisted {
        /// The suite.
        suite: String,
        /// The kinds it left.
        kinds: BTreeSet<String>,
    },
    /// A log whose name is not `<kind>@<suite>-<unique>.log`.
    Unnamed {
        /// Its file name.
        file: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { suite, kind } => write!(f, "suite {suite} left no {kind} log"),
            Self::Empty { file } => write!(f, "{file} is empty"),
            Self::Unlisted { suite, kinds } => write!(
                f,
                "suite {suite} left logs ({}) but the manifest does not list it; add it",
                kinds.iter().cloned().collect::<Vec<_>>().join(" ")
            ),
            Self::Unnamed { file } => write!(f, "{file} is not named <kind>@<suite>-<unique>.log"),
        }
    }
}

/// `(kind, suite)` of a log named `<kind>@<suite>-<32 hex>.log`.
pub fn parse_log_name(file: &str) -> Option<(&str, &str)> {
    let stem = file.strip_suffix(".log")?;
    let (rest, unique) = stem.rsplit_once('-')?;
    if unique.len() != 32 || !unique.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (kind, suite) = rest.split_once('@')?;
    (!kind.is_empty() && !suite.is_empty()).then_some((kind, suite))
}

impl Manifest {
    /// Parses the manifest's text.
    ///
    /// # Errors
    /// Names the line that lists a suite twice or no kind of log.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut suites = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            let Some(suite) = words.next() else { continue };
            let kinds: BTreeSet<String> = words.map(str::to_owned).collect();
            if kinds.is_empty() {
                return Err(format!("manifest line {}: suite {suite} lists no log", i + 1));
            }
            if suites.insert(suite.to_owned(), kinds).is_some() {
                return Err(format!("manifest line {}: suite {suite} is listed twice", i + 1));
            }
        }
        Ok(Self { suites })
    }

    /// Reads and parses a manifest file.
    ///
    /// # Errors
    /// When it cannot be read or parsed.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Holds `logs` (file name, size) to the manifest. `only`: check just these suites (the
    /// others may be absent), for a run of part of the tests; empty means every suite.
    pub fn check(&self, logs: &[(String, u64)], only: &[String]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut left: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (file, size) in logs {
            let Some((kind, suite)) = parse_log_name(file) else {
                problems.push(Problem::Unnamed { file: file.clone() });
                continue;
            };
            if *size == 0 {
                problems.push(Problem::Empty { file: file.clone() });
            }
            left.entry(suite).or_default().insert(kind.to_owned());
        }
        for (suite, kinds) in &self.suites {
            if !only.is_empty() && !only.contains(suite) {
                continue;
            }
            for kind in kinds {
                if !left.get(suite.as_str()).is_some_and(|k| k.contains(kind)) {
                    problems.push(Problem::Missing {
                        suite: suite.clone(),
                        kind: kind.clone(),
                    });
                }
            }
        }
        for (suite, kinds) in left {
            if !self.suites.contains_key(suite) {
                problems.push(Problem::Unlisted {
                    suite: suite.to_owned(),
                    kinds,
                });
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0123456789abcdef0123456789abcdef";

    fn log(kind: &str, suite: &str, size: u64) -> (String, u64) {
        (format!("{kind}@{suite}-{U}.log"), size)
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_log_name(&format!("functions-under-watch@e2e.schemathesis-{U}.log")),
            Some(("functions-under-watch", "e2e.schemathesis"))
        );
        assert_eq!(parse_log_name("postgres-0123.log"), None);
        assert_eq!(parse_log_name(&format!("postgres-{U}.log")), None);
    }

    #[test]
    fn a_missing_an_empty_and_an_unlisted_log_are_each_named() {
        let manifest = Manifest::parse(
            "# comment\ne2e.faults  test postgres moto  # trailing\ndb-credentials.logs test postgres\n",
        )
        .unwrap();
        let logs = vec![
            log("test", "e2e.faults", 10),
            log("postgres", "e2e.faults", 10),
            log("test", "db-credentials.logs", 0),
            log("postgres", "db-credentials.logs", 5),
            log("test", "items-api.new", 5),
            ("stray.log".to_owned(), 3),
        ];
        let problems = manifest.check(&logs, &[]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                format!("test@db-credentials.logs-{U}.log is empty"),
                "stray.log is not named <kind>@<suite>-<unique>.log".to_owned(),
                "suite e2e.faults left no moto log".to_owned(),
                "suite items-api.new left logs (test) but the manifest does not list it; add it".to_owned(),
            ]
        );
        // Only part of the suites ran: the others may be absent.
        let only = manifest.check(&logs[..2], &["e2e.faults".to_owned()]);
        assert_eq!(
            only,
            [Problem::Missing {
                suite: "e2e.faults".into(),
                kind: "moto".into()
            }]
        );
    }

    #[test]
    fn a_suite_listed_twice_or_without_logs_is_refused() {
        assert!(Manifest::parse("a test\na moto\n").unwrap_err().contains("twice"));
        assert!(Manifest::parse("a\n").unwrap_err().contains("lists no log"));
    }
}
