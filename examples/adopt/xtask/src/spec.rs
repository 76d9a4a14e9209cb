//! This workspace's stack. Edit this value to change the stack, then run
//! `cargo xtask gen` (and `cargo xtask up` to apply it).

use std::time::Duration;

use drr_stack::spec::{Node, Replica, Role, StackSpec};

/// The stack `cargo xtask` runs here: a primary and two replicas, one close
/// behind it and one far behind, on ports clear of drr's own 5432 stack.
pub fn spec() -> StackSpec {
    StackSpec::new("adopt", 15)
        .primary(Node::new("primary", 15432))
        .replica(Replica::new("near", 15433).delay(Duration::from_millis(200)))
        .replica(Replica::new("far", 15434).delay(Duration::from_millis(3000)))
        .role(Role::login("shop", "shop-pass").createdb())
        .database("shop", "shop")
}
