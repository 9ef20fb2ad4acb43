//! The descriptor-exhaustion guard: before a read that can bring a
//! descriptor, make sure the kernel will have a slot to put it in.
//!
//! Linux gives a received descriptor the lowest free number below the soft
//! `RLIMIT_NOFILE`; when there is none it drops the descriptor and sets
//! `MSG_CTRUNC` (OpenBSD fails the read with `EMSGSIZE`). The guard asks the kernel
//! itself: it duplicates the channel's socket [`FD_HEADROOM`] times
//! (`F_DUPFD_CLOEXEC`, each taking the lowest free number) and closes the
//! duplicates. If any duplicate fails with `EMFILE`, fewer than `FD_HEADROOM`
//! descriptors could still be opened: the read is refused. This is legacy C's
//! `getdtablecount() + overhead >= getdtablesize()` test, measured in free slots
//! (what the kernel actually needs) rather than in a count of open descriptors, and
//! it costs two system calls per slot instead of a `/proc/self/fd` listing. On
//! OpenBSD, which has `getdtablecount`, the C test itself is used.

use std::os::fd::BorrowedFd;

use crate::socket::MAX_FDS_PER_RECV;

/// Free descriptor slots required before a read that can bring descriptors: as many
/// as one receive can install.
pub const FD_HEADROOM: usize = MAX_FDS_PER_RECV;

/// True when fewer than [`FD_HEADROOM`] descriptors can be opened now.
pub(crate) fn exhausted(probe: BorrowedFd<'_>) -> bool {
    crate::sys::fewer_free_slots_than(FD_HEADROOM, probe)
}

const _: () = assert!(FD_HEADROOM >= 1 && FD_HEADROOM <= 4);
