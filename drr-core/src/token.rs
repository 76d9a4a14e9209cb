//! The read-your-writes token: the primary's WAL position just after a
//! session's write, with the cluster and timeline it was taken on, in the
//! small text form a session carries between requests.

use std::fmt;
use std::str::FromStr;

use crate::lsn::{Lsn, ParseLsnError};

/// Which cluster a server belongs to: the primary and its replicas share
/// it, and every stack instance has its own.
///
/// Made from PostgreSQL's system identifier (`pg_control_system()`), which
/// a replica shares with its primary, and the setting `drr.stack_id` when it
/// is set. Clusters copied from one template share a system identifier; a
/// stack that sets a fresh `drr.stack_id` on every node of each instance
/// tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(u64);

impl ClusterId {
    /// The identity of a server with `system_identifier` and `stack_id`
    /// (the `drr.stack_id` setting, if set).
    pub fn new(system_identifier: u64, stack_id: Option<&str>) -> Self {
        let Some(stack_id) = stack_id.filter(|id| !id.is_empty()) else {
            return ClusterId(system_identifier);
        };
        // FNV-1a: stable across processes and builds, so every router and
        // token agrees.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in system_identifier
            .to_be_bytes()
            .iter()
            .chain(stack_id.as_bytes())
        {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        ClusterId(hash)
    }

    /// The identity as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// Where a token was taken: the cluster, and the primary's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Origin {
    cluster: ClusterId,
    timeline: u32,
}

/// What a read-your-writes session has written: the primary's WAL position
/// just after its last committed write, and the cluster and timeline that
/// position belongs to.
///
/// A replica may serve the session's reads once it belongs to the same
/// cluster, has reached the token's timeline, and has replayed up to its
/// position. The token is `Copy`, and travels as text, e.g. in an
/// `x-drr-lsn` header or a cookie, so another request or service can resume
/// the session with [`Session::with_token`](crate::Session::with_token).
///
/// # Format
///
/// Displays as `v2:<cluster>:<timeline>:<position>`, with the cluster as 16
/// hexadecimal digits, the timeline in hexadecimal, and the position in
/// PostgreSQL's form: `v2:5F1C29B3A0D4E781:1:16/B374D848`. Parsing accepts
/// that form and the older ones without a cluster: `v1:16/B374D848`, and a
/// bare `16/B374D848` as `pg_current_wal_lsn()` prints it. Such a token is
/// matched by position alone, as drr did before tokens named their cluster.
///
/// Tokens order by position first; the order of tokens from different
/// clusters means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LsnToken {
    lsn: Lsn,
    origin: Option<Origin>,
}

impl LsnToken {
    /// A token that names no cluster, satisfied by any replica that has
    /// replayed up to `lsn`.
    pub const fn new(lsn: Lsn) -> Self {
        LsnToken { lsn, origin: None }
    }

    /// A token for `lsn` on `timeline` of `cluster`.
    pub const fn from_cluster(lsn: Lsn, cluster: ClusterId, timeline: u32) -> Self {
        LsnToken {
            lsn,
            origin: Some(Origin { cluster, timeline }),
        }
    }

    /// The WAL position a replica must have replayed.
    pub const fn lsn(self) -> Lsn {
        self.lsn
    }

    /// The cluster the token was taken on, if it names one.
    pub fn cluster(self) -> Option<ClusterId> {
        self.origin.map(|o| o.cluster)
    }

    /// The primary's timeline when the token was taken, if it names one.
    pub fn timeline(self) -> Option<u32> {
        self.origin.map(|o| o.timeline)
    }

    /// The token reads must follow after seeing both `self` and `later`:
    /// the later position of the two, or `later` alone if it comes from
    /// another cluster (the cluster was replaced; `self` names nothing that
    /// can be read any more).
    pub fn merge(self, later: LsnToken) -> LsnToken {
        match (self.cluster(), later.cluster()) {
            (Some(a), Some(b)) if a != b => later,
            _ => self.max(later),
        }
    }
}

