//! Drives a channel's receive path with arbitrary bytes and arbitrary descriptor
//! arrivals, in one of two ways ([`Via`]): a `ChannelCore` fed by an in-memory
//! model of a Linux `AF_UNIX` stream socket (no system calls but the received
//! descriptors' `dup` and `close`), or a `Channel` over a real socketpair. Shared by
//! the `io_recv` (core) and `io_socket` (socket) fuzz targets and the seed replay
//! test (`tests/io_recv_seeds.rs`), which also checks that both ways give the same
//! outcome.
//!
//! Input: one settings byte, then chunks of `[control] [length] [bytes...]`, each
//! sent in one `sendmsg` (retried after the receiver drained the socket when the
//! socket buffer is full):
//! - settings: bit 0 dialect (current if set), bit 1 descriptor passing off,
//!   bits 2..5 the frame limit, bits 5..7 the receive buffer size.
//! - control: bits 0..2 number of descriptors sent with the chunk (3 overflows
//!   one receive: `MSG_CTRUNC`), bit 2 kind (a socket instead of `/dev/null`), bit
//!   3 read everything now, bit 6 length × 16.
//!
//! Checks: no panic, a descriptor is only ever delivered with a flagged frame, and
//! the set of open descriptors is the same before and after (so the caller must
//! not open or close descriptors concurrently).

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use imsg_io::{Channel, ChannelCore, Config, Dialect, Error, Message, ReadStatus};

/// How the bytes reach the receive path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `ChannelCore` fed from memory, the way `Channel::read` feeds it from a
    /// Linux stream socket.
    Core,
    /// `Channel` over a real socketpair.
    Socket,
}

/// What one input did, for comparing the two ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Frames delivered.
    pub frames: usize,
    /// Descriptors delivered with them.
    pub fds: usize,
    /// Reads that reported lost descriptors (`MSG_CTRUNC`).
    pub lost: usize,
    /// How the stream ended: `Some(true)` at a frame boundary, `Some(false)` on an
    /// error (bad frame, end inside a frame), `None` if the input ran out first.
    pub clean_end: Option<bool>,
    /// A send found the socket buffer full at least once. Where that happens
    /// depends on the kernel's accounting of queued messages (its version and
    /// settings), which the model only approximates; the seed replay test compares
    /// the two ways only on inputs where neither filled it.
    pub full: bool,
}

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
/// opening `/dev/null` or making a socketpair each time.
fn fd_sources() -> &'static (OwnedFd, OwnedFd) {
    static SOURCES: std::sync::OnceLock<(OwnedFd, OwnedFd)> = std::sync::OnceLock::new();
    SOURCES.get_or_init(|| {
        let null = std::fs::File::open("/dev/null").expect("/dev/null").into();
        (null, UnixStream::pair().expect("socketpair").0.into())
    })
}

fn source_fd(socket: bool) -> BorrowedFd<'static> {
    let (null, sock) = fd_sources();
    if socket {
        sock.as_fd()
    } else {
        null.as_fd()
    }
}

/// The stream under test, sender's end and receiver's.
trait Wire<'a> {
    /// Sends `bytes` with `fds` in one `sendmsg`: how many bytes were taken, or
    /// `None` if the socket buffer is full.
    fn send(&mut self, bytes: &'a [u8], fds: &[BorrowedFd<'static>]) -> Option<usize>;
    /// The sender closes its end.
    fn close(&mut self);
    /// One receive, as [`Channel::read`] answers it.
    fn read(&mut self) -> Result<ReadStatus, Error>;
    /// The next complete frame.
    fn get(&mut self) -> Result<Option<Message<'_>>, Error>;
}

/// A `Channel` over a real socketpair: `a` is the sender's end.
struct Socket {
    a: Option<UnixStream>,
    ch: Channel,
}

impl Wire<'_> for Socket {
    fn send(&mut self, bytes: &[u8], fds: &[BorrowedFd<'static>]) -> Option<usize> {
        let a = self.a.as_ref().expect("sender open");
        match imsg_io::raw::sendmsg(a.as_fd(), bytes, fds) {
            Ok(n) => Some(n),
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("send: {e}"),
        }
    }

    fn close(&mut self) {
        self.a = None;
    }

    fn read(&mut self) -> Result<ReadStatus, Error> {
        self.ch.read()
    }

    fn get(&mut self) -> Result<Option<Message<'_>>, Error> {
        self.ch.get()
    }
}

