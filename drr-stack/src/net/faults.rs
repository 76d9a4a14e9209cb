//! What `cargo xtask net`, `partition` and `heal` do to a link's toxics,
//! as pure functions: parsing and checking values, editing the list of
//! toxics, and describing it in a few words.
//!
//! The commands name their toxics as Toxiproxy's clients do (`latency`,
//! `bandwidth`, `partition_upstream`, `partition_downstream`), so the API
//! shows them and can remove them; toxics added over the API under other
//! names are shown and kept until `heal`.

use std::time::Duration;

use super::toxic::{Kind, Stream, Toxic};

/// The largest latency or jitter the commands accept.
pub const MAX_LATENCY: Duration = Duration::from_secs(10 * 60);
/// The slowest and fastest bandwidth limits, in bytes per second.
pub const BANDWIDTH_RANGE: std::ops::RangeInclusive<u64> = 1_000..=100_000_000_000;

/// The toxic `cargo xtask net --latency` sets.
pub const LATENCY: &str = "latency";
/// The toxic `cargo xtask net --bandwidth` sets.
pub const BANDWIDTH: &str = "bandwidth";
/// The toxics `cargo xtask partition` sets, one per direction.
pub const PARTITION: [&str; 2] = ["partition_upstream", "partition_downstream"];

/// How a partition cuts a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Connections stay open and nothing gets through, either way (reads
    /// hang): Toxiproxy's `timeout` toxic with timeout 0.
    #[default]
    Blackhole,
    /// Every connection is reset (TCP RST), new ones at once: Toxiproxy's
    /// `reset_peer` toxic.
    Reset,
}

/// A change `cargo xtask net` makes to a link's toxics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// New latency (zero removes it), with its jitter.
    pub latency: Option<(Duration, Duration)>,
    /// New bandwidth limit in bytes per second (`Some(None)` removes it).
    pub bandwidth: Option<Option<u64>>,
}

impl Change {
    /// Checks `latency`, `jitter` and `bandwidth` as the flags give them.
    pub fn new(
        latency: Option<Duration>,
        jitter: Option<Duration>,
        bandwidth: Option<&str>,
    ) -> Result<Change, String> {
        for (flag, value) in [("--latency", latency), ("--jitter", jitter)] {
            if let Some(value) = value.filter(|v| *v > MAX_LATENCY) {
                return Err(format!(
                    "{flag} {} is more than drr allows ({}); use a smaller value",
                    humantime::format_duration(value),
                    humantime::format_duration(MAX_LATENCY)
                ));
            }
        }
        let latency = match (latency, jitter) {
            (Some(latency), jitter) => Some((latency, jitter.unwrap_or_default())),
            (None, Some(_)) => {
                return Err(
                    "--jitter needs --latency: jitter spreads a latency, give both (e.g. \
                     `--latency 80ms --jitter 10ms`)"
                        .to_owned(),
                );
            }
            (None, None) => None,
        };
        let bandwidth = bandwidth.map(parse_bandwidth).transpose()?;
        Ok(Change { latency, bandwidth })
    }

    /// Whether the change sets anything.
    pub fn is_empty(&self) -> bool {
        self.latency.is_none() && self.bandwidth.is_none()
    }

    /// Applies the change to a link's toxics.
    pub fn apply(&self, toxics: &mut Vec<Toxic>) {
        if let Some((latency, jitter)) = self.latency {
            let kind = (!latency.is_zero()).then_some(Kind::Latency {
                latency: latency.as_millis() as u64,
                jitter: jitter.as_millis() as u64,
            });
            replace(toxics, LATENCY, kind, Stream::Downstream);
        }
        if let Some(bandwidth) = self.bandwidth {
            let kind = bandwidth.map(|bytes| Kind::Bandwidth {
                rate: (bytes / 1000).max(1),
            });
            replace(toxics, BANDWIDTH, kind, Stream::Downstream);
        }
    }
}

/// Parses a bandwidth: `off`, or a number with a unit: `kbit`, `mbit`,
/// `gbit` (bits per second) or `kb`, `mb`, `gb` (bytes per second); bytes
/// per second in range, or `None` for `off`.
pub fn parse_bandwidth(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit.to_ascii_lowercase().as_str() {
        "kbit" => 125.0,
        "mbit" => 125_000.0,
        "gbit" => 125_000_000.0,
        "kb" => 1_000.0,
        "mb" => 1_000_000.0,
        "gb" => 1_000_000_000.0,
        _ => f64::NAN,
    };
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    let bytes = value * factor;
    if !bytes.is_finite() {
        return Err(format!(
            "--bandwidth `{text}` is not a bandwidth; write e.g. `1mbit`, `512kbit`, `10mb` \
             (bytes per second) or `off`"
        ));
    }
    let bytes = bytes as u64;
    if !BANDWIDTH_RANGE.contains(&bytes) {
        return Err(format!(
            "--bandwidth `{text}` is outside what drr allows (8kbit to 800gbit); use a value in range"
        ));
    }
    Ok(Some(bytes))
}

