//! Linux. With `--cfg imsg_fallback`, the portable implementations instead of
//! `MSG_CMSG_CLOEXEC` and `sigtimedwait`.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

pub(crate) use super::portable::fewer_free_slots_than;

/// Flags for every `send`/`sendmsg` on a socket: a dead peer is `EPIPE`, not
/// `SIGPIPE`.
pub(crate) const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL;

/// Flags for `recvmsg` with descriptor passing.
pub(crate) const RECV_FLAGS: RecvFlags = if cfg!(imsg_fallback) {
    RecvFlags::empty()
} else {
    RecvFlags::CMSG_CLOEXEC
};

/// Nothing to set up on a socket here ([`SEND_FLAGS`] does it per call).
pub(crate) fn prepare_socket(_sock: BorrowedFd<'_>) -> Result<(), Errno> {
    Ok(())
}

/// Marks a received descriptor close-on-exec if [`RECV_FLAGS`] did not.
pub(crate) fn after_recv(fd: &OwnedFd) -> Result<(), Errno> {
    if cfg!(imsg_fallback) {
        super::portable::set_cloexec(fd)
    } else {
        Ok(())
    }
}

/// Whether `recvmsg` failed because a descriptor had no slot (with the bytes still
/// queued): never here, Linux reports `MSG_CTRUNC` instead.
pub(crate) fn lost_descriptors(_e: Errno) -> bool {
    false
}

/// Consumes the `SIGPIPE` a failed `write` raised for this thread while it was
/// blocked: `sigtimedwait` with a zero timeout.
///
/// # Safety
///
/// `SIGPIPE` must be blocked in the calling thread.
pub(crate) unsafe fn consume_sigpipe(pipe_only: &libc::sigset_t) {
    if cfg!(imsg_fallback) {
        return super::portable::consume_pending_sigpipe(pipe_only);
    }
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    while libc::sigtimedwait(pipe_only, std::ptr::null_mut(), &zero) == -1
        && Errno::from_io_error(&std::io::Error::last_os_error()) == Some(Errno::INTR)
    {}
}

/// A lower bound on the descriptor slots free below the soft limit: the limit minus
/// the descriptors open, counted from a `/proc/self/fd` listing into a buffer on the
/// stack. `None` when they cannot be counted (no `/proc`, as in a chroot; or built
/// with `--cfg imsg_fallback`, to test what the other systems do).
pub(crate) fn free_slots() -> Option<usize> {
    use std::mem::MaybeUninit;

    use rustix::fs::{open, Mode, OFlags, RawDir};
    use rustix::process::{getrlimit, Resource};
    if cfg!(imsg_fallback) {
        return None;
    }
    let limit = match getrlimit(Resource::Nofile).current {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let dir = open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(&dir, &mut buf);
    // Descriptors below the limit (one that is not a number counts too); the
    // listing's own is among them and closed right after.
    let mut below = 0usize;
    while let Some(entry) = entries.next() {
        let entry = entry.ok()?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let number = std::str::from_utf8(name)
            .ok()
            .and_then(|n| n.parse::<usize>().ok());
        if number.is_none_or(|n| n < limit) {
            below += 1;
        }
    }
    Some(limit.saturating_sub(below.saturating_sub(1)))
}
