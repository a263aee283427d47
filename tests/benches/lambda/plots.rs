//! The SVG figures under `docs/benchmarks/`.

use crate::{
    Result,
    report::Results,
    stats::{Samples, ms, us},
};
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (900, 480);
const FONT: &str = "sans-serif";
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws every figure into `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn draw(r: &Results, dir: &Path) -> Result<()> {
    warm(r, &dir.join("warm-latency.svg"))?;
    cold(r, &dir.join("cold-start.svg"))?;
    concurrency(r, &dir.join("concurrency.svg"))?;
    timeline(r, &dir.join("rotation-timeline.svg"))?;
    pool(r, &dir.join("pool.svg"))?;
    Ok(())
}

/// (value, cumulative fraction) points of a distribution, thinned to at most ~400 points.
fn cdf(s: &Samples, scale: fn(std::time::Duration) -> f64) -> Vec<(f64, f64)> {
    let n = s.len();
    let step = (n / 400).max(1);
    s.sorted()
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i == n - 1)
        .map(|(i, d)| (scale(*d), (i + 1) as f64 / n as f64))
        .collect()
}

fn warm(r: &Results, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let all: Vec<f64> = r
        .warm
        .iter()
        .flat_map(|t| [t.sql.quantile(0.001), t.handler.p99(), t.sql.p99(), t.invocation.p99()])
        .map(us)
        .collect();
    let lo = all.iter().copied().fold(f64::MAX, f64::min).max(1.0) * 0.8;
    let hi = all.iter().copied().fold(0.0, f64::max) * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Warm requests in process: the SQL alone (dashed) and through the handler (solid)",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale; up to p99)")
        .y_desc("fraction of requests")
        .draw()?;
    for (t, color) in r.warm.iter().zip(PALETTE) {
        let clip = |pts: Vec<(f64, f64)>| pts.into_iter().filter(|(x, _)| *x <= hi).collect::<Vec<_>>();
        chart
            .draw_series(DashedLineSeries::new(
                clip(cdf(&t.sql, us)),
                6,
                4,
                color.stroke_width(2),
            ))?
            .label(format!("{} SQL", t.op.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
        chart
            .draw_series(LineSeries::new(clip(cdf(&t.handler, us)), color.stroke_width(2)))?
            .label(format!("{} handler", t.op.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}

fn cold(r: &Results, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let app = r.cold.app_totals();
    let floor = r.cold.floor_totals();
    let hi = ms(app.max().max(floor.max())) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fresh process to first answer: release items-api against the floor",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..hi.max(1.0), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("start to answer (ms)")
        .y_desc("fraction of runs")
        .draw()?;
    for (name, s, color) in [
        ("items-api (release)", &app, PALETTE[0]),
        ("floor (cold-floor)", &floor, PALETTE[1]),
    ] {
        let mut pts = vec![(0.0, 0.0)];
        // A step function: each run lifts the curve.
        for (x, y) in cdf(s, ms) {
            let prev = pts.last().map_or(0.0, |p| p.1);
            pts.push((x, prev));
            pts.push((x, y));
        }
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(format!("{name}: median {:.1} ms", ms(s.median())))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}

fn concurrency(r: &Results, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let max_n = r.concurrency_in_process.iter().map(|c| c.n).max().unwrap_or(1) as f64;
    let series = [
        ("in process", &r.concurrency_in_process, PALETTE[0]),
        ("release binary", &r.concurrency_binary, PALETTE[1]),
    ];
    let max_tp = series
        .iter()
        .flat_map(|(_, s, _)| s.iter().map(|c| c.throughput))
        .fold(0.0, f64::max)
        * 1.15;
    let mut tp = ChartBuilder::on(&left)
        .caption("Throughput", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..max_n + 0.5, 0.0..max_tp.max(1.0))?;
    tp.configure_mesh()
        .x_desc("concurrent invocations")
        .y_desc("requests per second")
        .draw()?;
    for (name, s, color) in series {
        let pts: Vec<(f64, f64)> = s.iter().map(|c| (c.n as f64, c.throughput)).collect();
        tp.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        tp.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    tp.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;

    let lat: Vec<f64> = series
        .iter()
        .flat_map(|(_, s, _)| s.iter().flat_map(|c| [us(c.latency.median()), us(c.latency.p99())]))
        .collect();
    let lo = lat.iter().copied().fold(f64::MAX, f64::min).max(1.0) * 0.7;
    let hi = lat.iter().copied().fold(0.0, f64::max) * 1.5;
    let mut lt = ChartBuilder::on(&right)
        .caption("Latency: median (solid), p99 (dashed)", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..max_n + 0.5, (lo..hi.max(lo * 2.0)).log_scale())?;
    lt.configure_mesh()
        .x_desc("concurrent invocations")
        .y_desc("latency (µs, log scale)")
        .draw()?;
    for (_, s, color) in series {
        let med: Vec<(f64, f64)> = s.iter().map(|c| (c.n as f64, us(c.latency.median()))).collect();
        let p99: Vec<(f64, f64)> = s.iter().map(|c| (c.n as f64, us(c.latency.p99()))).collect();
        lt.draw_series(LineSeries::new(med, color.stroke_width(2)))?;
        lt.draw_series(DashedLineSeries::new(p99, 6, 4, color.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}

fn timeline(r: &Results, path: &Path) -> Result<()> {
    let t = &r.timeline;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let end = t.points.last().map_or(1.0, |p| p.at.as_secs_f64()) + 0.2;
    let hi = t.points.iter().map(|p| ms(p.latency)).fold(0.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "GET /items?limit=50, a new connection each, while rotations run (shaded)",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..hi.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()?;
    chart.draw_series(t.rotations.iter().map(|(a, b)| {
        Rectangle::new(
            [(a.as_secs_f64(), 0.0), (b.as_secs_f64(), hi.max(1.0))],
            PALETTE[1].mix(0.15).filled(),
        )
    }))?;
    chart
        .draw_series(
            t.points
                .iter()
                .filter(|p| p.ok)
                .map(|p| Circle::new((p.at.as_secs_f64(), ms(p.latency)), 2, PALETTE[0].filled())),
        )?
        .label("answered 200")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, PALETTE[0].filled()));
    let failed: Vec<_> = t.points.iter().filter(|p| !p.ok).collect();
    if !failed.is_empty() {
        chart
            .draw_series(
                failed
                    .iter()
                    .map(|p| Cross::new((p.at.as_secs_f64(), ms(p.latency)), 5, PALETTE[1].stroke_width(2))),
            )?
            .label("failed")
            .legend(|(x, y)| Cross::new((x + 10, y), 4, PALETTE[1].stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}

fn pool(r: &Results, path: &Path) -> Result<()> {
    let p = &r.pool;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let base = ms(p.single_query.median());
    let max_k = p.runs.iter().map(|r| r.size).max().unwrap_or(1) as f64;
    let best = |k: f64| {
        if base > 0.0 {
            k.min(crate::scale::CONCURRENT as f64) * 1e3 / base
        } else {
            0.0
        }
    };
    let max_tp = p
        .runs
        .iter()
        .map(|r| r.throughput.max(best(r.size as f64)))
        .fold(0.0, f64::max)
        * 1.15;
    let mut tp = ChartBuilder::on(&left)
        .caption("Throughput, 16 concurrent invocations", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_k + 1.0, 0.0..max_tp.max(1.0))?;
    tp.configure_mesh()
        .x_desc("DB_POOL_SIZE")
        .y_desc("requests per second")
        .draw()?;
    let measured: Vec<(f64, f64)> = p.runs.iter().map(|r| (r.size as f64, r.throughput)).collect();
    let ideal: Vec<(f64, f64)> = p.runs.iter().map(|r| (r.size as f64, best(r.size as f64))).collect();
    tp.draw_series(LineSeries::new(measured.clone(), PALETTE[0].stroke_width(2)))?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[0].stroke_width(2)));
    tp.draw_series(measured.into_iter().map(|q| Circle::new(q, 3, PALETTE[0].filled())))?;
    tp.draw_series(DashedLineSeries::new(ideal, 6, 4, PALETTE[2].stroke_width(2)))?
        .label("size / single query's time")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[2].stroke_width(2)));
    tp.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;

    let hi = p.runs.iter().map(|r| ms(r.latency.p99())).fold(base * 1.3, f64::max) * 1.5;
    let lo = (base * 0.5).max(0.1);
    let mut lt = ChartBuilder::on(&right)
        .caption("Latency: median (solid), p99 (dashed)", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_k + 1.0, (lo..hi.max(lo * 2.0)).log_scale())?;
    lt.configure_mesh()
        .x_desc("DB_POOL_SIZE")
        .y_desc("latency (ms, log scale)")
        .draw()?;
    let med: Vec<(f64, f64)> = p.runs.iter().map(|r| (r.size as f64, ms(r.latency.median()))).collect();
    let p99: Vec<(f64, f64)> = p.runs.iter().map(|r| (r.size as f64, ms(r.latency.p99()))).collect();
    lt.draw_series(LineSeries::new(med.clone(), PALETTE[0].stroke_width(2)))?
        .label("through items-api")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[0].stroke_width(2)));
    lt.draw_series(med.into_iter().map(|q| Circle::new(q, 3, PALETTE[0].filled())))?;
    lt.draw_series(DashedLineSeries::new(p99, 6, 4, PALETTE[0].stroke_width(2)))?;
    lt.draw_series(LineSeries::new(
        vec![(0.0, base), (max_k + 1.0, base)],
        PALETTE[2].stroke_width(1),
    ))?
    .label("single query's time")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[2].stroke_width(1)));
    lt.draw_series(DashedLineSeries::new(
        vec![(0.0, base * 1.3), (max_k + 1.0, base * 1.3)],
        4,
        4,
        PALETTE[1].stroke_width(1),
    ))?
    .label("goal: 1.3× the single query")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[1].stroke_width(1)));
    lt.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}
