//! Order statistics of latency samples.

use std::time::Duration;

/// A distribution of durations, sorted.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    /// From unsorted samples.
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `q` quantile (0..=1), nearest rank; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// Median.
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// 90th percentile.
    pub fn p90(&self) -> Duration {
        self.quantile(0.9)
    }

    /// 99th percentile.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// Largest sample.
    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    /// The sorted samples.
    pub fn sorted(&self) -> &[Duration] {
        &self.sorted
    }
}

/// Microseconds, as a number for tables and plots.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds, as a number for tables and plots.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A signed difference of two durations in microseconds.
pub fn diff_us(a: Duration, b: Duration) -> f64 {
    us(a) - us(b)
}
