//! `imsg-tap`: a transparent proxy between imsg clients and a daemon's socket, that
//! prints every frame going through.
//!
//! ```text
//! imsg-tap [--dialect legacy|current|auto] [--client-dialect D] [--server-dialect D]
//!          [--max N] [--names TABLE] [--json] [--once] LISTEN_PATH DAEMON_PATH
//! ```
//!
//! It listens on LISTEN_PATH; for each client that connects it connects to the
//! daemon's socket at DAEMON_PATH and forwards frames both ways, descriptors
//! included (a descriptor received with a frame is sent on with it, then closed
//! here). Every frame is printed on stdout as it passes:
//!
//! ```text
//! 2026-11-29T06:29:00.123456Z 1 > type=200(MSG_COMMAND) len=42 peerid=8 pid=-1 fd=0 payload=…
//! ```
//!
//! time (UTC), client number (from 1, in the order clients came), direction (`>`
//! client to daemon, `<` daemon to client), then the `imsg-dump` line (`--names`,
//! `--json` and `fd=1(none)` as in `imsgcat`). What happens to connections
//! (connected, closed by either side, errors) goes to stderr, one line each.
//!
//! - `--dialect` sets both sides (default `legacy`); `--client-dialect` and
//!   `--server-dialect` set one side each, so a client of one dialect can talk to a
//!   daemon of the other: frames are decoded in one and re-encoded in the other.
//!   `auto` learns a side's dialect from the first frame it sends with a
//!   descriptor; with `--dialect auto` the daemon side also follows what the
//!   client side learnt (while nothing is queued or buffered for the daemon).
//! - `--max N`: the limit on a frame's total size, both sides (default 16384).
//! - A client or the daemon going away ends that client's conversation (the other
//!   side gets what was queued for it, then end of file); the tap carries on with
//!   other clients, or exits after the first one with `--once` (status 0 when
//!   the conversation ended without an error). A daemon that cannot be reached is
//!   reported and the client is closed.
//! - A frame flagged for a descriptor that did not arrive is forwarded without
//!   the flag (C gives such a frame fd -1; forwarding the flag would make a legacy
//!   C reader take the next descriptor instead).
//!
//! Typical use: start the daemon (or move its socket aside), run
//! `imsg-tap --names bgpd /tmp/tap.sock /var/run/bgpd.sock`, and point the client
//! at the tap (`bgpctl -s /tmp/tap.sock`, `tmux -S /tmp/tap.sock`).

use std::ffi::OsString;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use imsg_io::{Channel, Config, Dialect, DialectHint, ReadStatus};
use imsg_tools::names::Names;
use imsg_tools::record::{Direction, Record, Seen};
use imsg_tools::{DialectChoice, Output};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

const USAGE: &str = "usage: imsg-tap [--dialect legacy|current|auto] [--client-dialect D] \
[--server-dialect D] [--max N] [--names TABLE] [--json] [--once] LISTEN_PATH DAEMON_PATH";

/// How long to wait before retrying when the descriptor guard refuses a read or the
/// kernel refuses more descriptors in flight (`ETOOMANYREFS`).
const RETRY: Duration = Duration::from_millis(10);

