//! The maintainers' benchmarks of drr-core (`cargo xtask bench` runs them):
//! criterion benches under `benches/`, and what they share. Not published,
//! and not a default workspace member, so `cargo test` and `cargo xtask test`
//! never build criterion.

#![deny(missing_docs)]

pub mod cpu_time;
pub mod per_test;
pub mod report;
