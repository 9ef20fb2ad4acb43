//! The system calls: one send or receive of bytes, with at most one descriptor.
//!
//! Sends use `MSG_NOSIGNAL` so a dead peer is `EPIPE`, never `SIGPIPE`; on a
//! descriptor that is not a socket (a pipe), where no such flag exists, `SIGPIPE` is
//! blocked in the calling thread around the `write(2)` and the one it raised is
//! consumed. Receives
//! with descriptor passing use `recvmsg` with `MSG_CMSG_CLOEXEC` and a control
//! buffer of `CMSG_SPACE(sizeof(int))`, as C does.

use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// `CMSG_ALIGN` of the platform (`size_t` alignment on Linux and the BSDs).
const fn cmsg_align(n: usize) -> usize {
    let a = std::mem::size_of::<usize>();
    (n + a - 1) & !(a - 1)
}

/// `sizeof(struct cmsghdr)`: `size_t cmsg_len; int cmsg_level; int cmsg_type`.
const CMSGHDR_LEN: usize = cmsg_align(std::mem::size_of::<usize>() + 8);

/// `CMSG_SPACE(sizeof(int))`: the control buffer C's `msgbuf_read` uses.
const CMSG_SPACE_ONE_FD: usize = CMSGHDR_LEN + cmsg_align(4);

/// How many descriptors one receive can install: the control buffer's padding
/// leaves room for more than one (2 on 64-bit Linux). A peer sending more in one
/// `sendmsg` gets `MSG_CTRUNC`.
pub(crate) const MAX_FDS_PER_RECV: usize = (CMSG_SPACE_ONE_FD - CMSGHDR_LEN) / 4;

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
                rustix::net::sendmsg(
                    sock,
                    &[IoSlice::new(bytes)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
            }
            (Transport::Plain, None) => write_without_sigpipe(sock, bytes),
            (_, None) => rustix::net::send(sock, bytes, SendFlags::NOSIGNAL),
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
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&pipe_only, std::ptr::null_mut(), &zero) == -1
                && Errno::from_io_error(&std::io::Error::last_os_error()) == Some(Errno::INTR)
            {
            }
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
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for f in fds {
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
        truncated: msg.flags.contains(ReturnFlags::CTRUNC),
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
