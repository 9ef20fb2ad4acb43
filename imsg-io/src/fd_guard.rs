//! The descriptor-exhaustion guard: before a read that can bring a
//! descriptor, make sure the kernel will have a slot to put it in.
//!
//! Linux gives a received descriptor the lowest free number below the soft
//! `RLIMIT_NOFILE`; when there is none it drops the descriptor and sets
//! `MSG_CTRUNC`. A read is refused ("would block") when fewer than
//! [`FD_HEADROOM`] slots are free: legacy C's `getdtablecount() + overhead >=
//! getdtablesize()` test.
//!
//! Checking on every read costs system calls on every read, and with one
//! descriptor per frame every frame does a read. So the guard counts, and then
//! lets reads go unchecked for a while:
//!
//! - A check counts the process's open descriptors (on Linux a listing of
//!   `/proc/self/fd` into a buffer on the stack, no allocation; on OpenBSD
//!   `getdtablecount`) and reads the soft limit. The limit minus the descriptors open below it is the number of
//!   free slots the kernel can use. Fewer than `FD_HEADROOM`: refused.
//! - Otherwise the next reads may go unchecked, as many as can take a quarter of
//!   the free slots beyond the headroom at [`MAX_FDS_PER_RECV`] descriptors a
//!   read: the rest of the process may open the other three quarters meanwhile.
//!   The allowance is shared by every channel of the process, so many channels do
//!   not each spend it. Close to the limit it is zero: every read is checked.
//! - Where they cannot be counted (a chroot without `/proc`, FreeBSD, NetBSD,
//!   macOS, Linux built with `--cfg imsg_fallback`), each read is checked by asking the
//!   kernel itself: the channel's socket is duplicated `FD_HEADROOM` times
//!   (`F_DUPFD_CLOEXEC` takes the lowest free number) and the duplicates closed;
//!   an `EMFILE` refuses.
//!
//! What the unchecked reads assume: between two checks the process does not open
//! more than three quarters of the slots that were free, and nobody lowers the
//! limit.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::socket::MAX_FDS_PER_RECV;

/// Free descriptor slots required before a read that can bring descriptors: as many
/// as one receive can install.
pub const FD_HEADROOM: usize = MAX_FDS_PER_RECV;

/// Most reads let go unchecked after one count.
const MAX_UNCHECKED: usize = 4096;

/// Reads any channel of this process may still do before the next check.
static UNCHECKED_LEFT: AtomicUsize = AtomicUsize::new(0);

/// True when a read that can bring descriptors must be refused now.
pub(crate) fn refuse(probe: BorrowedFd<'_>) -> bool {
    // Take one unchecked read if any is left (a compare-and-swap loop: what
    // `fetch_update` does, which newer Rust deprecates in favour of a method the
    // supported Rust versions lack).
    let mut left = UNCHECKED_LEFT.load(Ordering::Relaxed);
    while left > 0 {
        match UNCHECKED_LEFT.compare_exchange_weak(
            left,
            left - 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return false,
            Err(now) => left = now,
        }
    }
    match crate::sys::free_slots() {
        Some(free) if free < FD_HEADROOM => true,
        Some(free) => {
            let allowance = (free - FD_HEADROOM) / (4 * MAX_FDS_PER_RECV);
            UNCHECKED_LEFT.store(allowance.min(MAX_UNCHECKED), Ordering::Relaxed);
            false
        }
        None => exhausted(probe),
    }
}

/// True when fewer than [`FD_HEADROOM`] descriptors can be opened now, asking
/// the kernel with duplicates of `probe`.
pub(crate) fn exhausted(probe: BorrowedFd<'_>) -> bool {
    crate::sys::fewer_free_slots_than(FD_HEADROOM, probe)
}

const _: () = assert!(FD_HEADROOM >= 1 && FD_HEADROOM <= 4);
