//! WAL positions on the real stack: the read-your-writes token when the
//! primary's insert position sits just past a WAL page header (on a stack
//! of its own, where no other test writes WAL), the replay state of both
//! roles, and what `wait_for_replay` sends when no time is left. Run
//! through `cargo xtask test` (see `support::stack`).

mod support;

use std::time::Duration;

use drr_core::testing::TestStack;
use drr_core::{Lsn, wal};
use drr_stack::testing::{self, TempStack};
use support::proxy::Proxy;
use support::{admin_primary_url, direct, eventually, stack};

/// Pads the WAL with a non-transactional logical message so that the last
/// record ends exactly on a page boundary, in one statement to leave other
/// sessions little room to interfere.
const PAD_TO_PAGE_BOUNDARY: &str = r#"
DO $$
DECLARE
    block int := current_setting('wal_block_size')::int;
    remaining int;
BEGIN
    remaining := block - ((pg_current_wal_insert_lsn() - '0/0'::pg_lsn) % block)::int;
    IF remaining < 400 THEN
        PERFORM pg_logical_emit_message(false, 'drr', repeat('x', 1000));
        remaining := block - ((pg_current_wal_insert_lsn() - '0/0'::pg_lsn) % block)::int;
    END IF;
    -- Record header 24, long data header 5, message header 24, prefix 'drr\0' 4.
    PERFORM pg_logical_emit_message(false, 'drr', repeat('x', remaining - 57));
END
$$"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_at_a_page_boundary_is_reachable() {
    // Other tests' writes would move the insert position off the boundary:
    // a stack of the test's own.
    let own = TempStack::start(testing::spec(&[Duration::ZERO]).expect("a spec"))
        .await
        .expect("a stack of the test's own");
    let stack = TestStack::from_vars(own.vars().expect("its variables")).expect("its variables");
    let primary = direct(admin_primary_url(&stack)).await;
    let insert_lsn = async || -> Lsn {
        let row = primary
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .expect("insert lsn");
        row.get::<_, String>(0).parse().expect("lsn")
    };

    let mut provoked = None;
    for _ in 0..50 {
        primary
            .batch_execute(PAD_TO_PAGE_BOUNDARY)
            .await
            .expect("pad the WAL");
        let before = insert_lsn().await;
        let token = wal::commit_token(&primary).await.expect("token");
        let after = insert_lsn().await;
        // Only conclusive if nothing else wrote WAL meanwhile.
        if before == after && before.as_u64() % 8192 == 24 {
            provoked = Some((before, token));
            break;
        }
    }
    let (insert, token) =
        provoked.expect("background WAL kept the insert position off a page boundary in 50 tries");
    let boundary = Lsn::from(insert.as_u64() - 24);
    assert_eq!(
        token.lsn(),
        boundary,
        "the token must be the boundary, not the position past the page header"
    );

    // Every replica reaches the token, even if the primary is idle now.
    let delay = stack.max_delay();
    for node in stack.replicas() {
        let replica = direct(&node.url).await;
        eventually(
            "a replica to replay up to the token",
            delay + Duration::from_secs(20),
            || async {
                let state = wal::replay_state(&replica).await.expect("replay state");
                assert!(state.in_recovery);
                state.replay_lsn.is_some_and(|lsn| lsn >= token.lsn())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_state_reads_replicas_and_the_primary() {
    let stack = stack();
    let replica = direct(&stack.replicas()[0].url).await;
    let state = wal::replay_state(&replica).await.expect("replica state");
    assert!(state.in_recovery);
    assert!(state.replay_lsn.is_some() && state.receive_lsn.is_some());
    assert_eq!(state.pause, Some(wal::ReplayPause::NotPaused));
    assert!(state.server_version >= 150_000);

    let primary = direct(stack.primary_url()).await;
    let state = wal::replay_state(&primary).await.expect("primary state");
    assert!(!state.in_recovery);
    assert_eq!((state.replay_lsn, state.pause), (None, None));
    let written = wal::write_position(&primary).await.expect("write position");
    let token = wal::commit_token(&primary).await.expect("token");
    assert!(
        token.lsn() >= written,
        "the insert position is never behind the write position"
    );
}

/// `WAIT FOR LSN ... TIMEOUT '0ms'` waits forever on PostgreSQL 19: with no
/// time left (zero, or under a millisecond), `wait_for_replay` answers from
/// one replay-position check and never sends it. The server here is older,
/// so the test claims version 19 and records what reaches the server
/// through a proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replay_never_sends_a_zero_timeout() {
    let stack = stack();
    let proxy = Proxy::start(&stack.replicas()[0].url).await;
    let replica = direct(&proxy.url).await;
    let state = wal::replay_state(&replica).await.expect("replay state");
    let replayed = state.replay_lsn.expect("a replica has a replay position");
    let unreachable = Lsn::from(replayed.as_u64() + (1 << 40));
    for left in [Duration::ZERO, Duration::from_micros(500)] {
        let started = std::time::Instant::now();
        let (seen, reached) = wal::wait_for_replay(
            &replica,
            unreachable,
            left,
            Duration::from_millis(1),
            wal::WAIT_FOR_LSN_VERSION,
        )
        .await
        .expect("one check");
        assert!(!reached && seen.is_some(), "{left:?}: {seen:?} {reached}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "with {left:?} left the answer is one check, not a wait"
        );
    }
    let sent = proxy.sent();
    let waits: Vec<&str> = sent
        .match_indices("WAIT FOR LSN")
        .map(|(i, _)| &sent[i..(i + 60).min(sent.len())])
        .collect();
    assert!(waits.is_empty(), "with no time left, it sent {waits:?}");

    // With time left it is sent (and, on a server before 19, fails over to
    // polling): the recording sees statements.
    let (_, reached) = wal::wait_for_replay(
        &replica,
        unreachable,
        Duration::from_millis(50),
        Duration::from_millis(5),
        wal::WAIT_FOR_LSN_VERSION,
    )
    .await
    .expect("a bounded wait");
    assert!(!reached);
    assert!(
        proxy.sent().contains("TIMEOUT '50ms'"),
        "a 50 ms wait claiming version 19 sends WAIT FOR LSN"
    );
}
