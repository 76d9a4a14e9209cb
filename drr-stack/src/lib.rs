//! drr-stack.