impl fmt::Display for LsnToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Some(Origin { cluster, timeline }) => {
                write!(f, "v2:{cluster}:{timeline:X}:{}", self.lsn)
            }
            None => write!(f, "v1:{}", self.lsn),
        }
    }
}

impl FromStr for LsnToken {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseLsnError::new(s);
        if let Some(rest) = s.strip_prefix("v2:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(cluster), Some(timeline), Some(lsn)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(error());
            };
            let is_hex = |part: &str, max: usize| {
                !part.is_empty() && part.len() <= max && part.bytes().all(|b| b.is_ascii_hexdigit())
            };
            if !is_hex(cluster, 16) || !is_hex(timeline, 8) {
                return Err(error());
            }
            let cluster = u64::from_str_radix(cluster, 16).map_err(|_| error())?;
            let timeline = u32::from_str_radix(timeline, 16).map_err(|_| error())?;
            let lsn: Lsn = lsn.parse().map_err(|_| error())?;
            return Ok(LsnToken::from_cluster(lsn, ClusterId(cluster), timeline));
        }
        let lsn = s.strip_prefix("v1:").unwrap_or(s);
        lsn.parse().map(LsnToken::new).map_err(|_| error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_cluster_and_timeline_and_round_trip() {
        let cluster = ClusterId::new(7_712_507_143_841_022_525, Some("stack-a"));
        let token = LsnToken::from_cluster(Lsn::from(0x3000148), cluster, 2);
        let text = token.to_string();
        assert_eq!(text, format!("v2:{cluster}:2:0/3000148"));
        assert_eq!(text.parse::<LsnToken>().unwrap(), token);
        assert_eq!(token.timeline(), Some(2));
    }

    #[test]
    fn older_forms_still_parse_and_name_no_cluster() {
        let token: LsnToken = "v1:0/3000148".parse().unwrap();
        assert_eq!(token.to_string(), "v1:0/3000148");
        assert_eq!("0/3000148".parse::<LsnToken>().unwrap(), token);
        assert_eq!((token.cluster(), token.timeline()), (None, None));
        for bad in [
            "v2:0/3000148",
            "v2:xyz:1:0/1",
            "v2:1:1:nope",
            "v2:12345678901234567:1:0/1",
            "v2::1:0/1",
            "v3:0/1",
            "nonsense",
        ] {
            let err = bad.parse::<LsnToken>().unwrap_err().to_string();
            assert!(err.starts_with("invalid WAL position"), "{bad}: {err}");
        }
    }

    #[test]
    fn stack_ids_tell_template_copies_apart() {
        let sysid = 7_712_507_143_841_022_525;
        assert_eq!(ClusterId::new(sysid, None).as_u64(), sysid);
        assert_eq!(ClusterId::new(sysid, Some("")), ClusterId::new(sysid, None));
        assert_ne!(
            ClusterId::new(sysid, Some("a")),
            ClusterId::new(sysid, Some("b"))
        );
        assert_ne!(
            ClusterId::new(sysid, Some("a")),
            ClusterId::new(sysid, None)
        );
    }

    #[test]
    fn merging_keeps_the_later_position_of_one_cluster() {
        let (a, b) = (ClusterId::new(1, None), ClusterId::new(2, None));
        let early = LsnToken::from_cluster(Lsn::from(10), a, 1);
        let late = LsnToken::from_cluster(Lsn::from(20), a, 1);
        assert_eq!(late.merge(early), late);
        assert_eq!(early.merge(late), late);
        let other = LsnToken::from_cluster(Lsn::from(5), b, 1);
        assert_eq!(late.merge(other), other, "a new cluster replaces the old");
        assert_eq!(
            late.merge(LsnToken::new(Lsn::from(30))).lsn(),
            Lsn::from(30)
        );
    }
}
