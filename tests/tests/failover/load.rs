//! Clients sending a mix of reads and writes, and what they saw: every status, every 503's cause
//! and `Retry-After`, when each write was acknowledged, and the value each acknowledged write left.

use crate::target::{Answer, Target};
use serde_json::json;
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// What an item should hold on the primary, from the writes that were acknowledged.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Its name after the last acknowledged write.
    pub name: String,
    /// A later write of it ended without an answer (503): either value may be there.
    pub uncertain: bool,
}

/// Everything the clients saw.
#[derive(Default)]
pub struct Tally {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Of which writes (POST, PUT).
    pub writes: AtomicU64,
    /// Count per status.
    pub statuses: Mutex<BTreeMap<u16, u64>>,
    /// 503s per `condition`.
    pub causes: Mutex<BTreeMap<String, u64>>,
    /// Anything the API must never do: a 5xx other than 503, a 503 without `Retry-After`, no
    /// answer at all.
    pub violations: Mutex<Vec<String>>,
    /// When each write was acknowledged (2xx), and through which target.
    pub acknowledged: Mutex<Vec<(Instant, &'static str)>>,
    /// Every item created, by id.
    pub items: Mutex<HashMap<i64, Expected>>,
    /// Each client's statuses in order.
    pub histories: Mutex<BTreeMap<usize, Vec<u16>>>,
}

impl Tally {
    fn record(&self, client: usize, answer: &Answer, label: &str, what: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *self.statuses.lock().unwrap().entry(answer.status).or_default() += 1;
        self.histories
            .lock()
            .unwrap()
            .entry(client)
            .or_default()
            .push(answer.status);
        if answer.status == 503 {
            let cause = answer.body["condition"].as_str().unwrap_or("none").to_owned();
            *self.causes.lock().unwrap().entry(cause).or_default() += 1;
            if answer
                .retry_after
                .as_deref()
                .and_then(|v| v.parse::<u32>().ok())
                .is_none()
            {
                self.violation(format!("{label} {what}: 503 without Retry-After: {}", answer.body));
            }
        } else if answer.status >= 500 {
            self.violation(format!("{label} {what}: {} {}", answer.status, answer.body));
        }
    }

    fn violation(&self, v: String) {
        self.violations.lock().unwrap().push(v);
    }

    /// The first write acknowledged after `t`, and through which target; and the first per target.
    pub fn first_write_after(&self, t: Instant) -> (Option<Duration>, BTreeMap<&'static str, Duration>) {
        let acks = self.acknowledged.lock().unwrap();
        let mut per: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for (at, label) in acks.iter().filter(|(at, _)| *at >= t) {
            let d = at.duration_since(t);
            per.entry(label).and_modify(|m| *m = (*m).min(d)).or_insert(d);
        }
        (per.values().min().copied(), per)
    }

    /// One line for the report.
    pub fn summary(&self) -> String {
        format!(
            "{} requests ({} writes), statuses {:?}, 503 causes {:?}, {} items created",
            self.requests.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.statuses.lock().unwrap(),
            self.causes.lock().unwrap(),
            self.items.lock().unwrap().len()
        )
    }
}

/// Sends requests through `target` until `stop`: creates items, reads the list and its own items,
/// renames its own items. After a 503 it waits a little, as a client honouring `Retry-After` would
/// (shorter, to keep the pressure on).
pub async fn client(id: usize, target: Target, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let label = target.label();
    let mut own: Vec<i64> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let op = (n as usize + id) % 5;
        let (method, path, body, what) = match (op, own.last()) {
            (0 | 1, _) | (_, None) => {
                let name = format!("c{id}-n{n}");
                (
                    "POST",
                    "/items".to_owned(),
                    Some(json!({"name": name}).to_string()),
                    "create",
                )
            }
            (2, _) => ("GET", "/items?limit=5".to_owned(), None, "list"),
            (3, Some(item)) => ("GET", format!("/items/{item}"), None, "read"),
            (_, Some(_)) => {
                let item = own[n as usize % own.len()];
                let name = format!("c{id}-n{n}-renamed");
                (
                    "PUT",
                    format!("/items/{item}"),
                    Some(json!({"name": name}).to_string()),
                    "rename",
                )
            }
        };
        let is_write = method != "GET";
        if is_write {
            tally.writes.fetch_add(1, Ordering::Relaxed);
        }
        let answer = match target.send(method, &path, body.as_deref()).await {
            Ok(a) => a,
            Err(e) => {
                tally.violation(format!("{label} {what}: no answer: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let done = Instant::now();
        tally.record(id, &answer, label, what);
        let sent_name = || {
            body.as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|v| v["name"].as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        match (method, answer.status) {
            ("POST", 201) => {
                tally.acknowledged.lock().unwrap().push((done, label));
                match answer.body["id"].as_i64() {
                    Some(item) => {
                        own.push(item);
                        tally.items.lock().unwrap().insert(
                            item,
                            Expected {
                                name: sent_name(),
                                uncertain: false,
                            },
                        );
                    }
                    None => tally.violation(format!("{label} create: 201 without an id: {}", answer.body)),
                }
            }
            ("PUT", 200) => {
                tally.acknowledged.lock().unwrap().push((done, label));
                if let Some(item) = path.rsplit('/').next().and_then(|s| s.parse::<i64>().ok()) {
                    tally.items.lock().unwrap().insert(
                        item,
                        Expected {
                            name: sent_name(),
                            uncertain: false,
                        },
                    );
                }
            }
            ("PUT", _) => {
                if let Some(item) = path.rsplit('/').next().and_then(|s| s.parse::<i64>().ok())
                    && let Some(e) = tally.items.lock().unwrap().get_mut(&item)
                {
                    e.uncertain = true;
                }
            }
            ("GET", 404) if what == "read" => {
                tally.violation(format!("{label} read: an acknowledged item was not found: {path}"));
            }
            _ => {}
        }
        if answer.status == 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every acknowledged write, checked on `primary`: each created item is there, with the name of
/// its last acknowledged write unless a later write's outcome is unknown. Returns the problems.
pub async fn lost_writes(tally: &Tally, primary: &tokio_postgres::Client) -> Vec<String> {
    let rows = primary
        .query("SELECT id, name FROM items", &[])
        .await
        .expect("read items");
    let found: HashMap<i64, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut lost = Vec::new();
    for (id, expected) in tally.items.lock().unwrap().iter() {
        match found.get(id) {
            None => lost.push(format!("item {id} ({}) is not on the primary", expected.name)),
            Some(name) if !expected.uncertain && *name != expected.name => lost.push(format!(
                "item {id} is {name:?} on the primary; the last acknowledged write made it {:?}",
                expected.name
            )),
            Some(_) => {}
        }
    }
    lost
}
