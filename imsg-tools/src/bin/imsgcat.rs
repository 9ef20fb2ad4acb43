//! `imsgcat`: a netcat for imsg, for people who debug C daemons.
//!
//! ```text
//! imsgcat [--dialect legacy|current|auto] [--max N] [--names TABLE] [--json]
//!         (--connect PATH | --listen PATH)
//!         [--send type:peerid:pid:HEX|@FILE[:fd=PATH]]... [--after N] [--count N]
//!         [--timeout SECS]
//! ```
//!
//! - `--connect PATH` connects to a Unix stream socket; `--listen PATH` binds one,
//!   accepts one connection and removes the socket file when done.
//! - `--dialect` chooses the header layout (default `legacy`; `auto` learns the
//!   peer's from the first frame it sends with a descriptor and answers in it,
//!   starting as legacy, so with a limit of at most 65535); `--max N` the
//!   limit on a frame's **total** size, header included (default 16384), checked
//!   as C's `imsgbuf_set_maxsize` did until 2025 (16..=the dialect's maximum).
//! - `--send type:peerid:pid:HEX[:fd=PATH]` queues a frame (decimal or `0x` hex
//!   for type and peerid, decimal pid; HEX may be empty; pid 0 means this
//!   process's pid; `fd=PATH` opens PATH read-only and passes the descriptor with
//!   the frame). `@FILE` instead of HEX takes the payload from FILE (whose name
//!   may not hold a colon), for payloads larger than a command line. Frames go out once `--after N` frames have been received
//!   (default 0: at once), in the order given.
//! - Every frame received is printed on stdout as one `imsg-dump` line:
//!   `type=<u32> len=<total> peerid=<u32> pid=<i32> fd=<0|1> payload=<hex>`
//!   (`fd` is the header's descriptor flag; a descriptor received is closed). A
//!   frame flagged for a descriptor that did not arrive shows `fd=1(none)`.
//!   `--names TABLE` adds message names, `--json` prints JSON objects instead.
//! - Exit status: 0 after `--count N` frames, or at end of file when no `--count`
//!   was given, once everything queued is sent (the peer may have shut only its
//!   writing side); 1 at end of file before `--count N` frames, on a protocol
//!   error, an I/O error (a frame that could not be sent included: the reason
//!   says how many were not), when the descriptor limit leaves no room to ever
//!   receive a descriptor, or when `--timeout` (for the whole run, in seconds,
//!   fractions allowed) passes, with a one-line reason on stderr; 2 on a usage
//!   error. Frames received are printed before any failure is reported (frames
//!   complete before a descriptor loss, `MSG_CTRUNC`, included).
//! - `ETOOMANYREFS` (too many descriptors in flight for this user) is waited out
//!   like a full socket: the frame stays queued and is retried every 10 ms.
//!
//! Reading and writing are interleaved on a non-blocking socket, so two
//! `imsgcat`s that both send a lot never deadlock.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use imsg_io::{Channel, Config, Dialect, ReadStatus};
use imsg_tools::names::Names;
use imsg_tools::record::Record;
use imsg_tools::{DialectChoice, Output};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

const USAGE: &str = "usage: imsgcat [--dialect legacy|current|auto] [--max N] [--names TABLE] \
[--json] (--connect PATH | --listen PATH) [--send type:peerid:pid:HEX|@FILE[:fd=PATH]]... \
[--after N] [--count N] [--timeout SECS]";

/// How long to wait before retrying a write refused with `ETOOMANYREFS`, or a read
/// the descriptor guard refused.
const RETRY: Duration = Duration::from_millis(10);

/// Where the one connection comes from.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Connect(PathBuf),
    Listen(PathBuf),
}

/// One `--send` frame, as given.
#[derive(Debug, PartialEq, Eq)]
struct SendSpec {
    ty: u32,
    peerid: u32,
    pid: i32,
    payload: Vec<u8>,
    fd_path: Option<PathBuf>,
}

