//! The benchmark report: figures (median, min and max over repeated runs),
//! comparisons measured side by side, and the machine they ran on.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::chart::Chart;

/// Prefix of a line a benchmark binary prints to hand a figure to
/// `cargo xtask bench` (the rest of the line is a [`Figure`] as JSON).
pub const FIGURE_LINE: &str = "DRR-BENCH ";
/// Prefix of a line carrying a [`Comparison`] as JSON.
pub const COMPARISON_LINE: &str = "DRR-BENCH-COMPARISON ";
/// Prefix of a line carrying a growth curve ([`Chart`]) as JSON.
pub const CHART_LINE: &str = "DRR-BENCH-CHART ";

/// One measured quantity over repeated runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Section of the report, e.g. `stack`.
    pub group: String,
    /// What was measured, e.g. `cold up, primary + 2 replicas`.
    pub name: String,
    /// Unit of the samples, e.g. `ms`.
    pub unit: String,
    /// One value per run.
    pub samples: Vec<f64>,
}

/// Two figures measured alternately in one run, and how they compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Section of the report.
    pub group: String,
    /// What is compared.
    pub name: String,
    /// The first alternative (usually drr).
    pub a: Figure,
    /// The second alternative (usually the baseline).
    pub b: Figure,
}

/// Where the numbers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Postgres server version.
    pub postgres: String,
    /// `git rev-parse HEAD` of the workspace.
    pub commit: String,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// The load average (1, 5 and 15 minutes) at the start and at the end
    /// of the run: other work on the machine skews every figure.
    #[serde(default)]
    pub load: String,
}

/// What a run's parts collect, in order: the report's figures,
/// comparisons and charts.
#[derive(Debug, Default)]
pub struct Results {
    /// Every figure.
    pub figures: Vec<Figure>,
    /// Every side-by-side comparison.
    pub comparisons: Vec<Comparison>,
    /// Growth curves.
    pub charts: Vec<Chart>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// Every figure, in order.
    pub figures: Vec<Figure>,
    /// Every side-by-side comparison.
    pub comparisons: Vec<Comparison>,
    /// Growth curves, drawn as SVG files next to the report.
    #[serde(default)]
    pub charts: Vec<Chart>,
    /// How long each part took, then `total`, in seconds.
    #[serde(default)]
    pub took: Vec<(String, f64)>,
}

/// Median, p99 (nearest rank), min and max of a figure's samples (`None`
/// when empty).
pub fn stats(samples: &[f64]) -> Option<(f64, f64, f64, f64)> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some((
        median,
        crate::probe::percentile(&sorted, 99.0),
        sorted[0],
        sorted[n - 1],
    ))
}

