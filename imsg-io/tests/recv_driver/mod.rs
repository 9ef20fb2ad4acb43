//! Drives a channel's receive path with arbitrary bytes and arbitrary descriptor
//! arrivals over a real socketpair. Shared by the `io_recv` fuzz target and the
//! seed replay test (`tests/io_recv_seeds.rs`).
//!
//! Input: one settings byte, then chunks of `[control] [length] [bytes...]`:
//! - settings: bit 0 dialect (current if set), bit 1 descriptor passing off,
//!   bits 2..5 the frame limit, bits 5..7 the receive buffer size.
//! - control: bits 0..2 number of descriptors sent with the chunk (3 overflows
//!   one receive: `MSG_CTRUNC`), bit 2 kind (a socket instead of `/dev/null`), bit
//!   3 read everything now, bit 6 length × 16.
//!
//! Checks: no panic, a descriptor is only ever delivered with a flagged frame, and
//! the set of open descriptors is the same before and after (so the caller must
//! not open or close descriptors concurrently).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use imsg_io::{Channel, Config, Dialect, Error, ReadStatus};

/// Descriptor numbers the leak check looks at: one bit each. The kernel gives every
/// new descriptor the lowest free number and the driver holds few at a time, so a
/// leak lands below this unless dozens are already open (checked).
const WATCHED: usize = 64;

/// Which of the descriptors `0..WATCHED` are open, as a bit mask, from one `poll`
/// (`POLLNVAL` marks a closed one): a small fraction of the cost of listing
/// `/proc/self/fd`, which was a large share of each input's time.
fn open_fds() -> u64 {
    let mut set: [libc::pollfd; WATCHED] = std::array::from_fn(|fd| libc::pollfd {
        fd: fd as libc::c_int,
        events: 0,
        revents: 0,
    });
    // SAFETY: `set` is a valid array of WATCHED pollfd entries that poll may write
    // the `revents` of; a zero timeout never blocks. poll only looks the numbers up
    // in the descriptor table, so closed ones are reported, not touched.
    let n = unsafe { libc::poll(set.as_mut_ptr(), WATCHED as libc::nfds_t, 0) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    set.iter()
        .enumerate()
        .filter(|(_, p)| p.revents & libc::POLLNVAL == 0)
        .fold(0, |mask, (fd, _)| mask | 1 << fd)
}

/// The descriptors passed: two kept open for the whole run and sent as they are
/// (the receiver gets a new descriptor for each), which costs far less than
/// opening `/dev/null`, making a socketpair or even a duplicate each time.
fn fd_sources() -> &'static (OwnedFd, OwnedFd) {
    static SOURCES: std::sync::OnceLock<(OwnedFd, OwnedFd)> = std::sync::OnceLock::new();
    SOURCES.get_or_init(|| {
        let null = std::fs::File::open("/dev/null").expect("/dev/null").into();
        (null, UnixStream::pair().expect("socketpair").0.into())
    })
}

#[derive(PartialEq)]
enum Flow {
    Go,
    Stop,
}

struct Rx {
    ch: Channel,
    fdpass: bool,
    frames: usize,
}

impl Rx {
    /// Takes every complete frame, checking descriptors.
    fn take_all(&mut self) -> Flow {
        loop {
            match self.ch.get() {
                Ok(Some(mut m)) => {
                    self.frames += 1;
                    let fd = m.take_fd();
                    assert!(fd.is_none() || m.flagged_fd(), "fd on an unflagged frame");
                    assert!(fd.is_none() || self.fdpass, "fd without fdpass");
                    let _ = (m.msg_type(), m.peerid(), m.pid(), m.reader().left());
                }
                Ok(None) => return Flow::Go,
                Err(Error::Frame(_)) => return Flow::Stop,
                Err(e) => panic!("get: {e}"),
            }
        }
    }