/// The whole command line.
#[derive(Debug)]
struct Options {
    client: DialectChoice,
    server: DialectChoice,
    /// The daemon side follows the dialect the client side learnt.
    follow: bool,
    max: Option<usize>,
    output: Output,
    once: bool,
    listen: PathBuf,
    daemon: PathBuf,
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Options>, String> {
    let mut args = args.into_iter();
    let mut both = DialectChoice::Fixed(Dialect::Legacy);
    let (mut client, mut server) = (None, None);
    let mut max = None;
    let mut output = Output::default();
    let mut once = false;
    let mut paths = Vec::new();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().and_then(|v| v.into_string().ok()))
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => output.json = true,
            "--once" => once = true,
            "--dialect" => both = value()?.parse()?,
            "--client-dialect" => client = Some(value()?.parse()?),
            "--server-dialect" => server = Some(value()?.parse()?),
            "--names" => output.names = Some(Names::load(&value()?)?),
            "--max" => {
                let v = value()?;
                max = Some(
                    v.parse()
                        .map_err(|_| format!("--max: {v:?} is not a number"))?,
                );
            }
            _ if name.starts_with('-') && name != "-" => {
                return Err(format!("unknown option {arg:?}"))
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let [listen, daemon]: [PathBuf; 2] = paths
        .try_into()
        .map_err(|_| "give LISTEN_PATH and DAEMON_PATH".to_owned())?;
    Ok(Some(Options {
        follow: both == DialectChoice::Auto && server.is_none(),
        client: client.unwrap_or(both),
        server: server.unwrap_or(both),
        max,
        output,
        once,
        listen,
        daemon,
    }))
}

/// Removes the listening socket's file when dropped.
struct BoundPath<'a>(&'a Path);

impl Drop for BoundPath<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Binds `path`, replacing a stale socket file nobody listens on any more; refuses
/// one that is in use.
fn listen(path: &Path) -> Result<UnixListener, String> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use by a listening process",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
            UnixListener::bind(path)
        }
        r => r,
    }
    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

/// One end of a conversation.
struct Side {
    chan: Channel,
    /// "client" or "daemon".
    name: &'static str,
    /// Which way frames read from this side go.
    direction: Direction,
    /// The dialect choice, for the hint in errors.
    choice: DialectChoice,
    /// It sent end of file.
    eof: bool,
    /// Its writing side was shut (after the other side's end of file).
    shut: bool,
    /// Its last read was refused by the descriptor guard.
    guard: bool,
}

impl Side {
    fn new(
        stream: UnixStream,
        name: &'static str,
        direction: Direction,
        choice: DialectChoice,
        opts: &Options,
    ) -> Result<Side, String> {
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let chan = Channel::new(stream, config(choice.initial(), opts)?)
            .map_err(|e| format!("{name} channel: {e}"))?;
        let mut side = Side {
            chan,
            name,
            direction,
            choice,
            eof: false,
            guard: false,
            shut: false,
        };
        side.chan.set_detect_dialect(choice == DialectChoice::Auto);
        Ok(side)
    }

    /// `--client-dialect` or `--server-dialect`, for hints.
    fn option(&self) -> &'static str {
        match self.direction {
            Direction::ToDaemon => "--client-dialect",
            Direction::ToClient => "--server-dialect",
        }
    }

    /// `: <hint>; try --x-dialect D` when this side hung up right after a frame
    /// with a descriptor, or nothing.
    fn hint(&self) -> String {
        match self.chan.peer_may_speak() {
            Some(d) if self.choice != DialectChoice::Auto => {
                format!("; {}: try {} {d}", DialectHint(d), self.option())
            }
            _ => String::new(),
        }
    }
}

/// A channel's settings: descriptors on, and pid 0 kept as 0 (frames are forwarded
/// with the pid they came with).
fn config(dialect: Dialect, opts: &Options) -> Result<Config, String> {
    let mut config = Config::default()
        .with_dialect(dialect)
        .with_fdpass(true)
        .with_pid(0);
    if let Some(max) = opts.max {
        config = config
            .with_max_frame(max)
            .map_err(|e| format!("--max {max}: {e}"))?;
    }
    Ok(config)
}

/// Writes what is queued for `side`. `Ok(true)` when the kernel refused more
/// descriptors in flight (retry later).
fn write(side: &mut Side) -> Result<bool, String> {
    let unsent = side.chan.queue_len();
    match side.chan.write() {
        Ok(imsg_io::WriteStatus::RetryLater) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => {
            side.chan.clear_queue();
            Err(format!(
                "writing to the {}: {e} ({unsent} frames not delivered){}",
                side.name,
                side.hint()
            ))
        }
    }
}

