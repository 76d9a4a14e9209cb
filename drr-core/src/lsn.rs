//! WAL positions: parsing, printing, comparing.
//!
//! PostgreSQL prints a WAL position (`pg_lsn`) as two hexadecimal halves,
//! `16/B374D848`. [`Lsn`] is that position as a `u64`.

use std::fmt;
use std::str::FromStr;

/// Size of the short header at the start of every WAL page (64-bit builds).
const SHORT_PAGE_HEADER: u64 = 24;
/// Size of the long header at the start of every WAL segment (64-bit builds).
const LONG_PAGE_HEADER: u64 = 40;

/// A position in the write-ahead log, as PostgreSQL's `pg_lsn`.
///
/// Ordered like the log: a larger value is later. Displays and parses in
/// PostgreSQL's own form, `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// The position as a byte offset from the start of the log.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Bytes from `earlier` to `self`, zero if `earlier` is not earlier.
    pub const fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Turns a "next record starts here" position into "the last record ended
    /// here".
    ///
    /// `pg_current_wal_insert_lsn()` reports where the next record would
    /// start. When the last record ended exactly on a WAL page boundary, that
    /// is past the new page's header (24 bytes, 40 at the start of a segment),
    /// while a standby's `pg_last_wal_replay_lsn()` stops at the boundary: on
    /// an idle primary the raw insert position would never be reached. No
    /// record can end inside a page header, so mapping such a position back to
    /// the boundary loses nothing.
    pub const fn end_of_previous_record(self, wal_block_size: u64, wal_segment_size: u64) -> Lsn {
        if wal_block_size == 0 || wal_segment_size == 0 {
            return self;
        }
        if self.0 % wal_segment_size == LONG_PAGE_HEADER {
            Lsn(self.0 - LONG_PAGE_HEADER)
        } else if self.0 % wal_block_size == SHORT_PAGE_HEADER {
            Lsn(self.0 - SHORT_PAGE_HEADER)
        } else {
            self
        }
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(value: Lsn) -> Self {
        value.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The error returned when text is not a WAL position or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid WAL position {input:?}: expected the form 16/B374D848, v1:16/B374D848 or \
     v2:<cluster>:<timeline>:16/B374D848"
)]
pub struct ParseLsnError {
    input: String,
}

impl ParseLsnError {
    pub(crate) fn new(input: &str) -> Self {
        // Cap what we echo back: tokens come from cookies and headers.
        ParseLsnError {
            input: input.chars().take(40).collect(),
        }
    }
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s.split_once('/').ok_or_else(|| ParseLsnError::new(s))?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseLsnError::new(s));
            }
            u32::from_str_radix(part, 16).map_err(|_| ParseLsnError::new(s))
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.as_u64(), 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn rejects_malformed_positions() {
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "x/1",
            "1/2/3",
            "123456789/0",
            "+1/0",
            "1 /0",
            "v2:1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn ordering_follows_the_log() {
        assert!("1/0".parse::<Lsn>().unwrap() > "0/FFFFFFFF".parse().unwrap());
        assert_eq!(Lsn(10).bytes_since(Lsn(4)), 6);
        assert_eq!(Lsn(4).bytes_since(Lsn(10)), 0);
    }

    #[test]
    fn page_header_positions_map_back_to_the_boundary() {
        let (block, seg) = (8192, 16 << 20);
        // Past a short page header: the previous record ended at the boundary.
        assert_eq!(
            Lsn(3 * block + 24).end_of_previous_record(block, seg),
            Lsn(3 * block)
        );
        // Past the long header at the start of a segment.
        assert_eq!(
            Lsn(5 * seg + 40).end_of_previous_record(block, seg),
            Lsn(5 * seg)
        );
        // Anywhere else, including 40 bytes into a page that is not a
        // segment start, the position is already an end of record.
        for lsn in [
            3 * block + 40,
            3 * block + 32,
            3 * block,
            5 * seg + 48,
            0x3000148,
        ] {
            assert_eq!(Lsn(lsn).end_of_previous_record(block, seg), Lsn(lsn));
        }
    }
}