/// The whole command line.
#[derive(Debug)]
struct Options {
    dialect: DialectChoice,
    output: Output,
    max: Option<usize>,
    endpoint: Endpoint,
    sends: Vec<SendSpec>,
    after: u64,
    count: Option<u64>,
    timeout: Option<Duration>,
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// `type:peerid:pid:HEX[:fd=PATH]` (PATH may itself hold colons).
fn parse_send(spec: &OsStr) -> Result<SendSpec, String> {
    let bad = |why: &str| format!("bad --send {:?}: {why}", spec.to_string_lossy());
    let mut fields = spec.as_bytes().splitn(5, |&b| b == b':');
    let mut text = |name: &str| {
        fields
            .next()
            .and_then(|f| std::str::from_utf8(f).ok())
            .ok_or_else(|| bad(&format!("missing {name}")))
    };
    let ty = text("type")?;
    let ty = parse_u32(ty).ok_or_else(|| bad("type is not a u32"))?;
    let peerid = text("peerid")?;
    let peerid = parse_u32(peerid).ok_or_else(|| bad("peerid is not a u32"))?;
    let pid = text("pid")?;
    let pid = pid.parse::<i32>().map_err(|_| bad("pid is not an i32"))?;
    let hex = fields.next().ok_or_else(|| bad("missing HEX"))?;
    let payload = match hex.strip_prefix(b"@") {
        Some(file) => std::fs::read(OsStr::from_bytes(file))
            .map_err(|e| bad(&format!("cannot read the payload file: {e}")))?,
        None => parse_hex(hex).ok_or_else(|| bad("HEX is not an even number of hex digits"))?,
    };
    let fd_path = match fields.next() {
        None => None,
        Some(rest) => match rest.strip_prefix(b"fd=") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(OsStr::from_bytes(p))),
            _ => return Err(bad("the fifth field must be fd=PATH")),
        },
    };
    Ok(SendSpec {
        ty,
        peerid,
        pid,
        payload,
        fd_path,
    })
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Options>, String> {
    let mut args = args.into_iter();
    let mut dialect = DialectChoice::Fixed(Dialect::Legacy);
    let mut output = Output::default();
    let mut max = None;
    let mut endpoint = None;
    let mut sends = Vec::new();
    let mut after = 0;
    let mut count = None;
    let mut timeout = None;
    while let Some(arg) = args.next() {
        // `--name=value` or `--name value`.
        let (name, inline) = match arg.as_bytes().iter().position(|&b| b == b'=') {
            Some(i) if arg.as_bytes().starts_with(b"--") => (
                OsStr::from_bytes(&arg.as_bytes()[..i]).to_os_string(),
                Some(OsStr::from_bytes(&arg.as_bytes()[i + 1..]).to_os_string()),
            ),
            _ => (arg.clone(), None),
        };
        let name = name.to_string_lossy().into_owned();
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        if name == "--json" {
            output.json = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |v: OsString| -> Result<u64, String> {
            v.to_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{name}: {:?} is not a number", v.to_string_lossy()))
        };
        match name.as_str() {
            "--dialect" => {
                let v = value()?;
                dialect = v.to_string_lossy().parse()?;
            }
            "--names" => {
                let v = value()?;
                output.names = Some(Names::load(&v.to_string_lossy())?);
            }
            "--max" => max = Some(usize::try_from(number(value()?)?).map_err(|e| e.to_string())?),
            "--connect" | "--listen" => {
                if endpoint.is_some() {
                    return Err("give exactly one of --connect and --listen".into());
                }
                let path = PathBuf::from(value()?);
                endpoint = Some(if name == "--connect" {
                    Endpoint::Connect(path)
                } else {
                    Endpoint::Listen(path)
                });
            }
            "--send" => sends.push(parse_send(&value()?)?),
            "--after" => after = number(value()?)?,
            "--count" => count = Some(number(value()?)?),
            "--timeout" => {
                let v = value()?;
                let secs = v.to_str().and_then(|s| s.parse::<f64>().ok());
                let d = secs.and_then(|s| Duration::try_from_secs_f64(s).ok());
                timeout = Some(d.ok_or_else(|| {
                    format!(
                        "--timeout: {:?} is not a number of seconds",
                        v.to_string_lossy()
                    )
                })?);
            }
            _ => return Err(format!("unknown argument {:?}", arg.to_string_lossy())),
        }
    }
    let endpoint = endpoint.ok_or("give one of --connect PATH and --listen PATH")?;
    Ok(Some(Options {
        dialect,
        output,
        max,
        endpoint,
        sends,
        after,
        count,
        timeout,
    }))
}

/// Removes the socket file it was made for when dropped (`--listen`).
struct BoundPath<'a>(&'a Path);

