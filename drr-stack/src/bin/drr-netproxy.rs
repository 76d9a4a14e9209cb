//! drr's fault proxy as a program of its own, for programs that cannot run
//! it with their own `net-proxy` subcommand (tests): `drr-netproxy
//! net-proxy --dir <state>/net`. `cargo xtask up` starts it; nobody needs
//! to run it by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let dir = match args.as_slice() {
        [sub, flag, dir] if sub == drr_stack::net::launch::SUBCOMMAND && flag == "--dir" => dir,
        _ => {
            eprintln!("usage: drr-netproxy net-proxy --dir DIR (`cargo xtask up` starts it)");
            return ExitCode::from(2);
        }
    };
    match drr_stack::net::daemon::run(std::path::Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
