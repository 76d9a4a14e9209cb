//! Toxics in Toxiproxy's terms, and what they do to one direction of a
//! connection: pure values, shared by the proxy, the commands and the API.
//!
//! A toxic acts on one stream: `downstream` (server → client, Toxiproxy's
//! default) or `upstream` (client → server). Several toxics on a stream add
//! up: latencies sum, the slowest bandwidth wins, any `timeout` holds the
//! data, any `reset_peer` resets the connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The direction a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client → server (for a replication link: replica → primary).
    Upstream,
    /// Server → client (for a replication link: the WAL, primary → replica).
    #[default]
    Downstream,
}

/// What a toxic does, with Toxiproxy's attribute names and units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "attributes", rename_all = "snake_case")]
pub enum Kind {
    /// Delays each chunk by `latency` ± `jitter` milliseconds.
    Latency {
        /// Milliseconds added to every chunk.
        latency: u64,
        /// Up to this many milliseconds more or less, uniformly.
        #[serde(default)]
        jitter: u64,
    },
    /// Limits the stream to `rate` KB/s.
    Bandwidth {
        /// Kilobytes (1000 bytes) per second.
        rate: u64,
    },
    /// Holds all data (a blackhole); after `timeout` ms closes the
    /// connection, with 0 never.
    Timeout {
        /// Milliseconds until the connection is closed; 0: never.
        #[serde(default)]
        timeout: u64,
    },
    /// Resets the connection (TCP RST) after `timeout` ms, 0: at once.
    ResetPeer {
        /// Milliseconds until the reset.
        #[serde(default)]
        timeout: u64,
    },
}

/// One toxic of a link, as Toxiproxy's API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    /// Unique within its link.
    pub name: String,
    /// What it does.
    #[serde(flatten)]
    pub kind: Kind,
    /// Which direction it acts on.
    #[serde(default)]
    pub stream: Stream,
    /// The share of connections it affects; drr supports 1.0 only.
    #[serde(default = "full")]
    pub toxicity: f64,
}

fn full() -> f64 {
    1.0
}

impl Toxic {
    /// A toxic affecting every connection.
    pub fn new(name: &str, kind: Kind, stream: Stream) -> Toxic {
        Toxic {
            name: name.to_owned(),
            kind,
            stream,
            toxicity: 1.0,
        }
    }

    /// Why the proxy cannot apply this toxic, if it cannot.
    pub fn unsupported(&self) -> Option<String> {
        if self.toxicity != 1.0 {
            return Some(format!(
                "toxic `{}` has toxicity {}; drr applies toxics to every connection, use 1.0",
                self.name, self.toxicity
            ));
        }
        if self.name.is_empty() {
            return Some("a toxic needs a name".to_owned());
        }
        None
    }
}

/// What a link's toxics do to one direction, all added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effect {
    /// Delay added to every chunk.
    pub latency: Duration,
    /// Up to this much more or less, uniformly.
    pub jitter: Duration,
    /// Bytes per second, if limited.
    pub rate: Option<u64>,
    /// Data is held; `Some(after)` closes the connection after that long
    /// (`Duration::ZERO`: never).
    pub hold: Option<Duration>,
    /// The connection is reset after this long.
    pub reset: Option<Duration>,
}

impl Effect {
    /// What `toxics` do to `stream`.
    pub fn of(toxics: &[Toxic], stream: Stream) -> Effect {
        let mut effect = Effect::default();
        for toxic in toxics.iter().filter(|t| t.stream == stream) {
            match toxic.kind {
                Kind::Latency { latency, jitter } => {
                    effect.latency += Duration::from_millis(latency);
                    effect.jitter += Duration::from_millis(jitter);
                }
                Kind::Bandwidth { rate } => {
                    let bytes = rate.saturating_mul(1000);
                    effect.rate = Some(effect.rate.map_or(bytes, |r| r.min(bytes)));
                }
                Kind::Timeout { timeout } => {
                    let after = Duration::from_millis(timeout);
                    effect.hold = Some(effect.hold.map_or(after, |h| h.min(after)));
                }
                Kind::ResetPeer { timeout } => {
                    let after = Duration::from_millis(timeout);
                    effect.reset = Some(effect.reset.map_or(after, |r| r.min(after)));
                }
            }
        }
        effect
    }

