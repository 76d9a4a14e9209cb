//! Growth curves as SVG line charts: how a cost grows with a size (replica
//! count, suite size, ...), one line per series, drawn from the medians in
//! the report alone, so the same data always gives the same file.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// Chart size in pixels.
const SIZE: (u32, u32) = (800, 450);

/// Series colours (the "tab10" set).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One growth curve chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// File name in the report's directory, e.g. `growth-cold-up.svg`.
    pub file: String,
    /// Title over the chart.
    pub title: String,
    /// What x is, with its unit.
    pub x_desc: String,
    /// What y is, with its unit.
    pub y_desc: String,
    /// Named lines of (x, y) points.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg)
            .map_err(|e| anyhow!("cannot draw {}: {e}", self.file))?;
        Ok(svg)
    }

    fn draw<'a>(&self, svg: &'a mut String) -> Result<(), Box<dyn std::error::Error + 'a>> {
        let points = self.series.iter().flat_map(|(_, p)| p.iter());
        let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
        let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max * 1.05, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        for (i, (name, points)) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_drawn_and_named() {
        let chart = Chart {
            file: "growth.svg".into(),
            title: "cold up".into(),
            x_desc: "replicas".into(),
            y_desc: "ms".into(),
            series: vec![
                ("total".into(), vec![(1.0, 500.0), (8.0, 2000.0)]),
                ("copy".into(), vec![(1.0, 300.0), (8.0, 1500.0)]),
            ],
        };
        let svg = chart.svg().expect("an SVG");
        assert!(svg.starts_with("<svg"), "{svg}");
        for label in ["cold up", "total", "copy", "replicas"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert_eq!(svg, chart.svg().expect("an SVG"), "not deterministic");
    }
}
