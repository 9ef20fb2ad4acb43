//! FreeBSD, OpenBSD and NetBSD. Checked against the `libc` and `rustix` crates'
//! declarations for each; built, not run, by this project's CI.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

/// Flags for every `send`/`sendmsg` on a socket: a dead peer is `EPIPE`, not
/// `SIGPIPE`.
pub(crate) const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL;

/// Flags for `recvmsg` with descriptor passing.
pub(crate) const RECV_FLAGS: RecvFlags = RecvFlags::CMSG_CLOEXEC;

/// Nothing to set up on a socket here ([`SEND_FLAGS`] does it per call).
pub(crate) fn prepare_socket(_sock: BorrowedFd<'_>) -> Result<(), Errno> {
    Ok(())
}

/// Nothing to do: [`RECV_FLAGS`] made the descriptor close-on-exec.
pub(crate) fn after_recv(_fd: &OwnedFd) -> Result<(), Errno> {
    Ok(())
}

/// Whether `recvmsg` failed because a descriptor had no slot, with the bytes still
/// queued: OpenBSD's `EMSGSIZE` (its imsg.c reads again, without the descriptor).
pub(crate) fn lost_descriptors(e: Errno) -> bool {
    cfg!(target_os = "openbsd") && e == Errno::MSGSIZE
}

/// Consumes the `SIGPIPE` a failed `write` raised for this thread while it was
/// blocked (OpenBSD has no `sigtimedwait`).
///
/// # Safety
///
/// `SIGPIPE` must be blocked in the calling thread.
#[cfg(target_os = "openbsd")]
pub(crate) unsafe fn consume_sigpipe(pipe_only: &libc::sigset_t) {
    super::portable::consume_pending_sigpipe(pipe_only)
}

/// Consumes the `SIGPIPE` a failed `write` raised for this thread while it was
/// blocked: `sigtimedwait` with a zero timeout.
///
/// # Safety
///
/// `SIGPIPE` must be blocked in the calling thread.
#[cfg(not(target_os = "openbsd"))]
pub(crate) unsafe fn consume_sigpipe(pipe_only: &libc::sigset_t) {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    while libc::sigtimedwait(pipe_only, std::ptr::null_mut(), &zero) == -1
        && Errno::from_io_error(&std::io::Error::last_os_error()) == Some(Errno::INTR)
    {}
}

#[cfg(not(target_os = "openbsd"))]
pub(crate) use super::portable::fewer_free_slots_than;

#[cfg(target_os = "openbsd")]
extern "C" {
    // OpenBSD's libc (getdtablecount(2)); the `libc` crate does not declare it.
    fn getdtablecount() -> libc::c_int;
}

/// True when fewer than `needed` descriptors can be opened now, as OpenBSD's own
/// imsg.c asks: open descriptors plus `needed` against the limit.
#[cfg(target_os = "openbsd")]
pub(crate) fn fewer_free_slots_than(needed: usize, _probe: BorrowedFd<'_>) -> bool {
    // SAFETY: both calls take no arguments and only return counts.
    let (open, limit) = unsafe { (getdtablecount(), libc::getdtablesize()) };
    open as usize + needed > limit.max(0) as usize
}

/// The descriptor slots free below the limit, as OpenBSD's own imsg.c counts them:
/// `getdtablesize() - getdtablecount()`.
#[cfg(target_os = "openbsd")]
pub(crate) fn free_slots() -> Option<usize> {
    // SAFETY: both calls take no arguments and only return counts.
    let (open, limit) = unsafe { (getdtablecount(), libc::getdtablesize()) };
    Some((limit.max(0) as usize).saturating_sub(open.max(0) as usize))
}

/// Not counted here: every read asks the kernel ([`fewer_free_slots_than`]).
#[cfg(not(target_os = "openbsd"))]
pub(crate) fn free_slots() -> Option<usize> {
    None
}