    /// The delay of one chunk: the latency shifted by `unit` (from -1.0 to
    /// 1.0) times the jitter, never below zero.
    pub fn delay(&self, unit: f64) -> Duration {
        let shift = self.jitter.as_secs_f64() * unit.clamp(-1.0, 1.0);
        Duration::from_secs_f64((self.latency.as_secs_f64() + shift).max(0.0))
    }

    /// How long sending `bytes` takes at the rate limit.
    pub fn transfer_time(&self, bytes: usize) -> Duration {
        self.rate.map_or(Duration::ZERO, |rate| {
            Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64)
        })
    }
}

/// A small, fast random source for jitter (xorshift64*): jitter needs
/// spread, not secrecy.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the operating system (a fixed seed if it fails).
    pub fn new() -> Jitter {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        Jitter(u64::from_le_bytes(bytes) | 1)
    }

    /// A value uniform in [-1.0, 1.0).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxics_read_and_write_as_toxiproxy_shows_them() {
        let json = r#"{"name":"lag","type":"latency","stream":"downstream","toxicity":1.0,"attributes":{"latency":80,"jitter":10}}"#;
        let toxic: Toxic = serde_json::from_str(json).unwrap();
        assert_eq!(
            toxic,
            Toxic::new(
                "lag",
                Kind::Latency {
                    latency: 80,
                    jitter: 10
                },
                Stream::Downstream
            )
        );
        let back: serde_json::Value = serde_json::to_value(&toxic).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
        let minimal: Toxic =
            serde_json::from_str(r#"{"name":"t","type":"timeout","attributes":{}}"#).unwrap();
        assert_eq!(minimal.kind, Kind::Timeout { timeout: 0 });
        assert_eq!(minimal.stream, Stream::Downstream);
    }

    #[test]
    fn effects_add_up_per_stream() {
        let toxics = [
            Toxic::new(
                "a",
                Kind::Latency {
                    latency: 50,
                    jitter: 5,
                },
                Stream::Downstream,
            ),
            Toxic::new(
                "b",
                Kind::Latency {
                    latency: 30,
                    jitter: 0,
                },
                Stream::Downstream,
            ),
            Toxic::new("c", Kind::Bandwidth { rate: 100 }, Stream::Downstream),
            Toxic::new("d", Kind::Bandwidth { rate: 50 }, Stream::Downstream),
            Toxic::new("e", Kind::Timeout { timeout: 0 }, Stream::Upstream),
        ];
        let down = Effect::of(&toxics, Stream::Downstream);
        assert_eq!(down.latency, Duration::from_millis(80));
        assert_eq!(down.jitter, Duration::from_millis(5));
        assert_eq!(down.rate, Some(50_000));
        assert_eq!(down.hold, None);
        let up = Effect::of(&toxics, Stream::Upstream);
        assert_eq!(up.hold, Some(Duration::ZERO));
        assert_eq!(up.latency, Duration::ZERO);
    }

    #[test]
    fn delays_stay_within_the_jitter_and_above_zero() {
        let effect = Effect {
            latency: Duration::from_millis(80),
            jitter: Duration::from_millis(10),
            ..Effect::default()
        };
        assert_eq!(effect.delay(0.0), Duration::from_millis(80));
        assert_eq!(effect.delay(1.0), Duration::from_millis(90));
        assert_eq!(effect.delay(-5.0), Duration::from_millis(70));
        let wide = Effect {
            jitter: Duration::from_millis(10),
            ..Effect::default()
        };
        assert_eq!(wide.delay(-1.0), Duration::ZERO);
        let mut jitter = Jitter::new();
        let units: Vec<f64> = (0..1000).map(|_| jitter.next_unit()).collect();
        assert!(units.iter().all(|u| (-1.0..1.0).contains(u)));
        let below = units.iter().filter(|u| **u < 0.0).count();
        assert!((400..600).contains(&below), "{below} of 1000 below zero");
    }

    #[test]
    fn bandwidth_sets_the_transfer_time() {
        let effect = Effect {
            rate: Some(125_000),
            ..Effect::default()
        };
        assert_eq!(effect.transfer_time(125_000), Duration::from_secs(1));
        assert_eq!(Effect::default().transfer_time(1 << 20), Duration::ZERO);
    }
}
