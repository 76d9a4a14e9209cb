//! This repository's stack. Edit this value to change the stack, then run
//! `cargo xtask gen` (and `cargo xtask up` to apply it).
//!
//! Adding a replica is one line, e.g.
//! `.replica(Replica::new("replica2", 5434).delay(Duration::from_millis(1000)))`.

use std::time::Duration;

use drr_stack::spec::{Node, Replica, Role, StackSpec};

/// The stack `cargo xtask` runs: the original tool's primary on 5432 and a
/// replica on 5433 three seconds behind it.
pub fn spec() -> StackSpec {
    StackSpec::new("drr", 15)
        .primary(Node::new("primary", 5432))
        .replica(Replica::new("replica1", 5433).delay(Duration::from_millis(3000)))
        .role(Role::login("drr_user", "pass").createdb())
        .database("drr", "drr_user")
}
