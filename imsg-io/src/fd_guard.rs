//! The descriptor-exhaustion guard: before a read that can bring a
//! descriptor, make sure the kernel will have a slot to put it in.
//!
//! Linux gives a received descriptor the lowest free number below the soft
//! `RLIMIT_NOFILE`; when there is none it drops the descriptor and sets
//! `MSG_CTRUNC`. The guard asks the kernel itself: it duplicates the channel's
//! socket [`FD_HEADROOM`] times (`F_DUPFD_CLOEXEC`, each taking the lowest free
//! number) and closes the duplicates. If any duplicate fails with `EMFILE`, fewer
//! than `FD_HEADROOM` descriptors could still be opened: the read is refused as
//! "would block". This is legacy C's `getdtablecount() + overhead >= getdtablesize()`
//! test, measured in free slots (what the kernel actually needs) rather than in a
//! count of open descriptors, and it costs two system calls per slot instead of a
//! `/proc/self/fd` listing.

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

use crate::socket::MAX_FDS_PER_RECV;

/// Free descriptor slots required before a read that can bring descriptors: as many
/// as one receive can install.
pub const FD_HEADROOM: usize = MAX_FDS_PER_RECV;

/// True when fewer than [`FD_HEADROOM`] descriptors can be opened now.
pub(crate) fn exhausted(probe: BorrowedFd<'_>) -> bool {
    let mut held = [None, None, None, None];
    for slot in held.iter_mut().take(FD_HEADROOM) {
        match rustix::io::fcntl_dupfd_cloexec(probe, 0) {
            Ok(fd) => *slot = Some(fd),
            Err(Errno::MFILE) | Err(Errno::NFILE) => return true,
            // Any other failure says nothing about the limit: let the read go on.
            Err(_) => return false,
        }
    }
    false
}

const _: () = assert!(FD_HEADROOM >= 1 && FD_HEADROOM <= 4);