/// Reads from `from`, prints every complete frame and queues it for `to`. With
/// `follow`, `to` is made to speak what `from` learnt before anything is queued.
fn pump(
    client: u64,
    from: &mut Side,
    to: &mut Side,
    output: &Output,
    follow: Option<&Options>,
) -> Result<(), String> {
    let read = from.chan.read();
    from.guard = matches!(read, Ok(ReadStatus::FdGuard));
    if let Some(opts) = follow {
        follow_dialect(from, to, opts)?;
    }
    while let Some(mut m) = from
        .chan
        .get_owned()
        .map_err(|e| format!("from the {}: {e}", from.name))?
    {
        let fd: Option<OwnedFd> = m.take_fd();
        let record = Record {
            header: m.header(),
            payload: m.payload(),
            fd_arrived: Some(fd.is_some()),
            names: None,
            seen: Some(Seen {
                time: SystemTime::now(),
                client,
                direction: from.direction,
            }),
        };
        // A reader that went away (`imsg-tap … | head`) does not stop the relay.
        let _ = output.print(&mut io::stdout().lock(), record);
        to.chan
            .compose(m.msg_type(), m.peerid(), m.pid(), fd, m.payload())
            .map_err(|e| format!("cannot forward to the {}: {e}", to.name))?;
    }
    match read {
        Ok(ReadStatus::Eof) => {
            from.eof = true;
            eprintln!(
                "imsg-tap: client {client}: the {} closed the connection{}",
                from.name,
                from.hint()
            );
        }
        Ok(_) => {}
        Err(e) => return Err(format!("from the {}: {e}", from.name)),
    }
    Ok(())
}

/// Makes the daemon side speak what the client side learnt, while nothing is in
/// flight on it: its channel is made again around the same socket.
fn follow_dialect(client: &Side, daemon: &mut Side, opts: &Options) -> Result<(), String> {
    let learnt = client.chan.dialect();
    if learnt == daemon.chan.dialect()
        || daemon.chan.queue_len() > 0
        || daemon.chan.buffered() > 0
        || daemon.chan.pending_fds() > 0
    {
        return Ok(());
    }
    let socket = rustix::io::dup(daemon.chan.as_fd()).map_err(|e| e.to_string())?;
    daemon.chan = Channel::new(socket, config(learnt, opts)?).map_err(|e| e.to_string())?;
    daemon.choice = DialectChoice::Fixed(learnt);
    Ok(())
}

/// Shuts `to`'s writing side once `from` sent end of file and everything queued
/// for `to` was written.
fn shut_after(from: &Side, to: &mut Side) {
    if from.eof && !to.shut && to.chan.queue_len() == 0 {
        let _ = rustix::net::shutdown(&to.chan, rustix::net::Shutdown::Write);
        to.shut = true;
    }
}

