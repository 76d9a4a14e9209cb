//! `cargo xtask`: see `cargo xtask --help`.

fn main() -> std::process::ExitCode {
    drr_stack::cli::main(xtask::spec(), xtask::workspace_root())
}
