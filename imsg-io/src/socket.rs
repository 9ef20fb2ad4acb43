//! The system calls: one send or receive of bytes, with at most one descriptor.
//!
//! Sends on a socket never raise `SIGPIPE` (`MSG_NOSIGNAL`, or `SO_NOSIGPIPE` on
//! macOS): a dead peer is `EPIPE`. On a descriptor that is not a socket (a pipe),
//! where no such flag exists, `SIGPIPE` is blocked in the calling thread around the
//! `write(2)` and the one it raised is consumed. Receives with descriptor passing
//! use `recvmsg` with a control buffer of `CMSG_SPACE(sizeof(int))`, as C does, and
//! make what arrives close-on-exec. What differs per system is in [`crate::sys`].

use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::sys;

/// `CMSG_SPACE(sizeof(int))`: the control buffer C's `msgbuf_read` uses, from the
/// platform's own macro. (rustix's `cmsg_space!` adds alignment slack for
/// unaligned buffers, which the kernel would fill with more descriptors than C
/// receives at once; this buffer is aligned.)
// SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic on their argument.
const CMSG_SPACE_ONE_FD: usize = unsafe { libc::CMSG_SPACE(4) } as usize;

/// How many descriptors one receive can install: the control buffer's padding
/// can leave room for more than one (2 on 64-bit Linux and the BSDs, 1 on macOS). A
/// peer sending more in one `sendmsg` gets `MSG_CTRUNC`.
// SAFETY: as above.
pub(crate) const MAX_FDS_PER_RECV: usize =
    (CMSG_SPACE_ONE_FD - unsafe { libc::CMSG_LEN(0) } as usize) / 4;

/// Control buffer storage aligned for `cmsghdr`, so rustix uses all of it.
#[repr(C, align(8))]
struct ControlSpace([MaybeUninit<u8>; CMSG_SPACE_ONE_FD]);

/// What one receive brought.
pub(crate) struct Received {
    /// Bytes received; 0 at end of file.
    pub bytes: usize,
    /// The first descriptor of the first `SCM_RIGHTS` message (others are closed).
    pub fd: Option<OwnedFd>,
    /// `MSG_CTRUNC`: descriptors were lost.
    pub truncated: bool,
}

/// How a channel moves bytes on its descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A socket with descriptor passing: `sendmsg`/`recvmsg`.
    SocketFdpass,
    /// A socket without descriptor passing: `send`/`recv`.
    Socket,
    /// Not a socket (a pipe or a tty, say): `write`/`read`.
    Plain,
}

/// Sends `bytes`, with `pass` as `SCM_RIGHTS` if given. Retries `EINTR`.
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    transport: Transport,
    bytes: &[u8],
    pass: Option<BorrowedFd<'_>>,
) -> Result<usize, Errno> {
    send_with(sock, transport, bytes, pass, sys::SEND_FLAGS)
}

/// [`send`] that never waits, even on a blocking socket (`MSG_DONTWAIT`):
/// `EAGAIN` when the socket buffer is full. Sockets only (a pipe has no such flag).
pub(crate) fn send_nowait(
    sock: BorrowedFd<'_>,
    transport: Transport,
    bytes: &[u8],
    pass: Option<BorrowedFd<'_>>,
) -> Result<usize, Errno> {
    if transport == Transport::Plain {
        return Err(Errno::AGAIN);
    }
    send_with(
        sock,
        transport,
        bytes,
        pass,
        sys::SEND_FLAGS | SendFlags::DONTWAIT,
    )
}

