//! Control client of the `httpd` example, like OpenBSD's `httpctl`/`relayctl`.
//!
//! ```text
//! httpctl [-s SOCKET] show procs | show stats | log verbose | log brief |
//!                     log reopen | reload | stop
//! ```
//!
//! Prints the reply's lines and exits 0; otherwise prints one line saying why (no
//! such socket, permission denied, refused on a restricted socket) and exits 1
//! (2 for a usage error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../httpd/proto.rs"]
mod proto;

const DEFAULT_SOCKET: &str = "/run/privsep-httpd.sock";

fn usage() -> ExitCode {
    let cmds: Vec<&str> = proto::COMMANDS.iter().map(|(c, _)| *c).collect();
    eprintln!(
        "usage: httpctl [-s SOCKET] COMMAND   (COMMAND: {})",
        cmds.join(" | ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    if args.first().map(String::as_str) == Some("-s") {
        if args.len() < 2 {
            return usage();
        }
        socket = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    if args.is_empty() {
        return usage();
    }
    let ty = match proto::parse_command(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("httpctl: {e}");
            return usage();
        }
    };
    match proto::request(&socket, ty, Duration::from_secs(10)) {
        Ok(rows) => {
            for r in rows {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("httpctl: {e}");
            ExitCode::FAILURE
        }
    }
}