impl Comparison {
    /// B / A. When A and B have one sample per alternating round (equal
    /// counts), the median of the per-round ratios, which a drift in the
    /// machine's load between rounds does not skew; otherwise the ratio of
    /// the medians.
    pub fn ratio(&self) -> Option<f64> {
        let paired = self.a.samples.len() == self.b.samples.len();
        if paired {
            let ratios: Vec<f64> = self
                .a
                .samples
                .iter()
                .zip(&self.b.samples)
                .map(|(a, b)| b / a)
                .collect();
            return stats(&ratios).map(|(median, ..)| median);
        }
        let (a, ..) = stats(&self.a.samples)?;
        let (b, ..) = stats(&self.b.samples)?;
        Some(b / a)
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::from("# drr benchmark report\n\n");
        let _ = writeln!(
            out,
            "Machine: {}, {} cores, {:.0} GiB; PostgreSQL {}; commit {}{}.\n",
            m.cpu,
            m.cores,
            m.memory_gib,
            m.postgres,
            m.commit,
            if m.quick {
                "; `--quick` (a smoke run: dev profile, few runs; not for comparison)"
            } else {
                ""
            }
        );
        if !m.load.is_empty() {
            let _ = writeln!(out, "Load average (1, 5, 15 min): {}.\n", m.load);
        }
        if let Some(((_, total), parts)) = self.took.split_last() {
            let parts: Vec<String> = parts
                .iter()
                .map(|(part, s)| format!("{part} {s:.1} s"))
                .collect();
            let seconds = total.round() as u64;
            let _ = writeln!(
                out,
                "The run took {} min {} s ({}).\n",
                seconds / 60,
                seconds % 60,
                parts.join(", ")
            );
        }
        out.push_str(
            "Each figure is the median over its runs (or samples), with p99, min and max.\n",
        );
        let mut groups: Vec<&str> = self.figures.iter().map(|f| f.group.as_str()).collect();
        groups.extend(self.comparisons.iter().map(|c| c.group.as_str()));
        groups.dedup();
        let mut seen = Vec::new();
        for group in groups {
            if seen.contains(&group) {
                continue;
            }
            seen.push(group);
            let _ = writeln!(out, "\n## {group}\n");
            let figures: Vec<&Figure> = self.figures.iter().filter(|f| f.group == group).collect();
            if !figures.is_empty() {
                out.push_str("| figure | median | p99 | min | max | unit | runs |\n|---|---:|---:|---:|---:|---|---:|\n");
                for f in figures {
                    if let Some((median, p99, min, max)) = stats(&f.samples) {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} | {} | {} | {} | {} |",
                            f.name,
                            number(median),
                            number(p99),
                            number(min),
                            number(max),
                            f.unit,
                            f.samples.len()
                        );
                    }
                }
            }
            let comparisons: Vec<&Comparison> = self
                .comparisons
                .iter()
                .filter(|c| c.group == group)
                .collect();
            if !comparisons.is_empty() {
                out.push_str(
                    "\n| comparison (measured alternately) | A | median A | B | median B | B / A (median of per-round ratios when paired) |\n|---|---|---:|---|---:|---:|\n",
                );
                for c in comparisons {
                    if let (Some((a, ..)), Some((b, ..)), Some(ratio)) =
                        (stats(&c.a.samples), stats(&c.b.samples), c.ratio())
                    {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} {} | {} | {} {} | {:.2} |",
                            c.name,
                            c.a.name,
                            number(a),
                            c.a.unit,
                            c.b.name,
                            number(b),
                            c.b.unit,
                            ratio
                        );
                    }
                }
            }
        }
        if !self.charts.is_empty() {
            out.push_str("\n## Growth curves\n\n");
            for chart in &self.charts {
                let _ = writeln!(out, "- [{}]({}): medians", chart.title, chart.file);
                for (name, points) in &chart.series {
                    let points: Vec<String> = points
                        .iter()
                        .map(|(x, y)| format!("{x} → {}", number(*y)))
                        .collect();
                    let _ = writeln!(out, "  - {name}: {}", points.join(", "));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), Some((2.0, 3.0, 1.0, 3.0)));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 4.0, 1.0, 4.0)));
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn markdown_has_a_row_per_figure_and_a_ratio_per_comparison() {
        let figure = |name: &str, samples: Vec<f64>| Figure {
            group: "stack".into(),
            name: name.into(),
            unit: "ms".into(),
            samples,
        };
        let report = Report {
            machine: Machine {
                cpu: "cpu".into(),
                cores: 2,
                memory_gib: 24.0,
                postgres: "15.18".into(),
                commit: "abc".into(),
                quick: true,
                load: "1.00 0.50 0.25 at the start, 2.00 1.00 0.50 at the end".into(),
            },
            figures: vec![figure("cold up", vec![500.0, 700.0, 600.0])],
            comparisons: vec![Comparison {
                group: "stack".into(),
                name: "start-up".into(),
                a: figure("drr", vec![500.0]),
                b: figure("script", vec![1500.0]),
            }],
            charts: Vec::new(),
            took: vec![("stack".into(), 61.5), ("total".into(), 125.0)],
        };
        let md = report.markdown();
        assert!(
            md.contains("The run took 2 min 5 s (stack 61.5 s)."),
            "{md}"
        );
        assert!(md.contains("1.00 0.50 0.25 at the start"), "{md}");
        assert!(
            md.contains("| cold up | 600 | 700 | 500 | 700 | ms | 3 |"),
            "{md}"
        );
        assert!(md.contains("| 3.00 |"), "{md}");
        assert_eq!(md.matches("## stack").count(), 1);
    }

    #[test]
    fn paired_rounds_give_the_median_of_their_ratios() {
        let figure = |samples: Vec<f64>| Figure {
            group: "g".into(),
            name: "n".into(),
            unit: "q/s".into(),
            samples,
        };
        // Per-round ratios 0.6, 0.375 and 2; the ratio of the medians
        // would be 150 / 400.
        let paired = Comparison {
            group: "g".into(),
            name: "paired".into(),
            a: figure(vec![100.0, 400.0, 1000.0]),
            b: figure(vec![60.0, 150.0, 2000.0]),
        };
        assert_eq!(paired.ratio(), Some(0.6));
        let unpaired = Comparison {
            b: figure(vec![800.0, 1200.0]),
            ..paired
        };
        assert_eq!(unpaired.ratio(), Some(2.5));
    }
}