impl Drop for BoundPath<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Waits for `events` on `fd` until `deadline`; the events that came.
fn wait(fd: impl AsFd, events: PollFlags, deadline: Option<Instant>) -> Result<PollFlags, String> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("timeout".into());
                }
                Timespec::try_from(left).ok()
            }
        };
        let mut fds = [PollFd::new(&fd, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return Ok(fds[0].revents()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
    }
}

/// The frames to send, their descriptors already open.
type Outgoing = Vec<(SendSpec, Option<OwnedFd>)>;

fn open_fds(sends: Vec<SendSpec>) -> Result<Outgoing, String> {
    sends
        .into_iter()
        .map(|s| {
            let fd = match &s.fd_path {
                Some(p) => Some(OwnedFd::from(
                    File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?,
                )),
                None => None,
            };
            Ok((s, fd))
        })
        .collect()
}

fn queue(chan: &mut Channel, out: Outgoing) -> Result<(), String> {
    for (s, fd) in out {
        chan.compose(s.ty, s.peerid, s.pid, fd, &s.payload)
            .map_err(|e| format!("cannot queue frame of type {}: {e}", s.ty))?;
    }
    Ok(())
}

fn connect(endpoint: &Endpoint, deadline: Option<Instant>) -> Result<UnixStream, String> {
    match endpoint {
        Endpoint::Connect(path) => UnixStream::connect(path)
            .map_err(|e| format!("cannot connect to {}: {e}", path.display())),
        Endpoint::Listen(path) => {
            let listener = UnixListener::bind(path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            let _bound = BoundPath(path);
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            loop {
                wait(&listener, PollFlags::IN, deadline)
                    .map_err(|e| format!("{e} waiting for a connection on {}", path.display()))?;
                match listener.accept() {
                    Ok((stream, _)) => return Ok(stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("accept: {e}")),
                }
            }
        }
    }
}

/// The one-line reason for a failed receive.
fn receive_error(e: imsg_io::Error) -> String {
    match e {
        imsg_io::Error::Io(e) => format!("read: {e}"),
        e => format!("protocol error: {e}"),
    }
}

/// Why writing failed, with the number of frames it left unsent.
fn write_failure(e: imsg_io::Error, unsent: usize, chan: &Channel) -> String {
    format!(
        "write: {e} ({unsent} frames not sent){}",
        dialect_hint(chan)
    )
}

/// `; the peer … may speak the X imsg dialect …: try --dialect X` when the peer hung
/// up right after a frame with a descriptor, or nothing.
fn dialect_hint(chan: &Channel) -> String {
    match chan.peer_may_speak() {
        Some(d) => format!("; {}: try --dialect {d}", imsg_io::DialectHint(d)),
        None => String::new(),
    }
}

/// What one write attempt asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wrote {
    /// Written, or the socket is full: wait for it to become writable.
    Ok,
    /// `ETOOMANYREFS`: this user has too many descriptors in flight (the peer has
    /// not read them yet). Like a full socket, but nothing to poll for: retry after
    /// [`RETRY`]. The frame is still queued.
    Backoff,
}

/// One write when the socket is ready. On failure the queue is discarded
/// (descriptors closed) and the reason names the frames it held.
fn write_ready(chan: &mut Channel) -> Result<Wrote, String> {
    let unsent = chan.queue_len();
    match chan.write() {
        Ok(imsg_io::WriteStatus::RetryLater) => Ok(Wrote::Backoff),
        Ok(_) => Ok(Wrote::Ok),
        Err(e) => {
            chan.clear_queue();
            Err(write_failure(e, unsent, chan))
        }
    }
}

/// The reason to give up when the descriptor guard refuses to read and nothing
/// this program holds will ever be closed to make room.
fn guard_stuck() -> String {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1));
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let limit = limit.map_or("unlimited".to_owned(), |l| l.to_string());
    format!(
        "cannot receive: a descriptor could arrive and this process cannot make room for \
         one ({open} descriptors open, limit {limit}, {} free ones needed); raise the \
         limit (ulimit -n)",
        imsg_io::FD_HEADROOM
    )
}

