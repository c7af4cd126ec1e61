//! The results drawn as SVG (plotters' SVG backend only: no font or image
//! libraries of the system): Check latency percentiles per scenario, the
//! propagation CDF, and throughput as a share of echo.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use super::report::Report;

const SIZE: (u32, u32) = (960, 540);
/// Points of the propagation CDF kept (every sample would make a heavy file).
const CDF_POINTS: usize = 2000;

/// Draws every chart into `dir`; returns the files written.
pub(crate) fn draw(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if !report.checks.is_empty() {
        files.push(latency(report, &dir.join("latency.svg"))?);
        files.push(throughput(report, &dir.join("throughput.svg"))?);
    }
    if report.propagation.is_some() {
        files.push(propagation(report, &dir.join("propagation.svg"))?);
    }
    Ok(files)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// Percentile q as "nines": 90 % → 1, 99 % → 2, 99.9 % → 3.
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-5).log10()
}

/// Labels at 1, 2, 3, 4 nines read 90, 99, 99.9, 99.99 (the first point, at 0.3, is p50).
fn percentile_label(x: &f64) -> String {
    if *x < 0.5 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn latency(report: &Report, path: &Path) -> anyhow::Result<PathBuf> {
    let series: Vec<(String, Vec<(f64, f64)>)> = report
        .checks
        .iter()
        .map(|c| {
            let points = c.moderate.latency.curve.iter().filter(|(q, _)| *q < 1.0).map(|&(q, us)| (nines(q), us));
            (format!("{} @ {:.0}/s", c.title, c.rate), points.collect())
        })
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
    let (lo, hi) = all.fold((f64::MAX, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (lo, hi) = ((lo / 1.5).max(1.0), (hi * 1.5).max(10.0));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Check latency at a fixed rate (open loop)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..4.2f64, (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs, log)")
        .x_labels(5)
        .x_label_formatter(&percentile_label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_err)?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(path.to_owned())
}

fn propagation(report: &Report, path: &Path) -> anyhow::Result<PathBuf> {
    let p = report.propagation.as_ref().ok_or_else(|| anyhow!("no propagation results"))?;
    let n = p.samples_ms.len().max(1);
    let step = n.div_ceil(CDF_POINTS);
    let mut points: Vec<(f64, f64)> =
        p.samples_ms.iter().enumerate().step_by(step).map(|(i, &ms)| (ms, (i + 1) as f64 / n as f64)).collect();
    if let Some(&last) = p.samples_ms.last() {
        points.push((last, 1.0));
    }
    let xmax = (p.max_ms * 1.05).max(1.0);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let caption = format!("Revocation propagation to {} verifiers ({} revocations)", p.verifiers, p.revocations);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..1.0f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(format!("ms from Revoke returning to applied (Status polled every {} ms)", p.poll_ms))
        .y_desc("share of (verifier, revocation)")
        .draw()
        .map_err(plot_err)?;
    chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2))).map_err(plot_err)?;
    let p99 = vec![(p.p99_ms, 0.0), (p.p99_ms, 1.0)];
    chart
        .draw_series(LineSeries::new(p99, RED.mix(0.6)))
        .map_err(plot_err)?
        .label(format!("p99 {:.2} ms", p.p99_ms))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(path.to_owned())
}

fn throughput(report: &Report, path: &Path) -> anyhow::Result<PathBuf> {
    let echo = report.check("echo").map_or(f64::NAN, |e| e.saturation.throughput);
    let bars: Vec<(String, f64)> =
        report.checks.iter().map(|c| (c.title.clone(), c.saturation.throughput / echo)).collect();
    let xmax = bars.iter().map(|b| b.1).filter(|r| r.is_finite()).fold(1.0f64, f64::max) * 1.15;
    let root = SVGBackend::new(path, (SIZE.0, 80 + 50 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Saturation throughput as a share of echo ({echo:.0} req/s)"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..xmax, 0f64..bars.len() as f64)
        .map_err(plot_err)?;
    chart.configure_mesh().disable_y_mesh().disable_y_axis().x_desc("× echo").draw().map_err(plot_err)?;
    let n = bars.len() as f64;
    for (i, (name, ratio)) in bars.iter().enumerate() {
        let y = n - 1.0 - i as f64;
        let color = Palette99::pick(i).to_rgba();
        let ratio = if ratio.is_finite() { *ratio } else { 0.0 };
        chart.draw_series([Rectangle::new([(0.0, y + 0.2), (ratio, y + 0.8)], color.filled())]).map_err(plot_err)?;
        let label = format!("{name}: {ratio:.2}");
        chart.draw_series([Text::new(label, (0.01 * xmax, y + 0.62), ("sans-serif", 15))]).map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(path.to_owned())
}
