//! macOS: no `MSG_NOSIGNAL` and no `MSG_CMSG_CLOEXEC`. Checked against the `libc`
//! and `rustix` crates' declarations; built, not run, by this project's CI.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

pub(crate) use super::portable::{
    consume_pending_sigpipe as consume_sigpipe, fewer_free_slots_than,
};

/// No per-call flag exists: [`prepare_socket`] sets `SO_NOSIGPIPE` instead.
pub(crate) const SEND_FLAGS: SendFlags = SendFlags::empty();

/// No `MSG_CMSG_CLOEXEC`: [`after_recv`] marks each descriptor.
pub(crate) const RECV_FLAGS: RecvFlags = RecvFlags::empty();

/// `SO_NOSIGPIPE`: a dead peer is `EPIPE`, not `SIGPIPE`, for every send.
pub(crate) fn prepare_socket(sock: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::net::sockopt::set_socket_nosigpipe(sock, true)
}

/// Marks a received descriptor close-on-exec (a fork and exec in another thread
/// between `recvmsg` and here can still inherit it: macOS offers nothing better).
pub(crate) fn after_recv(fd: &OwnedFd) -> Result<(), Errno> {
    super::portable::set_cloexec(fd)
}

/// Never here: macOS reports `MSG_CTRUNC`.
pub(crate) fn lost_descriptors(_e: Errno) -> bool {
    false
}

/// Not counted here: every read asks the kernel ([`fewer_free_slots_than`]).
pub(crate) fn free_slots() -> Option<usize> {
    None
}