/// The one-line reason to exit with: `why` (if any) and the earlier write failure
/// (if any), counting the frames queued after it, which were not sent either.
fn failure(why: Option<String>, write_failed: &Option<String>, chan: &Channel) -> String {
    let Some(w) = write_failed else {
        return why.unwrap_or_default();
    };
    let later = chan.queue_len();
    let w = if later > 0 {
        format!("{w}; {later} frames queued after it not sent")
    } else {
        w.clone()
    };
    match why {
        None => w,
        Some(why) => format!("{why}; earlier {w}"),
    }
}

fn run(opts: Options) -> Result<(), String> {
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let mut config = Config::default()
        .with_dialect(opts.dialect.initial())
        .with_fdpass(true);
    if let Some(max) = opts.max {
        config = config
            .with_max_frame(max)
            .map_err(|e| format!("--max {max}: {e}"))?;
    }
    let mut pending = Some(open_fds(opts.sends)?);
    let output = opts.output;
    let stream = connect(&opts.endpoint, deadline)?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut chan = Channel::new(stream, config).map_err(|e| e.to_string())?;
    chan.set_detect_dialect(opts.dialect == DialectChoice::Auto);
    let mut out = io::stdout().lock();

    let mut received: u64 = 0;
    if opts.after == 0 {
        queue(&mut chan, pending.take().unwrap_or_default())?;
    }
    let timed_out = |received: u64| {
        format!(
            "timeout after {:?} ({received} frames received)",
            opts.timeout.unwrap_or_default()
        )
    };
    // A failed write is reported once the frames the peer sent before it went
    // away have been printed (at end of file, after --count, or with any later
    // failure); frames queued after it are counted as not sent too.
    let mut write_failed: Option<String> = None;
    let mut backoff = false;
    let mut guard = false;
    loop {
        let done = opts.count.is_some_and(|c| received >= c);
        let writing = write_failed.is_none() && chan.queue_len() > 0;
        if done && !writing {
            return match write_failed {
                None => Ok(()),
                Some(_) => Err(failure(None, &write_failed, &chan)),
            };
        }
        let mut events = PollFlags::empty();
        if !done {
            events |= PollFlags::IN;
        }
        if writing {
            events |= PollFlags::OUT;
        }
        if (guard && !done) || (backoff && writing) {
            // The socket stays readable while the descriptor guard refuses to
            // read, and writable while the kernel refuses more descriptors in
            // flight: poll would return at once. Give descriptors time to close.
            std::thread::sleep(RETRY);
        }
        let revents = wait(chan.as_fd(), events, deadline).map_err(|e| {
            let why = if e == "timeout" {
                timed_out(received)
            } else {
                e
            };
            failure(Some(why), &write_failed, &chan)
        })?;
        if writing && revents.intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP) {
            match write_ready(&mut chan) {
                Ok(w) => backoff = w == Wrote::Backoff,
                Err(e) => write_failed = Some(e),
            }
        }
        if done || !revents.intersects(PollFlags::IN | PollFlags::ERR | PollFlags::HUP) {
            continue;
        }
        // A failed read keeps the complete frames that came before the failure:
        // they are printed first.
        let read = chan.read();
        guard = matches!(read, Ok(ReadStatus::FdGuard));
        let (eof, read_failed) = match read {
            Ok(ReadStatus::Eof) => (true, None),
            Ok(_) => (false, None),
            Err(e) => (false, Some(e)),
        };
        if guard && chan.queue_len() == 0 {
            return Err(failure(Some(guard_stuck()), &write_failed, &chan));
        }
        while opts.count.is_none_or(|c| received < c) {
            let mut m = match chan.get() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    let why = Some(receive_error(e));
                    return Err(failure(why, &write_failed, &chan));
                }
            };
            let fd = m.take_fd();
            let record = Record {
                header: m.header(),
                payload: m.payload(),
                fd_arrived: Some(fd.is_some()),
                names: None,
                seen: None,
            };
            output
                .print(&mut out, record)
                .map_err(|e| format!("stdout: {e}"))?;
            drop(fd);
            received += 1;
            if received == opts.after {
                if let Some(p) = pending.take() {
                    queue(&mut chan, p)?;
                }
            }
        }
        if let Some(e) = read_failed {
            return Err(failure(Some(receive_error(e)), &write_failed, &chan));
        }
        if eof {
            if write_failed.is_some() {
                return Err(failure(None, &write_failed, &chan));
            }
            if let Some(c) = opts.count.filter(|&c| received < c) {
                return Err(format!(
                    "end of file after {received} of {c} frames{}",
                    dialect_hint(&chan)
                ));
            }
            // Frames with descriptors go one `sendmsg` each: some may still be
            // queued. The peer may only have shut its writing side.
            return flush_at_eof(&mut chan, deadline, opts.timeout);
        }
    }
}

