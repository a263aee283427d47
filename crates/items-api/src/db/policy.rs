//! How long a request waits for the database, what may be tried again, and the pool's size and
//! connection lifetime.

use std::time::Duration;

/// Default of `DB_MAX_LIFETIME_SECS`: 15 minutes, so no connection outlives its credential by days
/// and a rotation never finds every connection of a fleet on the old password at once.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(900);

/// The environment's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once: `DB_POOL_SIZE`, else `AWS_LAMBDA_MAX_CONCURRENCY`, else 1
    /// (classic Lambda serves one request at a time per environment).
    pub size: usize,
    /// A connection is replaced at its first use after this age, jittered ±10% per connection
    /// (`DB_MAX_LIFETIME_SECS`).
    pub max_lifetime: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            size: 1,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

impl PoolSettings {
    /// One connection's lifetime: [`Self::max_lifetime`] ±10%, so connections opened together
    /// (a cold start, a burst) are not all replaced together.
    pub fn jittered_lifetime(&self) -> Duration {
        self.max_lifetime.mul_f64(0.9 + 0.2 * fastrand::f64())
    }
}

/// How long and how often a request waits for the database to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// Wall time of a request after which no new try starts (a try under way finishes: at most
    /// one connect timeout or one [`QUERY_TIMEOUT`] more).
    pub budget: Duration,
    /// The first pause between connects of the environment; it doubles with each failure.
    pub first_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 12 tries within 5 s, pauses from 100 ms doubling to 1 s (so the time bound is the one met
    /// first): a failover whose writer is reachable again within about 4 s (the devstack's) costs
    /// no request; one that takes longer (RDS Multi-AZ: 1–2 minutes) is answered 503 with
    /// `Retry-After` well inside the function's 20 s timeout and API Gateway's 30 s.
    fn default() -> Self {
        Self {
            attempts: 12,
            budget: Duration::from_secs(5),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The pause after `failures` consecutive failures: exponential, capped, with equal jitter
    /// (half fixed, half random), so environments that failed together do not retry together.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let step = doubled.min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Whether an operation may run a second time on a new connection when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once (reads, PUT, DELETE).
    Idempotent,
    /// It must not be repeated (POST): its outcome is unknown, and a repeat could apply it twice.
    /// It is still tried again when it certainly was not applied: no connection was made, or the
    /// server refused the statement (read-only, shutting down, rolled back).
    Never,
}

/// What a successful operation returned, and whether an earlier try of it may have been applied
/// (its connection broke after it was sent, and this result comes from a later try).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done<T> {
    /// The result of the try that succeeded.
    pub value: T,
    /// An earlier try may have been applied.
    pub after_unknown_outcome: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_jittered_within_ten_percent() {
        let p = PoolSettings::default();
        let lifetimes: std::collections::BTreeSet<Duration> = (0..50).map(|_| p.jittered_lifetime()).collect();
        for l in &lifetimes {
            assert!(
                *l >= p.max_lifetime.mul_f64(0.9) && *l <= p.max_lifetime.mul_f64(1.1),
                "{l:?}"
            );
        }
        assert!(lifetimes.len() > 1, "connections opened together expire apart");
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_equal_jitter() {
        let p = RetryPolicy::default();
        for failures in 1..=20 {
            let step = (p.first_backoff * 2u32.pow((failures - 1).min(10))).min(p.max_backoff);
            for _ in 0..50 {
                let pause = p.backoff(failures);
                assert!(
                    pause >= step / 2 && pause <= step,
                    "{failures}: {pause:?} outside [{:?}, {step:?}]",
                    step / 2
                );
            }
        }
        // Jitter: environments that failed together do not come back together.
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(pauses.len() > 1);
    }
}
