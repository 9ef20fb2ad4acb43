//! Everything the mesh asks of the operating system beyond POSIX, behind one small
//! interface with an implementation per platform family:
//!
//! | | Linux | FreeBSD | OpenBSD | NetBSD | macOS |
//! |---|---|---|---|---|---|
//! | descriptors above 3 close-on-exec in a child | `close_range` | `close_range` | `fcntl` loop | `fcntl` loop | `fcntl` loop |
//! | binary to re-execute | `/proc/self/exe` | `current_exe` | `argv[0]` (as proc.c's `execvp`) | `current_exe` | `current_exe` |
//! | process title | `prctl(PR_SET_NAME)` | `setproctitle` | `setproctitle` | `setproctitle` | thread name |
//! | uid/gid switch and read-back | `setres[ug]id`, `getres[ug]id` | same | same | `set[ug]id`, `get[e][ug]id` | `set[ug]id`, `get[e][ug]id` |
//! | errno in the signal handler | `__errno_location` | `__error` | `__errno` | `__errno` | `__error` |
//! | control-socket peer | `SO_PEERCRED` | `getpeereid` | `getpeereid` | `getpeereid` | `getpeereid` |
//! | syslog socket | `/dev/log` | `/var/run/log` | `/dev/log` | `/var/run/log` | `/var/run/syslog` |
//! | thread count before `daemonize` | `/proc/self/task` | unknown | unknown | unknown | unknown |
//!
//! Built with `--cfg imsg_fallback` on Linux, the portable column (`fcntl` loop,
//! `argv[0]`, `set[ug]id`) replaces the Linux-specific calls, so the code the other
//! systems run is tested on Linux too.

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "macos",
)))]
compile_error!(
    "privsep-mesh supports Linux, FreeBSD, OpenBSD, NetBSD and macOS; \
     this target is none of them"
);

mod portable;

/// Which id switch of a privilege drop failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdSwitch {
    /// The group id.
    Gid,
    /// The user id.
    Uid,
}

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