/// Cuts a link: the partition toxics of `mode` on both directions.
pub fn partition(toxics: &mut Vec<Toxic>, mode: Mode) {
    let (streams, kind) = match mode {
        Mode::Blackhole => (
            [Stream::Upstream, Stream::Downstream],
            Kind::Timeout { timeout: 0 },
        ),
        Mode::Reset => (
            [Stream::Upstream, Stream::Downstream],
            Kind::ResetPeer { timeout: 0 },
        ),
    };
    for (name, stream) in PARTITION.iter().zip(streams) {
        replace(toxics, name, Some(kind.clone()), stream);
    }
}

/// Whether `toxics` cut the link (a blackhole or a reset, either way).
pub fn cuts(toxics: &[Toxic]) -> bool {
    toxics
        .iter()
        .any(|t| matches!(t.kind, Kind::Timeout { .. } | Kind::ResetPeer { .. }))
}

/// Replaces (or with `None` removes) the toxic called `name`.
fn replace(toxics: &mut Vec<Toxic>, name: &str, kind: Option<Kind>, stream: Stream) {
    toxics.retain(|t| t.name != name);
    if let Some(kind) = kind {
        toxics.push(Toxic::new(name, kind, stream));
    }
}

/// A link's toxics in a few words, e.g. `latency 80ms ±10ms, 125 KB/s`;
/// `none` without toxics.
pub fn describe(toxics: &[Toxic]) -> String {
    if toxics.is_empty() {
        return "none".to_owned();
    }
    let mut words: Vec<String> = Vec::new();
    for toxic in toxics {
        let (word, cut) = match &toxic.kind {
            Kind::Latency { latency, jitter: 0 } => (format!("latency {latency}ms"), false),
            Kind::Latency { latency, jitter } => {
                (format!("latency {latency}ms ±{jitter}ms"), false)
            }
            Kind::Bandwidth { rate } => (format!("{rate} KB/s"), false),
            Kind::Timeout { timeout: 0 } => ("blackhole".to_owned(), true),
            Kind::Timeout { timeout } => (format!("blackhole, closed after {timeout}ms"), true),
            Kind::ResetPeer { .. } => ("reset".to_owned(), true),
        };
        let word = match toxic.stream {
            Stream::Upstream => format!("{word} (upstream)"),
            Stream::Downstream if cut => format!("{word} (downstream)"),
            Stream::Downstream => word,
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    // A cut of both directions reads as one word.
    for cut in ["blackhole", "reset"] {
        let both = [format!("{cut} (upstream)"), format!("{cut} (downstream)")];
        if both.iter().all(|w| words.contains(w)) {
            words.retain(|w| !both.contains(w));
            words.push(cut.to_owned());
        }
    }
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_parse_in_bits_or_bytes_and_stay_in_range() {
        assert_eq!(parse_bandwidth("1mbit"), Ok(Some(125_000)));
        assert_eq!(parse_bandwidth("512kbit"), Ok(Some(64_000)));
        assert_eq!(parse_bandwidth("10MB"), Ok(Some(10_000_000)));
        assert_eq!(parse_bandwidth("1.5mbit"), Ok(Some(187_500)));
        assert_eq!(parse_bandwidth("off"), Ok(None));
        for bad in ["fast", "10", "-1mbit", "1tbit", ""] {
            assert!(
                parse_bandwidth(bad)
                    .unwrap_err()
                    .contains("not a bandwidth"),
                "{bad}"
            );
        }
        assert!(parse_bandwidth("1kbit").unwrap_err().contains("outside"));
        assert!(parse_bandwidth("900gbit").unwrap_err().contains("outside"));
    }

    #[test]
    fn changes_check_their_values() {
        let ms = Duration::from_millis;
        assert!(
            Change::new(None, Some(ms(10)), None)
                .unwrap_err()
                .contains("--jitter needs")
        );
        assert!(
            Change::new(Some(Duration::from_secs(3600)), None, None)
                .unwrap_err()
                .contains("more than drr allows")
        );
        assert!(Change::new(None, None, None).unwrap().is_empty());
    }

    #[test]
    fn changes_replace_and_remove_their_toxics() {
        let ms = Duration::from_millis;
        let mut toxics = Vec::new();
        Change::new(Some(ms(80)), Some(ms(10)), Some("1mbit"))
            .unwrap()
            .apply(&mut toxics);
        assert_eq!(describe(&toxics), "latency 80ms ±10ms, 125 KB/s");
        Change::new(Some(ms(20)), None, None)
            .unwrap()
            .apply(&mut toxics);
        assert_eq!(describe(&toxics), "125 KB/s, latency 20ms");
        Change::new(Some(ms(0)), None, Some("off"))
            .unwrap()
            .apply(&mut toxics);
        assert_eq!(describe(&toxics), "none");
    }

    #[test]
    fn partitions_cut_both_ways_and_switch_modes() {
        let mut toxics = Vec::new();
        assert!(!cuts(&toxics));
        partition(&mut toxics, Mode::Blackhole);
        assert_eq!(describe(&toxics), "blackhole");
        assert!(cuts(&toxics));
        partition(&mut toxics, Mode::Reset);
        assert_eq!(toxics.len(), 2);
        assert_eq!(describe(&toxics), "reset");
    }
}
