//! The lines a benchmark prints for `cargo xtask bench`:
//! `DRR-BENCH {figure}`, `DRR-BENCH-COMPARISON {comparison}` and
//! `DRR-BENCH-CHART {growth curve}`, JSON in the shape of drr-stack's
//! `bench::report` and `bench::chart::Chart` types, plus a one-line summary on
//! stderr for whoever runs `cargo bench` by hand.

/// One measured quantity over repeated runs.
pub struct Figure {
    group: &'static str,
    name: String,
    unit: &'static str,
    samples: Vec<f64>,
}

impl Figure {
    /// A figure of `group` named `name`, in `unit`.
    pub fn new(
        group: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        samples: Vec<f64>,
    ) -> Self {
        Figure {
            group,
            name: name.into(),
            unit,
            samples,
        }
    }

    fn json(&self) -> String {
        let samples: Vec<String> = self.samples.iter().map(|s| format!("{s:.3}")).collect();
        format!(
            r#"{{"group":{},"name":{},"unit":{},"samples":[{}]}}"#,
            quote(self.group),
            quote(&self.name),
            quote(self.unit),
            samples.join(",")
        )
    }

    /// Prints the figure's line and its summary.
    pub fn print(&self) {
        println!("DRR-BENCH {}", self.json());
        eprintln!("  {}: {}", self.name, self.summary());
    }

    fn summary(&self) -> String {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted.get(i).copied().unwrap_or(f64::NAN)
        };
        format!(
            "n={} p50={:.1} p99={:.1} min={:.1} max={:.1} {}",
            sorted.len(),
            pick(0.5),
            pick(0.99),
            pick(0.0),
            pick(1.0),
            self.unit
        )
    }
}

/// Prints a comparison of `a` (drr) and `b` (the baseline), measured
/// alternately in one run.
pub fn compare(group: &str, name: &str, a: &Figure, b: &Figure) {
    println!(
        r#"DRR-BENCH-COMPARISON {{"group":{},"name":{},"a":{},"b":{}}}"#,
        quote(group),
        quote(name),
        a.json(),
        b.json()
    );
}

/// Prints a growth curve for `cargo xtask bench` to draw as `file` (SVG):
/// named lines of (x, y) points.
pub fn chart(
    file: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) {
    let series: Vec<String> = series
        .iter()
        .map(|(name, points)| {
            let points: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("[{x:.3},{y:.3}]"))
                .collect();
            format!("[{},[{}]]", quote(name), points.join(","))
        })
        .collect();
    println!(
        r#"DRR-BENCH-CHART {{"file":{},"title":{},"x_desc":{},"y_desc":{},"series":[{}]}}"#,
        quote(file),
        quote(title),
        quote(x_desc),
        quote(y_desc),
        series.join(",")
    );
    eprintln!("  chart {file}: {title}");
}

/// `text` as a JSON string.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
