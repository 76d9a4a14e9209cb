//! drr-demo: a web service on drr-core.

fn main() {}