    /// Reads and takes frames until the socket has nothing more.
    fn drain(&mut self) -> Flow {
        loop {
            if self.take_all() == Flow::Stop {
                return Flow::Stop;
            }
            match self.ch.read() {
                Ok(ReadStatus::Read(_)) | Err(Error::DescriptorsLost) => {}
                Ok(ReadStatus::WouldBlock) => return Flow::Go,
                Ok(ReadStatus::FdGuard) => panic!("descriptor guard tripped"),
                Ok(ReadStatus::Eof) | Err(Error::UnexpectedEof { .. }) | Err(Error::Frame(_)) => {
                    self.take_all();
                    return Flow::Stop;
                }
                Ok(status) => panic!("read: unexpected {status:?}"),
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

fn source_fd(socket: bool) -> BorrowedFd<'static> {
    let (null, sock) = fd_sources();
    if socket {
        sock.as_fd()
    } else {
        null.as_fd()
    }
}

/// A connected non-blocking, close-on-exec stream pair in one system call (a
/// `UnixStream::pair` and two `set_nonblocking` take five).
#[cfg(not(target_vendor = "apple"))]
fn nonblocking_pair() -> (UnixStream, UnixStream) {
    let mut sv = [-1; 2];
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: `sv` has room for the two descriptors socketpair writes on success.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, sv.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both are open descriptors that nothing else owns.
    unsafe {
        (
            std::os::fd::FromRawFd::from_raw_fd(sv[0]),
            std::os::fd::FromRawFd::from_raw_fd(sv[1]),
        )
    }
}

/// macOS has no `SOCK_NONBLOCK`.
#[cfg(target_vendor = "apple")]
fn nonblocking_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

/// Runs one input; returns the number of frames delivered.
pub fn run(data: &[u8]) -> usize {
    fd_sources();
    let before = open_fds();
    assert!(
        before.count_ones() < WATCHED as u32 / 2,
        "too many descriptors open for the leak check"
    );
    let frames = run_inner(data);
    let after = open_fds();
    assert!(
        after == before,
        "descriptor leak: open before {before:#x}, after {after:#x}"
    );
    frames
}

fn run_inner(data: &[u8]) -> usize {
    let Some((&settings, mut rest)) = data.split_first() else {
        return 0;
    };
    let dialect = if settings & 1 != 0 {
        Dialect::Current
    } else {
        Dialect::Legacy
    };
    let fdpass = settings & 2 == 0;
    let max = [16, 40, 100, 1000, 4096, 16384, 65535, 70000][((settings >> 2) & 7) as usize]
        .min(dialect.max_frame_len());
    let bufsize = [16, 64, 1000, 65536][((settings >> 5) & 3) as usize];
    let cfg = Config::default()
        .with_dialect(dialect)
        .with_max_frame(max)
        .expect("valid limit")
        .with_fdpass(fdpass);
    let (a, b) = nonblocking_pair();
    let mut rx = Rx {
        ch: Channel::new(b, cfg).expect("channel"),
        fdpass,
        frames: 0,
    };
    rx.ch.set_recv_buffer_size(bufsize);
    let mut flow = Flow::Go;
    while flow == Flow::Go {
        let Some((&ctl, r)) = rest.split_first() else {
            break;
        };
        let Some((&len, r)) = r.split_first() else {
            break;
        };
        let len = if ctl & 0x40 != 0 {
            len as usize * 16
        } else {
            len as usize
        };
        let (mut bytes, r) = r.split_at(len.min(r.len()));
        rest = r;
        let source = source_fd(ctl & 4 != 0);
        let mut fds: &[BorrowedFd<'_>] = if bytes.is_empty() {
            &[]
        } else {
            &[source; 3][..(ctl & 3) as usize]
        };
        while !bytes.is_empty() && flow == Flow::Go {
            match imsg_io::raw::sendmsg(a.as_fd(), bytes, fds) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    fds = &[];
                }
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    flow = rx.drain();
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        if ctl & 8 != 0 && flow == Flow::Go {
            flow = rx.drain();
        }
    }
    drop(a);
    if flow == Flow::Go {
        rx.drain();
    }
    rx.frames
}
