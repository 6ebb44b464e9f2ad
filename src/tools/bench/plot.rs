//! `aigw bench --plot FILE.svg`: the run drawn as three charts, one above the other — calls per second over
//! time (OK and errors), latency p50 and p99 over time, and latency by percentile (0 to 99.999, spaced in
//! "nines" so the tail gets the room it deserves). SVG from plotters, text as SVG text: no fonts needed.

use plotters::prelude::*;

use super::Report;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 960;

/// The report as an SVG document.
pub fn svg(report: &Report) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, report).map_err(|e| format!("plotting: {e}"))?;
        root.present().map_err(|e| format!("plotting: {e}"))?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Failed = Box<dyn std::error::Error>;

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a float to an integer: `as` saturates, NaN is 0"
)]
fn draw(root: &Area<'_>, r: &Report) -> Result<(), Failed> {
    root.fill(&WHITE)?;
    let s = &r.setup;
    let title = format!(
        "aigw bench: {} {} -> {} ({} calls, {:.1}/s)",
        s.protocol, s.rpc, s.target, r.calls, r.throughput_per_s
    );
    let (top, rest) = root.split_vertically(30);
    top.draw(&Text::new(title, (10, 8), ("sans-serif", 16)))?;
    let panels = rest.split_evenly((3, 1));
    let end = r.timeline.last().map_or(1.0, |s| s.t).max(1.0);

    // 1. Calls per second.
    let per_s = |n: u64, i: usize| {
        let width = r.timeline[i].t - if i == 0 { 0.0 } else { r.timeline[i - 1].t };
        n as f64 / width.max(1e-3)
    };
    let ok: Vec<(f64, f64)> = (0..r.timeline.len())
        .map(|i| (r.timeline[i].t, per_s(r.timeline[i].ok, i)))
        .collect();
    let errors: Vec<(f64, f64)> = (0..r.timeline.len())
        .map(|i| (r.timeline[i].t, per_s(r.timeline[i].errors, i)))
        .collect();
    let top_rate = ok.iter().chain(&errors).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut c = chart(&panels[0], "Calls per second", 0.0..end, 0.0..top_rate)?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_desc("calls/s")
        .draw()?;
    series(&mut c, ok, RGBColor(0x2e, 0x9e, 0x44), "OK")?;
    series(&mut c, errors, RED, "errors")?;
    c.configure_series_labels().border_style(BLACK).draw()?;

    // 2. Latency over time.
    let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
    let p50: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .filter_map(|s| Some((s.t, ms(s.p50_us)?)))
        .collect();
    let p99: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .filter_map(|s| Some((s.t, ms(s.p99_us)?)))
        .collect();
    let top_ms = p99.iter().map(|p| p.1).fold(0.001, f64::max) * 1.1;
    let mut c = chart(&panels[1], "Latency over time", 0.0..end, 0.0..top_ms)?;
    c.configure_mesh().x_desc("seconds").y_desc("ms").draw()?;
    series(&mut c, p50, BLUE, "p50")?;
    series(&mut c, p99, MAGENTA, "p99")?;
    c.configure_series_labels().border_style(BLACK).draw()?;

    // 3. Latency by percentile, x in nines: -log10(1 - q).
    let nines = |pct: f64| -(1.0 - pct / 100.0).max(1e-5).log10();
    let curve: Vec<(f64, f64)> = r
        .latency_curve
        .iter()
        .map(|&(pct, us)| (nines(pct), us / 1000.0))
        .collect();
    let top_ms = curve.iter().map(|p| p.1).fold(0.001, f64::max) * 1.1;
    let mut c = chart(&panels[2], "Latency by percentile", 0.0..5.0, 0.0..top_ms)?;
    c.configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_labels(6)
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "0".into(),
            1 => "90".into(),
            2 => "99".into(),
            3 => "99.9".into(),
            4 => "99.99".into(),
            _ => "99.999".into(),
        })
        .draw()?;
    series(&mut c, curve, BLUE, "latency")?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Failed> {
    Ok(ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?)
}

fn series(
    c: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: &str,
) -> Result<(), Failed> {
    c.draw_series(LineSeries::new(points, color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}
