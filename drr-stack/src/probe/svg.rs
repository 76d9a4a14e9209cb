//! Lag over time as an SVG chart, drawn from a [`ProbeReport`] alone: one
//! line per replica, a dashed line at each replica's configured delay, and
//! no date or run id, so the same data always gives the same file.

use anyhow::{Result, anyhow};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::report::ProbeReport;

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 540);

/// Series colours, strong enough on white to tell apart (the "tab10" set).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Renders the report's samples: x = seconds since the probe started
/// writing, y = visibility lag in ms.
pub fn render(report: &ProbeReport) -> Result<String> {
    let mut svg = String::new();
    draw(report, &mut svg).map_err(|e| anyhow!("cannot draw the lag chart: {e}"))?;
    Ok(svg)
}

fn draw<'a>(
    report: &ProbeReport,
    svg: &'a mut String,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let (x_max, (y_min, y_max)) = ranges(report);
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{}: visibility lag per replica ({} markers, every {} ms)",
        report.stack,
        report.markers,
        report.interval_ms.round()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the probe started (write time)")
        .y_desc("lag (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, replica) in report.replicas.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = replica
            .samples
            .iter()
            .map(|s| (s.written_s, s.lag_ms))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(replica.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
        let delay = replica.delay_ms;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, delay), (x_max, delay)],
                6,
                4,
                color.stroke_width(1),
            ))?
            .label(format!("{} delay ({} ms)", replica.name, delay.round()))
            .legend(move |(x, y)| {
                DashedPathElement::new([(x, y), (x + 20, y)], 4, 3, color.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The x range end (seconds) and the y range (ms): every sample and every
/// delay line, padded so lines do not sit on the frame.
fn ranges(report: &ProbeReport) -> (f64, (f64, f64)) {
    let samples = report.replicas.iter().flat_map(|r| &r.samples);
    let x_max = samples
        .clone()
        .map(|s| s.written_s)
        .fold(report.duration_ms / 1000.0, f64::max)
        .max(0.1);
    let ys = samples
        .map(|s| s.lag_ms)
        .chain(report.replicas.iter().map(|r| r.delay_ms));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !lo.is_finite() {
        return (x_max, (0.0, 1000.0));
    }
    let pad = ((hi - lo) * 0.08).max(5.0);
    (x_max, ((lo - pad).max(0.0), hi + pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_series_and_one_delay_line_per_replica() {
        let report = crate::probe::tests::report();
        let svg = render(&report).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for replica in &report.replicas {
            assert!(
                svg.contains(&format!(">\n{}\n<", replica.name)),
                "legend of {}: {svg}",
                replica.name
            );
            assert!(svg.contains(&format!("{} delay (", replica.name)));
        }
        assert!(svg.contains("seconds since the probe started"));
        assert!(svg.contains("drr: visibility lag per replica"));
        // Two replicas: two solid series plus two dashed delay lines (the
        // dashed ones are many short segments).
        assert!(svg.matches("<polyline").count() >= 4, "{svg}");
    }

    #[test]
    fn same_report_same_file() {
        let report = crate::probe::tests::report();
        assert_eq!(render(&report).unwrap(), render(&report).unwrap());
    }

    #[test]
    fn empty_report_still_renders() {
        let mut report = crate::probe::tests::report();
        for r in &mut report.replicas {
            r.samples.clear();
        }
        let svg = render(&report).unwrap();
        assert!(svg.contains("</svg>"));
    }
}
