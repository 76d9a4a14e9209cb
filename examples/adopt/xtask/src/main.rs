//! This workspace's `cargo xtask`: every drr stack command, run on the spec
//! in `spec.rs`. See `cargo xtask --help`.

mod spec;

fn main() -> std::process::ExitCode {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    drr_stack::cli::main(spec::spec(), crate_dir.parent().unwrap_or(crate_dir))
}