/// The socket buffer of the model: Linux refuses a send once the chunks queued on
/// a stream socket are charged this much (`net.core.wmem_default`).
const SOCKET_BUFFER: usize = 212_992;

/// What Linux charges a queued chunk of `len` bytes (one socket buffer: 256 bytes
/// of `sk_buff`, and the data with 320 bytes of shared info in a power-of-two
/// allocation of at least 512 bytes, or past 4 KiB a 512-byte head and a page).
/// Measured here by counting sends until `EAGAIN`: 278 of 1..=192 bytes, 167 of
/// 193..=704, 93 of 705..=1,728, 49 of 1,729..=3,776, 44 of 3,777..=4,080.
fn charge(len: usize) -> usize {
    256 + match len + 320 {
        n if n <= 4096 => n.next_power_of_two().max(512),
        _ => 512 + 4096,
    }
}

/// Descriptors one receive can install: `Channel::read`'s control buffer is
/// `CMSG_SPACE(sizeof(int))`, whose padding has room for two on 64-bit Linux; a
/// chunk with more arrives with `MSG_CTRUNC`.
// SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic on their argument.
const FDS_PER_RECV: usize = unsafe { (libc::CMSG_SPACE(4) - libc::CMSG_LEN(0)) as usize / 4 };

/// One `sendmsg`'s bytes in the model's socket, and its descriptors until a
/// receive takes them.
struct Chunk<'a> {
    bytes: &'a [u8],
    fds: usize,
    source: Option<BorrowedFd<'static>>,
    charge: usize,
}

/// A `ChannelCore` fed the way `Channel::read` feeds it from a Linux `AF_UNIX`
/// stream socket, the socket modelled in memory. What Linux does (checked with
/// real sockets, and by the seed replay test against [`Socket`]): a receive takes
/// the queued bytes in order, up to the room given; the descriptors of a chunk
/// come with the receive that takes its first byte, and that receive ends with
/// the chunk (or earlier, when the room runs out); more descriptors than fit the
/// control buffer are all lost (`MSG_CTRUNC`), and `Channel::read` then drops the
/// one it got and reports [`Error::DescriptorsLost`]. Of the ones that fit, it
/// keeps the first and closes the others, so the model hands the core one new
/// descriptor (a close-on-exec duplicate of the source), or none without
/// descriptor passing (`recv` discards them).
struct Memory<'a> {
    core: ChannelCore,
    fdpass: bool,
    queue: VecDeque<Chunk<'a>>,
    /// What the queued chunks are charged against the socket buffer.
    charged: usize,
    closed: bool,
}

impl<'a> Wire<'a> for Memory<'a> {
    fn send(&mut self, bytes: &'a [u8], fds: &[BorrowedFd<'static>]) -> Option<usize> {
        if self.charged >= SOCKET_BUFFER {
            return None;
        }
        let charge = charge(bytes.len());
        self.charged += charge;
        self.queue.push_back(Chunk {
            bytes,
            fds: fds.len(),
            source: fds.first().copied(),
            charge,
        });
        Some(bytes.len())
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn read(&mut self) -> Result<ReadStatus, Error> {
        let space = self.core.recv_space()?;
        if self.queue.is_empty() && !self.closed {
            return Ok(ReadStatus::WouldBlock);
        }
        let mut n = 0;
        let mut brought = None;
        while n < space.len() && brought.is_none() {
            let Some(chunk) = self.queue.front_mut() else {
                break;
            };
            let take = chunk.bytes.len().min(space.len() - n);
            space[n..n + take].copy_from_slice(&chunk.bytes[..take]);
            n += take;
            chunk.bytes = &chunk.bytes[take..];
            if chunk.fds > 0 {
                brought = chunk.source.map(|fd| (chunk.fds, fd));
                chunk.fds = 0;
            }
            if chunk.bytes.is_empty() {
                self.charged -= chunk.charge;
                self.queue.pop_front();
            }
        }
        if n == 0 {
            return self.core.end_of_stream().map(|()| ReadStatus::Eof);
        }
        match brought {
            Some((count, _)) if self.fdpass && count > FDS_PER_RECV => {
                self.core.received(n, None);
                Err(Error::DescriptorsLost)
            }
            Some((_, source)) if self.fdpass => {
                let fd = rustix::io::fcntl_dupfd_cloexec(source, 0).expect("dup");
                self.core.received(n, Some(fd));
                Ok(ReadStatus::Read(n))
            }
            _ => {
                self.core.received(n, None);
                Ok(ReadStatus::Read(n))
            }
        }
    }

    fn get(&mut self) -> Result<Option<Message<'_>>, Error> {
        self.core.get()
    }
}