/// Writes what is still queued when the peer's stream ended; a failure (or the
/// timeout) says how many frames were not sent.
fn flush_at_eof(
    chan: &mut Channel,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Result<(), String> {
    while chan.queue_len() > 0 {
        let unsent = chan.queue_len();
        wait(chan.as_fd(), PollFlags::OUT, deadline).map_err(|e| {
            let e = if e == "timeout" {
                format!("timeout after {:?}", timeout.unwrap_or_default())
            } else {
                e
            };
            format!("{e} at end of file ({unsent} frames not sent)")
        })?;
        if write_ready(chan)? == Wrote::Backoff {
            std::thread::sleep(RETRY);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("imsgcat: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("imsgcat: {why}");
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
    fn full_command_line() {
        let o = args(&[
            "--dialect",
            "current",
            "--max=100",
            "--listen",
            "/tmp/s",
            "--send",
            "200:8:-1:00ab:fd=/dev/null:x",
            "--send=0x10:0:0:",
            "--after",
            "2",
            "--count",
            "3",
            "--timeout",
            "1.5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.dialect, DialectChoice::Fixed(Dialect::Current));
        assert_eq!(o.max, Some(100));
        assert_eq!(o.endpoint, Endpoint::Listen("/tmp/s".into()));
        assert_eq!(
            o.sends,
            [
                SendSpec {
                    ty: 200,
                    peerid: 8,
                    pid: -1,
                    payload: vec![0, 0xab],
                    fd_path: Some("/dev/null:x".into())
                },
                SendSpec {
                    ty: 16,
                    peerid: 0,
                    pid: 0,
                    payload: vec![],
                    fd_path: None
                }
            ]
        );
        assert_eq!((o.after, o.count), (2, Some(3)));
        assert_eq!(o.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn defaults_and_help() {
        let o = args(&["--connect", "s"]).unwrap().unwrap();
        assert_eq!(o.dialect, DialectChoice::Fixed(Dialect::Legacy));
        assert_eq!((o.max, o.after, o.count, o.timeout), (None, 0, None, None));
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["--connect", "a", "--listen", "b"],
            &["--connect"],
            &["--connect", "a", "--dialect", "new"],
            &["--connect", "a", "--count", "-1"],
            &["--connect", "a", "--timeout", "soon"],
            &["--connect", "a", "--timeout", "-1"],
            &["--connect", "a", "--frobnicate"],
            &["--connect", "a", "--send", "1:2:3"],
            &["--connect", "a", "--send", "1:2:3:abc"],
            &["--connect", "a", "--send", "1:2:3:zz"],
            &["--connect", "a", "--send", "x:2:3:"],
            &["--connect", "a", "--send", "1:2:99999999999:"],
            &["--connect", "a", "--send", "1:2:3::nofd"],
            &["--connect", "a", "--send", "1:2:3::fd="],
        ] {
            assert!(args(bad).is_err(), "{bad:?} accepted");
        }
    }
}