/// Sends the concatenation of `parts` in one `sendmsg` that never waits (as
/// [`send_nowait`]), without a descriptor. Sockets only.
pub(crate) fn send_vectored_nowait(
    sock: BorrowedFd<'_>,
    transport: Transport,
    parts: &[IoSlice<'_>],
) -> Result<usize, Errno> {
    if transport == Transport::Plain {
        return Err(Errno::AGAIN);
    }
    let flags = sys::SEND_FLAGS | SendFlags::DONTWAIT;
    loop {
        let mut control = SendAncillaryBuffer::default();
        match rustix::net::sendmsg(sock, parts, &mut control, flags) {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

fn send_with(
    sock: BorrowedFd<'_>,
    transport: Transport,
    bytes: &[u8],
    pass: Option<BorrowedFd<'_>>,
    flags: SendFlags,
) -> Result<usize, Errno> {
    loop {
        let r = match (transport, pass) {
            (_, Some(fd)) => {
                let fds = [fd];
                let mut space = ControlSpace([MaybeUninit::uninit(); CMSG_SPACE_ONE_FD]);
                let mut control = SendAncillaryBuffer::new(&mut space.0);
                if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                    // Cannot happen: the buffer is sized for one descriptor.
                    return Err(Errno::NOBUFS);
                }
                rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, flags)
            }
            (Transport::Plain, None) => write_without_sigpipe(sock, bytes),
            (_, None) => rustix::net::send(sock, bytes, flags),
        };
        match r {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// `write(2)` that turns a closed reader into `EPIPE` without a `SIGPIPE`, whatever
/// the process's disposition of `SIGPIPE` is (a Rust `main` ignores it, a C host or a
/// `#[unix_sigpipe]` program may not). `SIGPIPE` is blocked in this thread for the
/// call; if the write failed with `EPIPE` and no `SIGPIPE` was pending before, the one
/// the kernel raised for this thread is consumed before the mask is restored.
fn write_without_sigpipe(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before any use;
    // sigpending, pthread_sigmask and sigtimedwait only read and write the sets
    // passed to them, which live on this stack frame, and the mask is restored to
    // `old` before returning on every path.
    unsafe {
        let mut pipe_only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe_only);
        libc::sigaddset(&mut pipe_only, libc::SIGPIPE);
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_only, &mut old);
        let r = rustix::io::write(fd, bytes);
        if r == Err(Errno::PIPE) && !was_pending {
            sys::consume_sigpipe(&pipe_only);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// Receives into `buf`. Retries `EINTR`.
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    transport: Transport,
    buf: &mut [u8],
) -> Result<Received, Errno> {
    loop {
        let r = match transport {
            Transport::SocketFdpass => recv_fdpass(sock, buf),
            Transport::Socket => {
                rustix::net::recv(sock, &mut *buf, RecvFlags::empty()).map(|(n, _)| Received {
                    bytes: n,
                    fd: None,
                    truncated: false,
                })
            }
            Transport::Plain => rustix::io::read(sock, &mut *buf).map(|n| Received {
                bytes: n,
                fd: None,
                truncated: false,
            }),
        };
        match r {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

fn recv_fdpass(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received, Errno> {
    let mut space = ControlSpace([MaybeUninit::uninit(); CMSG_SPACE_ONE_FD]);
    let mut control = RecvAncillaryBuffer::new(&mut space.0);
    let mut lost = false;
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut *buf)],
            &mut control,
            sys::RECV_FLAGS,
        ) {
            // No slot for a descriptor, the bytes still queued (OpenBSD): read them
            // again, without it, and report the loss as MSG_CTRUNC would.
            Err(e) if sys::lost_descriptors(e) => lost = true,
            r => break r?,
        }
    };
    let mut fd = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for f in fds {
                // Where recvmsg could not be asked to; a failure leaves the
                // descriptor inheritable by a later exec, nothing worse.
                let _ = sys::after_recv(&f);
                if fd.is_none() {
                    fd = Some(f);
                } else {
                    log::debug!("closing an extra descriptor received in the same read");
                    drop(f);
                }
            }
        }
    }
    Ok(Received {
        bytes: msg.bytes,
        fd,
        truncated: lost || msg.flags.contains(ReturnFlags::CTRUNC),
    })
}

/// Whether `fd` is a socket (then `send`/`recv` can be used).
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    match rustix::net::sockopt::socket_type(fd) {
        Ok(_) => Ok(true),
        Err(Errno::NOTSOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until `fd` is writable (or in error, which the next write reports).
pub(crate) fn wait_writable(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    loop {
        match poll(&mut fds, None) {
            Err(Errno::INTR) => continue,
            r => return r.map(|_| ()),
        }
    }
}
