//! Request latency over time while rotations run: the release items-api binary with a new
//! connection for every request (so every request goes through the credential path), single
//! user, and the release rotation binary rotating the secret now and then.

use crate::{
    AppSetup, Ctx, Result,
    events::Op,
    function::{self, Environment},
    rotation::{self, Timed},
    stats::Samples,
};
use devstack::RotationDriver;
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Since the start of the run.
    pub at: Duration,
    /// Queue to answer.
    pub latency: Duration,
    /// Whether it answered 2xx.
    pub ok: bool,
}

/// The run.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Every request.
    pub points: Vec<Point>,
    /// Each rotation's start and end (since the start of the run).
    pub rotations: Vec<(Duration, Duration)>,
    /// Requests that did not answer 2xx, with what they said.
    pub failures: Vec<String>,
}

impl Timeline {
    /// Whether `at` falls inside a rotation.
    pub fn during_rotation(&self, at: Duration) -> bool {
        self.rotations.iter().any(|(a, b)| *a <= at && at <= *b)
    }

    /// Latencies inside and outside rotations.
    pub fn split(&self) -> (Samples, Samples) {
        let (inside, outside): (Vec<Point>, Vec<Point>) = self.points.iter().partition(|p| self.during_rotation(p.at));
        (
            Samples::new(inside.iter().map(|p| p.latency).collect()),
            Samples::new(outside.iter().map(|p| p.latency).collect()),
        )
    }
}

/// `lead` of quiet, then `rotations` rotations `gap` apart, then `lead` again, with requests
/// sent back to back throughout.
///
/// # Errors
/// When a function cannot start or a rotation fails.
pub async fn measure(
    ctx: &Ctx,
    setup: &AppSetup,
    driver: &RotationDriver,
    rotations: usize,
    lead: Duration,
    gap: Duration,
) -> Result<Timeline> {
    let secret = ctx.secret_for(setup, "bench-timeline").await?;
    let items = Environment::start(
        ctx,
        &ctx.bins.items_api,
        "items-api",
        &function::items_api_env(ctx, &secret.arn, &[("ITEMS_API_FRESH_CONNECTION_PER_REQUEST", "true")]),
    )
    .await?;
    let rotator = Environment::start(
        ctx,
        &ctx.bins.rotation,
        "rotation",
        &rotation::rotation_env(ctx, "single-user"),
    )
    .await?;
    items.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    rotator.api.wait_for_first_poll(function::INVOKE_TIMEOUT).await?;
    function::request(&items, Op::List, "first").await?;

    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let requests = async {
        let (mut points, mut failures) = (Vec::new(), Vec::new());
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let queued = Instant::now();
            let result = items
                .api
                .invoke(
                    crate::events::event_bytes(Op::List, &format!("t-{i}")),
                    function::INVOKE_TIMEOUT,
                )
                .await;
            let latency = queued.elapsed();
            let at = queued.saturating_duration_since(started);
            let ok = match &result {
                Ok(inv) if !inv.is_error && function::http_status(inv).is_ok_and(|s| s == 200) => true,
                Ok(inv) => {
                    failures.push(format!(
                        "{:.3} s: {}",
                        at.as_secs_f64(),
                        String::from_utf8_lossy(&inv.body)
                    ));
                    false
                }
                Err(e) => {
                    failures.push(format!("{:.3} s: {e}", at.as_secs_f64()));
                    false
                }
            };
            points.push(Point { at, latency, ok });
            i += 1;
        }
        (points, failures)
    };
    let rotate = async {
        let runner = Timed::new(&rotator);
        let mut windows = Vec::new();
        tokio::time::sleep(lead).await;
        for k in 0..rotations {
            if k > 0 {
                tokio::time::sleep(gap).await;
            }
            let a = started.elapsed();
            let result = driver.rotate(&secret.arn, &runner).await;
            windows.push((a, started.elapsed()));
            if let Err(e) = result {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        tokio::time::sleep(lead).await;
        stop.store(true, Ordering::Relaxed);
        Ok(windows)
    };
    let ((points, failures), windows) = tokio::join!(requests, rotate);
    let windows = windows?;
    items.stop();
    rotator.stop();
    Ok(Timeline {
        points,
        rotations: windows,
        failures,
    })
}
