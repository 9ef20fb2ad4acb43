//! Everything a channel asks of the operating system beyond what `rustix` makes
//! the same everywhere, with an implementation per platform family:
//!
//! | | Linux | FreeBSD, NetBSD | OpenBSD | macOS |
//! |---|---|---|---|---|
//! | no `SIGPIPE` on a socket | `MSG_NOSIGNAL` | `MSG_NOSIGNAL` | `MSG_NOSIGNAL` | `SO_NOSIGPIPE` |
//! | no `SIGPIPE` on a pipe: consume the one raised | `sigtimedwait` | `sigtimedwait` | `sigwait` | `sigwait` |
//! | received descriptors close-on-exec | `MSG_CMSG_CLOEXEC` | `MSG_CMSG_CLOEXEC` | `MSG_CMSG_CLOEXEC` | `fcntl` after `recvmsg` |
//! | no slot for a received descriptor | `MSG_CTRUNC` | `MSG_CTRUNC` | `EMSGSIZE` (bytes stay queued) | `MSG_CTRUNC` |
//! | descriptor guard: count free slots | `/proc/self/fd` | no (probe each read) | `getdtablecount` | no (probe each read) |
//! | descriptor guard: probe | duplicates | duplicates | `getdtablecount` | duplicates |
//!
//! Built with `--cfg imsg_fallback` on Linux, the portable column (`sigwait`,
//! `fcntl` after `recvmsg`, the guard probing every read without `/proc`) replaces
//! the Linux-specific calls, so the code macOS and
//! OpenBSD run is tested on Linux too.

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "macos",
)))]
compile_error!(
    "imsg-io supports Linux, FreeBSD, OpenBSD, NetBSD and macOS; this target is none of them"
);

mod portable;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "netbsd"))]
mod bsd;
#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "netbsd"))]
pub(crate) use bsd::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub(crate) use macos::*;
