//! The cached Secrets Manager secret (design §5).
//!
//! * fetched once per execution environment, kept across invocations;
//! * after the TTL, revalidated with DescribeSecret: when the cached version still holds
//!   `AWSCURRENT`, nothing is fetched;
//! * one refresh at a time: the lock is held across the network call, so concurrent callers wait
//!   for the one fetch instead of each making their own;
//! * a transient failure while a value is cached serves the cached value, marked stale.

use crate::{
    aws::{AwsError, AwsErrorKind},
    metric,
    secret::{DbSecret, SecretError},
    secrets_manager::{ReadSecrets, SecretValue, Stage},
};
use secrecy::ExposeSecret;
use std::{
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::Mutex;

/// After a transient failure, try again no later than this.
const STALE_RETRY: Duration = Duration::from_secs(5);

/// A cached secret version.
#[derive(Debug, Clone)]
pub struct CachedSecret {
    /// The parsed secret.
    pub secret: Arc<DbSecret>,
    /// Its version id.
    pub version_id: String,
    /// The stage it was read from.
    pub stage: Stage,
    /// True when a refresh failed transiently and this older value is being served.
    pub stale: bool,
}

/// What `/health/db` reports about the cache.
#[derive(Debug, Clone, Default)]
pub struct CacheStatus {
    /// Version in use.
    pub version_id: Option<String>,
    /// Stage it came from.
    pub stage: Option<Stage>,
    /// Whether it is being served after a failed refresh.
    pub stale: bool,
    /// The last refresh error, if the last refresh failed.
    pub last_error: Option<String>,
    /// When the value was last fetched or confirmed current.
    pub checked_at: Option<SystemTime>,
}

/// Why no secret could be had.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The AWS call failed and nothing usable is cached.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The secret's content is unusable.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

struct State {
    entry: Option<CachedSecret>,
    next_check: Instant,
}

/// One secret, cached. See the module docs for the rules.
pub struct SecretCache<B> {
    backend: B,
    secret_id: String,
    ttl: Duration,
    state: Mutex<State>,
    status: StdMutex<CacheStatus>,
}

impl<B: ReadSecrets> SecretCache<B> {
    /// A cache for `secret_id` revalidated every `ttl` (zero: on every call).
    pub fn new(backend: B, secret_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            backend,
            secret_id: secret_id.into(),
            ttl,
            state: Mutex::new(State {
                entry: None,
                next_check: Instant::now(),
            }),
            status: StdMutex::new(CacheStatus::default()),
        }
    }

    /// The secret id this cache reads.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The cached value, revalidated if the TTL has passed.
    ///
    /// # Errors
    /// [`CacheError`] when nothing usable is cached and the fetch fails, or on a non-transient
    /// failure (not found, access denied), which is never papered over.
    pub async fn get(&self) -> Result<CachedSecret, CacheError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(entry) = state.entry.clone() {
            if now < state.next_check {
                return Ok(entry);
            }
            metrics::counter!(metric::SECRET_REVALIDATIONS).increment(1);
            match self.backend.describe(&self.secret_id).await {
                Ok(desc) => {
                    let is_current = desc.has_stage(&entry.version_id, Stage::Current);
                    // A pending value adopted mid-rotation stays in use until AWSCURRENT moves to it.
                    let still_pending =
                        entry.stage == Stage::Pending && desc.has_stage(&entry.version_id, Stage::Pending);
                    if is_current || still_pending {
                        let stage = if is_current { Stage::Current } else { Stage::Pending };
                        return Ok(self.store(
                            &mut state,
                            CachedSecret {
                                stage,
                                stale: false,
                                ..entry
                            },
                        ));
                    }
                }
                Err(e) => {
                    // Counted like a failed fetch: the alarm on SecretFetchErrors must see a
                    // revalidation that is refused (access revoked, secret deleted) too.
                    metrics::counter!(metric::SECRET_FETCH_ERRORS).increment(1);
                    if e.is_transient() {
                        return Ok(self.serve_stale(&mut state, entry, &e));
                    }
                    return Err(self.failed(e));
                }
            }
        }
        self.fetch_current(&mut state).await
    }

    /// Called after the database refused `failed_version`: fetches `AWSCURRENT` again, unless
    /// another caller already replaced that version while this one waited for the lock.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub async fn refresh_after_auth_failure(&self, failed_version: &str) -> Result<CachedSecret, CacheError> {
        let mut state = self.state.lock().await;
        if let Some(entry) = &state.entry
            && entry.version_id != failed_version
        {
            return Ok(entry.clone());
        }
        self.fetch_current(&mut state).await
    }

    /// The `AWSPENDING` version, if one exists with a value. Not cached: asked for only after
    /// the current value was refused.
    ///
    /// # Errors
    /// [`CacheError`] on failures other than "no such version".
    pub async fn pending(&self) -> Result<Option<CachedSecret>, CacheError> {
        let started = Instant::now();
        let value = match self.backend.get_value(&self.secret_id, Stage::Pending, None).await {
            Ok(v) => v,
            Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(None),
            Err(e) => {
                metrics::counter!(metric::SECRET_FETCH_ERRORS).increment(1);
                return Err(e.into());
            }
        };
        record_fetch(started);
        if value.secret_string.is_none() {
            return Ok(None);
        }
        Ok(Some(self.parse(value, Stage::Pending)?))
    }

    /// Uses `entry` (a pending value the database accepted) for new connections from now on, if
    /// the cache still holds the version the database refused (`refused_version`). Returns whether
    /// it did: another caller may have cached a newer `AWSCURRENT` while this one was connecting,
    /// and that must not be replaced by an older pending value.
    pub async fn adopt(&self, entry: CachedSecret, refused_version: &str) -> bool {
        let mut state = self.state.lock().await;
        if state.entry.as_ref().is_some_and(|e| e.version_id != refused_version) {
            return false;
        }
        self.store(&mut state, entry);
        true
    }

    /// A snapshot for health reporting; never waits on a refresh in progress.
    pub fn status(&self) -> CacheStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn fetch_current(&self, state: &mut State) -> Result<CachedSecret, CacheError> {
        let started = Instant::now();
        match self.backend.get_value(&self.secret_id, Stage::Current, None).await {
            Ok(value) => {
                record_fetch(started);
                let entry = self
                    .parse(value, Stage::Current)
                    .inspect_err(|e| self.note_error(e.to_string()))?;
                Ok(self.store(state, entry))
            }
            Err(e) => {
                metrics::counter!(metric::SECRET_FETCH_ERRORS).increment(1);
                match state.entry.clone() {
                    Some(entry) if e.is_transient() => Ok(self.serve_stale(state, entry, &e)),
                    _ => Err(self.failed(e)),
                }
            }
        }
    }

    fn parse(&self, value: SecretValue, stage: Stage) -> Result<CachedSecret, SecretError> {
        let raw = value.secret_string.ok_or_else(|| SecretError::Binary {
            secret_id: self.secret_id.clone(),
        })?;
        let secret = DbSecret::parse(&self.secret_id, raw.expose_secret())?;
        Ok(CachedSecret {
            secret: Arc::new(secret),
            version_id: value.version_id,
            stage,
            stale: false,
        })
    }

    fn store(&self, state: &mut State, entry: CachedSecret) -> CachedSecret {
        state.next_check = Instant::now() + self.ttl;
        state.entry = Some(entry.clone());
        if let Ok(mut s) = self.status.lock() {
            *s = CacheStatus {
                version_id: Some(entry.version_id.clone()),
                stage: Some(entry.stage),
                stale: false,
                last_error: None,
                checked_at: Some(SystemTime::now()),
            };
        }
        entry
    }

    fn serve_stale(&self, state: &mut State, entry: CachedSecret, err: &AwsError) -> CachedSecret {
        metrics::counter!(metric::STALE_SECRET_SERVED).increment(1);
        tracing::warn!(
            secret_id = %self.secret_id,
            version_id = %entry.version_id,
            error = %err,
            "Secrets Manager unavailable; serving the cached secret"
        );
        state.next_check = Instant::now() + self.ttl.min(STALE_RETRY);
        let entry = CachedSecret { stale: true, ..entry };
        state.entry = Some(entry.clone());
        if let Ok(mut s) = self.status.lock() {
            s.stale = true;
            s.last_error = Some(err.to_string());
        }
        entry
    }

    fn failed(&self, err: AwsError) -> CacheError {
        self.note_error(err.to_string());
        err.into()
    }

    fn note_error(&self, message: String) {
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(message);
        }
    }
}