/// Relays one client's conversation until both sides are done or one fails.
fn relay(n: u64, client: UnixStream, opts: &Options) -> Result<(), String> {
    let daemon = UnixStream::connect(&opts.daemon).map_err(|e| {
        format!(
            "cannot connect to the daemon at {}: {e}",
            opts.daemon.display()
        )
    })?;
    let mut c = Side::new(client, "client", Direction::ToDaemon, opts.client, opts)?;
    let mut d = Side::new(daemon, "daemon", Direction::ToClient, opts.server, opts)?;
    let mut retry = false;
    loop {
        // After one side's end of file, the other gets what was queued for it,
        // then end of file too.
        shut_after(&c, &mut d);
        shut_after(&d, &mut c);
        if c.eof && d.eof && c.chan.queue_len() == 0 && d.chan.queue_len() == 0 {
            return Ok(());
        }
        if retry || c.guard || d.guard {
            std::thread::sleep(RETRY);
        }
        let interest = |s: &Side| {
            let mut f = PollFlags::empty();
            if !s.eof {
                f |= PollFlags::IN;
            }
            if s.chan.queue_len() > 0 {
                f |= PollFlags::OUT;
            }
            f
        };
        // A side with nothing to wait for is left out: a socket whose peer hung
        // up reports `POLLHUP` whatever is asked, and would make poll spin.
        let (ic, id) = (interest(&c), interest(&d));
        let mut fds = Vec::with_capacity(2);
        if !ic.is_empty() {
            fds.push(PollFd::new(&c.chan, ic));
        }
        if !id.is_empty() {
            fds.push(PollFd::new(&d.chan, id));
        }
        if fds.is_empty() {
            // Both sides ended and nothing is left to write.
            return Ok(());
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let mut revents = fds.iter().map(|f| f.revents());
        let rc = if ic.is_empty() {
            PollFlags::empty()
        } else {
            revents.next().unwrap_or(PollFlags::empty())
        };
        let rd = if id.is_empty() {
            PollFlags::empty()
        } else {
            revents.next().unwrap_or(PollFlags::empty())
        };
        drop(fds);
        let ready = PollFlags::IN | PollFlags::ERR | PollFlags::HUP;
        retry = false;
        if c.chan.queue_len() > 0 && rc.intersects(PollFlags::OUT | PollFlags::ERR) {
            retry |= write(&mut c)?;
        }
        if d.chan.queue_len() > 0 && rd.intersects(PollFlags::OUT | PollFlags::ERR) {
            retry |= write(&mut d)?;
        }
        if !c.eof && rc.intersects(ready) {
            let follow = opts.follow.then_some(opts);
            pump(n, &mut c, &mut d, &opts.output, follow)?;
        }
        if !d.eof && rd.intersects(ready) {
            pump(n, &mut d, &mut c, &opts.output, None)?;
        }
    }
}

fn serve(n: u64, client: UnixStream, opts: &Options) -> bool {
    eprintln!("imsg-tap: client {n}: connected");
    match relay(n, client, opts) {
        Ok(()) => {
            eprintln!("imsg-tap: client {n}: done");
            true
        }
        Err(why) => {
            eprintln!("imsg-tap: client {n}: {why}");
            false
        }
    }
}

fn run(opts: Options) -> Result<bool, String> {
    let listener = listen(&opts.listen)?;
    let opts = Arc::new(opts);
    let _bound = BoundPath(&opts.listen);
    let mut n = 0;
    loop {
        let client = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Out of descriptors: let some close instead of spinning.
            Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::MFILE | Errno::NFILE)) => {
                eprintln!("imsg-tap: accept: {e}; waiting");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(e) => return Err(format!("accept: {e}")),
        };
        n += 1;
        if opts.once {
            return Ok(serve(n, client, &opts));
        }
        let opts = Arc::clone(&opts);
        std::thread::spawn(move || serve(n, client, &opts));
    }
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("imsg-tap: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Settings are checked before listening, so a bad --max is a usage error.
    for choice in [opts.client, opts.server] {
        if let Err(why) = config(choice.initial(), &opts) {
            eprintln!("imsg-tap: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    match run(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(why) => {
            eprintln!("imsg-tap: {why}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Option<Options>, String> {
        parse_args(a.iter().map(OsString::from))
    }

    #[test]
    fn dialects_per_side() {
        let o = args(&["--dialect", "current", "--server-dialect=legacy", "a", "b"])
            .unwrap()
            .unwrap();
        assert_eq!(o.client, DialectChoice::Fixed(Dialect::Current));
        assert_eq!(o.server, DialectChoice::Fixed(Dialect::Legacy));
        assert!(!o.follow);
        let o = args(&["--dialect", "auto", "--once", "a", "b"])
            .unwrap()
            .unwrap();
        assert!(o.follow && o.once);
        assert_eq!((o.listen, o.daemon), ("a".into(), "b".into()));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["a"],
            &["a", "b", "c"],
            &["--dialect", "x", "a", "b"],
            &["--max", "big", "a", "b"],
            &["--frob", "a", "b"],
            &["--names", "/nonexistent", "a", "b"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
        assert!(args(&["--help"]).unwrap().is_none());
    }
}
