//! Runs one tmux command against a running tmux 3.3a server (or any tmux that
//! speaks protocol version 8 in the legacy imsg dialect), the way tmux's own
//! client does, over an `imsg_io::Channel`:
//!
//! ```text
//! cargo run -p imsg-io --example tmux -- -S SOCKET list-sessions
//! cargo run -p imsg-io --example tmux -- -S SOCKET display-message -p '#{version}'
//! cargo run -p imsg-io --example tmux -- --dialect current -S SOCKET list-sessions
//! ```
//!
//! `--dialect legacy|current` chooses the imsg dialect (default `legacy`): tmux up
//! to 3.5a speaks legacy, tmux 3.6 and later (and OpenBSD 7.7 and later) current.
//! A server of the other dialect hangs up at the first frame that carries a
//! descriptor; the error then says which dialect it may speak.
//!
//! It passes its own stdin and stdout to the server as tmux does, prints what the
//! server writes (stdout and stderr), feeds its stdin to commands that read `-`
//! (`load-buffer -`), and exits with the command's exit status. Attaching to a
//! session is out of scope (no terminal handling): the server's `READY` ends it
//! with an error.

mod proto;

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use imsg_io::{Channel, Config, Dialect, DialectHint};

const USAGE: &str = "usage: tmux [--dialect legacy|current] -S SOCKET COMMAND [ARGUMENT...]";

/// What the command line asks for.
struct Args {
    dialect: Dialect,
    socket: std::ffi::OsString,
    command: Vec<std::ffi::OsString>,
}

/// `[--dialect D] -S SOCKET` and the command, or a usage error.
fn parse_args(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<Args> {
    let mut first = args.next()?;
    let mut dialect = Dialect::Legacy;
    if first.as_os_str() == "--dialect" {
        dialect = match args.next()?.to_str()? {
            "legacy" => Dialect::Legacy,
            "current" => Dialect::Current,
            _ => return None,
        };
        first = args.next()?;
    }
    if first.as_os_str() != "-S" {
        return None;
    }
    let socket = args.next()?;
    let command: Vec<_> = args.collect();
    (!command.is_empty()).then_some(Args {
        dialect,
        socket,
        command,
    })
}

fn dup_or_null(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<OwnedFd> {
    match fd.try_clone_to_owned() {
        Ok(fd) => Ok(fd),
        Err(_) => Ok(std::fs::File::open("/dev/null")?.into()),
    }
}

fn run(args: &Args) -> Result<proto::Exit, Box<dyn std::error::Error>> {
    use std::os::unix::ffi::OsStrExt;
    let Args {
        dialect,
        socket,
        command,
    } = args;
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("can't connect to {}: {e}", socket.to_string_lossy()))?;
    let config = Config::default().with_fdpass(true).with_dialect(*dialect);
    let mut chan = Channel::new(stream, config)?;
    let args: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
    let mut stdin = io::stdin();
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let client_io = proto::ClientIo {
        stdin_fd: dup_or_null(io::stdin().as_fd())?,
        stdout_fd: dup_or_null(io::stdout().as_fd())?,
        input: Some(&mut stdin),
        out: &mut out,
        err: &mut err,
    };
    let id = proto::Identity::of_this_process();
    proto::run_command(&mut chan, &id, &args, client_io, None).map_err(|e| {
        match chan.peer_may_speak() {
            Some(d) => format!("{e}; {}: try --dialect {d}", DialectHint(d)).into(),
            None => e.into(),
        }
    })
}

fn main() -> ExitCode {
    let Some(args) = parse_args(std::env::args_os().skip(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&args) {
        Ok(exit) => {
            if let Some(m) = exit.message {
                let mut err = io::stderr();
                let _ = err.write_all(&m);
                let _ = err.write_all(b"\n");
            }
            ExitCode::from(u8::try_from(exit.retval).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("tmux: {e}");
            ExitCode::from(1)
        }
    }
}