fn record_fetch(started: Instant) {
    metrics::counter!(metric::SECRET_FETCHES).increment(1);
    metrics::histogram!(metric::SECRET_FETCH_LATENCY_MS).record(started.elapsed().as_secs_f64() * 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets_manager::{AWSCURRENT, AWSPENDING, SecretDescription};
    use secrecy::SecretString;
    use std::{
        collections::{HashMap, VecDeque},
        sync::atomic::{AtomicUsize, Ordering},
    };

    /// Versions with stages, plus scripted failures per call kind.
    #[derive(Default)]
    struct Fake {
        versions: StdMutex<HashMap<String, (String, Vec<String>)>>,
        describe_failures: StdMutex<VecDeque<AwsErrorKind>>,
        get_failures: StdMutex<VecDeque<AwsErrorKind>>,
        describes: AtomicUsize,
        gets: AtomicUsize,
        delay: Duration,
    }

    impl Fake {
        fn with_current(password: &str) -> Self {
            let fake = Self::default();
            fake.put("v1", password, &[AWSCURRENT]);
            fake
        }
        fn put(&self, version: &str, password: &str, stages: &[&str]) {
            let mut versions = self.versions.lock().unwrap();
            for (_, (_, st)) in versions.iter_mut() {
                st.retain(|s| !stages.contains(&s.as_str()));
            }
            let json = format!(r#"{{"username":"app","password":"{password}","host":"h"}}"#);
            versions.insert(version.into(), (json, stages.iter().map(|s| (*s).to_owned()).collect()));
        }
        fn fail_next_describe(&self, kind: AwsErrorKind) {
            self.describe_failures.lock().unwrap().push_back(kind);
        }
        fn fail_next_get(&self, kind: AwsErrorKind) {
            self.get_failures.lock().unwrap().push_back(kind);
        }
    }

    impl ReadSecrets for Fake {
        async fn describe(&self, _: &str) -> Result<SecretDescription, AwsError> {
            self.describes.fetch_add(1, Ordering::SeqCst);
            if let Some(kind) = self.describe_failures.lock().unwrap().pop_front() {
                return Err(AwsError::new(kind, "DescribeSecret", "scripted"));
            }
            let versions = self.versions.lock().unwrap();
            Ok(SecretDescription {
                versions: versions.iter().map(|(k, (_, st))| (k.clone(), st.clone())).collect(),
                ..Default::default()
            })
        }
        async fn get_value(&self, _: &str, stage: Stage, _: Option<&str>) -> Result<SecretValue, AwsError> {
            let stage = stage.label();
            self.gets.fetch_add(1, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if let Some(kind) = self.get_failures.lock().unwrap().pop_front() {
                return Err(AwsError::new(kind, "GetSecretValue", "scripted"));
            }
            let versions = self.versions.lock().unwrap();
            let (id, (json, _)) = versions
                .iter()
                .find(|(_, (_, st))| st.iter().any(|s| s == stage))
                .ok_or_else(|| AwsError::new(AwsErrorKind::NotFound, "GetSecretValue", "no such stage"))?;
            Ok(SecretValue {
                version_id: id.clone(),
                secret_string: Some(SecretString::from(json.clone())),
            })
        }
    }

    fn password(c: &CachedSecret) -> String {
        c.secret.password().expose_secret().to_owned()
    }

    #[tokio::test]
    async fn warm_reads_make_no_calls() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::from_secs(300));
        for _ in 0..1000 {
            assert_eq!(password(&cache.get().await.unwrap()), "p1");
        }
        assert_eq!(cache.backend.gets.load(Ordering::SeqCst), 1);
        assert_eq!(cache.backend.describes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn revalidation_after_ttl_costs_one_describe_and_no_get_when_unchanged() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(cache.backend.gets.load(Ordering::SeqCst), 1);
        assert_eq!(cache.backend.describes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn revalidation_fetches_when_current_moved() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        cache.get().await.unwrap();
        cache.backend.put("v2", "p2", &[AWSCURRENT]);
        let got = cache.get().await.unwrap();
        assert_eq!((got.version_id.as_str(), password(&got).as_str()), ("v2", "p2"));
        assert_eq!(cache.backend.gets.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_fetch() {
        let fake = Fake {
            delay: Duration::from_millis(50),
            ..Fake::with_current("p1")
        };
        let cache = Arc::new(SecretCache::new(fake, "s", Duration::from_secs(300)));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                tokio::spawn({
                    let c = cache.clone();
                    async move { c.get().await.map(|e| e.version_id) }
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "v1");
        }
        assert_eq!(cache.backend.gets.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn serves_stale_secret_on_transient_describe_failure() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        cache.get().await.unwrap();
        cache.backend.fail_next_describe(AwsErrorKind::Timeout);
        let got = cache.get().await.unwrap();
        assert!(got.stale);
        assert_eq!(password(&got), "p1");
        let status = cache.status();
        assert!(status.stale && status.last_error.is_some());
        // the next successful revalidation clears the flag
        let got = cache.get().await.unwrap();
        assert!(!got.stale && !cache.status().stale);
    }

    #[tokio::test]
    async fn serves_stale_secret_on_throttled_fetch() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        cache.get().await.unwrap();
        cache.backend.put("v2", "p2", &[AWSCURRENT]);
        cache.backend.fail_next_get(AwsErrorKind::Throttled);
        let got = cache.get().await.unwrap();
        assert!(got.stale);
        assert_eq!(got.version_id, "v1");
    }

    #[tokio::test]
    async fn non_transient_errors_are_never_papered_over() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        cache.get().await.unwrap();
        cache.backend.fail_next_describe(AwsErrorKind::AccessDenied);
        assert!(matches!(cache.get().await, Err(CacheError::Aws(e)) if e.kind == AwsErrorKind::AccessDenied));
        let empty = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        empty.backend.fail_next_get(AwsErrorKind::Timeout);
        assert!(
            empty.get().await.is_err(),
            "nothing cached: a transient error is still an error"
        );
    }

    #[tokio::test]
    async fn auth_failure_refresh_is_skipped_when_another_caller_already_refreshed() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::from_secs(300));
        cache.get().await.unwrap();
        cache.backend.put("v2", "p2", &[AWSCURRENT]);
        let first = cache.refresh_after_auth_failure("v1").await.unwrap();
        let second = cache.refresh_after_auth_failure("v1").await.unwrap();
        assert_eq!((first.version_id.as_str(), second.version_id.as_str()), ("v2", "v2"));
        assert_eq!(
            cache.backend.gets.load(Ordering::SeqCst),
            2,
            "one initial fetch, one refresh"
        );
    }

    #[tokio::test]
    async fn pending_is_read_and_adopted_until_current_moves_to_it() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::ZERO);
        cache.get().await.unwrap();
        assert!(cache.pending().await.unwrap().is_none(), "no AWSPENDING yet");
        cache.backend.put("v2", "p2", &[AWSPENDING]);
        let pending = cache.pending().await.unwrap().expect("pending value");
        assert_eq!((pending.stage, password(&pending).as_str()), (Stage::Pending, "p2"));
        assert!(cache.adopt(pending, "v1").await);
        let got = cache.get().await.unwrap();
        assert_eq!(
            (got.version_id.as_str(), got.stage),
            ("v2", Stage::Pending),
            "kept while still AWSPENDING"
        );
        cache.backend.put("v2", "p2", &[AWSCURRENT, AWSPENDING]);
        let got = cache.get().await.unwrap();
        assert_eq!((got.version_id.as_str(), got.stage), ("v2", Stage::Current));
        assert_eq!(
            cache.backend.gets.load(Ordering::SeqCst),
            3,
            "initial fetch and two pending reads; revalidations use DescribeSecret only"
        );
    }

    #[tokio::test]
    async fn a_pending_value_never_replaces_a_newer_current_one() {
        let cache = SecretCache::new(Fake::with_current("p1"), "s", Duration::from_secs(300));
        cache.get().await.unwrap();
        cache.backend.put("v2", "p2", &[AWSPENDING]);
        let pending = cache.pending().await.unwrap().expect("pending");
        // Meanwhile the rotation finished and another caller refreshed to the new AWSCURRENT.
        cache.backend.put("v3", "p3", &[AWSCURRENT]);
        cache.refresh_after_auth_failure("v1").await.unwrap();
        assert!(
            !cache.adopt(pending, "v1").await,
            "v1 is no longer cached: nothing to replace"
        );
        assert_eq!(cache.get().await.unwrap().version_id, "v3");
    }

    #[tokio::test]
    async fn malformed_current_names_the_secret() {
        let fake = Fake::default();
        fake.versions
            .lock()
            .unwrap()
            .insert("v1".into(), (r#"{"username":"app"}"#.into(), vec![AWSCURRENT.into()]));
        let cache = SecretCache::new(fake, "app/db", Duration::ZERO);
        let msg = cache.get().await.unwrap_err().to_string();
        assert!(msg.contains("app/db") && msg.contains("password"), "{msg}");
        assert!(cache.status().last_error.is_some());
    }
}