#[derive(PartialEq)]
enum Flow {
    Go,
    Stop,
}

struct Rx<W> {
    wire: W,
    fdpass: bool,
    outcome: Outcome,
}

impl<'a, W: Wire<'a>> Rx<W> {
    /// Takes every complete frame, checking descriptors.
    fn take_all(&mut self) -> Flow {
        loop {
            match self.wire.get() {
                Ok(Some(mut m)) => {
                    self.outcome.frames += 1;
                    let fd = m.take_fd();
                    assert!(fd.is_none() || m.flagged_fd(), "fd on an unflagged frame");
                    assert!(fd.is_none() || self.fdpass, "fd without fdpass");
                    self.outcome.fds += usize::from(fd.is_some());
                    let _ = (m.msg_type(), m.peerid(), m.pid(), m.reader().left());
                }
                Ok(None) => return Flow::Go,
                Err(Error::Frame(_)) => {
                    self.outcome.clean_end = Some(false);
                    return Flow::Stop;
                }
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
            match self.wire.read() {
                Ok(ReadStatus::Read(_)) => {}
                Err(Error::DescriptorsLost) => self.outcome.lost += 1,
                Ok(ReadStatus::WouldBlock) => return Flow::Go,
                Ok(ReadStatus::FdGuard) => panic!("descriptor guard tripped"),
                Ok(ReadStatus::Eof) => {
                    self.take_all();
                    self.outcome.clean_end.get_or_insert(true);
                    return Flow::Stop;
                }
                Err(Error::UnexpectedEof { .. }) | Err(Error::Frame(_)) => {
                    self.take_all();
                    self.outcome.clean_end = Some(false);
                    return Flow::Stop;
                }
                Ok(status) => panic!("read: unexpected {status:?}"),
                Err(e) => panic!("read: {e}"),
            }
        }
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

/// Runs one input `via` the core or a socket.
pub fn run(data: &[u8], via: Via) -> Outcome {
    fd_sources();
    let before = open_fds();
    assert!(
        before.count_ones() < WATCHED as u32 / 2,
        "too many descriptors open for the leak check"
    );
    let outcome = run_inner(data, via);
    let after = open_fds();
    assert!(
        after == before,
        "descriptor leak: open before {before:#x}, after {after:#x}"
    );
    outcome
}

fn run_inner(data: &[u8], via: Via) -> Outcome {
    let Some((&settings, rest)) = data.split_first() else {
        return Outcome::default();
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
    match via {
        Via::Core => {
            let mut core = ChannelCore::new(cfg);
            core.set_recv_buffer_size(bufsize);
            let wire = Memory {
                core,
                fdpass,
                queue: VecDeque::new(),
                charged: 0,
                closed: false,
            };
            feed(wire, fdpass, rest)
        }
        Via::Socket => {
            let (a, b) = nonblocking_pair();
            let mut ch = Channel::new(b, cfg).expect("channel");
            ch.set_recv_buffer_size(bufsize);
            feed(Socket { a: Some(a), ch }, fdpass, rest)
        }
    }
}

/// Sends the chunks of `rest` over `wire`, reading as the input says and
/// whenever the socket buffer is full, then closes the sender's end and reads
/// the rest.
fn feed<'a, W: Wire<'a>>(wire: W, fdpass: bool, mut rest: &'a [u8]) -> Outcome {
    let mut rx = Rx {
        wire,
        fdpass,
        outcome: Outcome::default(),
    };
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
        let mut fds: &[BorrowedFd<'static>] = if bytes.is_empty() {
            &[]
        } else {
            &[source; 3][..(ctl & 3) as usize]
        };
        while !bytes.is_empty() && flow == Flow::Go {
            match rx.wire.send(bytes, fds) {
                Some(n) => {
                    bytes = &bytes[n..];
                    fds = &[];
                }
                None => {
                    rx.outcome.full = true;
                    flow = rx.drain();
                }
            }
        }
        if ctl & 8 != 0 && flow == Flow::Go {
            flow = rx.drain();
        }
    }
    rx.wire.close();
    if flow == Flow::Go {
        rx.drain();
    }
    rx.outcome
}
