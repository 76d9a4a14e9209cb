//! Which node is the primary, from what every node said about itself: the
//! one node out of recovery, or of several the one on the newest timeline.

use crate::node::NodeId;

/// What one node said: its id, whether it is in recovery, and its
/// timeline. Nodes that did not answer are not listed.
pub(crate) struct Answer {
    pub(crate) id: NodeId,
    pub(crate) in_recovery: bool,
    pub(crate) timeline: u32,
}

/// The primary among `answers`: the node out of recovery on the newest
/// timeline. `None` when no node is out of recovery, or when two are on the
/// newest timeline: writes must not go to either until one steps down (an
/// old primary on an older timeline lost to a promotion and is never
/// written to again).
pub(crate) fn elect(answers: &[Answer]) -> Option<NodeId> {
    let mut primaries: Vec<&Answer> = answers.iter().filter(|a| !a.in_recovery).collect();
    primaries.sort_by_key(|a| std::cmp::Reverse(a.timeline));
    match primaries.as_slice() {
        [] => None,
        [newest, next, ..] if next.timeline == newest.timeline => {
            tracing::warn!(
                timeline = newest.timeline,
                "two nodes answer as primary on the same timeline: no writes until one steps down"
            );
            None
        }
        [newest, ..] => Some(newest.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: usize, in_recovery: bool, timeline: u32) -> Answer {
        Answer {
            id: NodeId(id),
            in_recovery,
            timeline,
        }
    }

    #[test]
    fn the_node_out_of_recovery_on_the_newest_timeline_is_the_primary() {
        assert_eq!(elect(&[]), None);
        assert_eq!(elect(&[answer(0, true, 1), answer(1, true, 1)]), None);
        assert_eq!(
            elect(&[answer(0, true, 2), answer(1, false, 2)]),
            Some(NodeId(1))
        );
        // An old primary that came back as one lost to the promotion.
        assert_eq!(
            elect(&[answer(0, false, 1), answer(1, false, 2), answer(2, true, 2)]),
            Some(NodeId(1))
        );
        assert_eq!(elect(&[answer(0, false, 2), answer(1, false, 2)]), None);
    }
}
