//! POSIX-only implementations: what OpenBSD and macOS use where they have nothing
//! better, and what Linux uses when built with `--cfg imsg_fallback`.
#![allow(dead_code)] // each platform uses a different subset

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::{fcntl_getfd, fcntl_setfd, Errno, FdFlags};

/// Consumes the `SIGPIPE` a failed `write` raised for this thread while it was
/// blocked, if it is pending now: `sigwait` returns at once for a pending signal,
/// and is only called when one is.
///
/// # Safety
///
/// `SIGPIPE` must be blocked in the calling thread.
pub(crate) unsafe fn consume_pending_sigpipe(pipe_only: &libc::sigset_t) {
    let mut pending: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut pending);
    if libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1 {
        let mut sig = 0;
        libc::sigwait(pipe_only, &mut sig);
    }
}

/// Marks a received descriptor close-on-exec, where `recvmsg` could not be asked to.
pub(crate) fn set_cloexec(fd: &OwnedFd) -> Result<(), Errno> {
    let flags = fcntl_getfd(fd)?;
    fcntl_setfd(fd, flags | FdFlags::CLOEXEC)
}

/// True when fewer than `needed` (at most 4) descriptors can be opened now:
/// duplicates `probe` (`F_DUPFD_CLOEXEC`, each taking the lowest free number) up to
/// `needed` times and closes the duplicates; `EMFILE` or `ENFILE` on any means there
/// is not enough room. Two system calls per slot, no `/proc`.
pub(crate) fn fewer_free_slots_than(needed: usize, probe: BorrowedFd<'_>) -> bool {
    let mut held: [Option<OwnedFd>; 4] = Default::default();
    for slot in held.iter_mut().take(needed) {
        match rustix::io::fcntl_dupfd_cloexec(probe, 0) {
            Ok(fd) => *slot = Some(fd),
            Err(Errno::MFILE) | Err(Errno::NFILE) => return true,
            // Any other failure says nothing about the limit: let the read go on.
            Err(_) => return false,
        }
    }
    false
}
