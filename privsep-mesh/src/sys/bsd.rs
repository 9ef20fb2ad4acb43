//! FreeBSD, OpenBSD and NetBSD. Checked against the `libc` crate's declarations for
//! each; built, not run, by this project's CI.

use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub(crate) use super::portable::{
    open_max, peer_ids, stream_socket_one_step as stream_socket_cloexec,
};
use super::IdSwitch;

/// The local syslog socket.
#[cfg(target_os = "openbsd")]
pub(crate) const SYSLOG_SOCKET: &str = "/dev/log";
/// The local syslog socket.
#[cfg(not(target_os = "openbsd"))]
pub(crate) const SYSLOG_SOCKET: &str = "/var/run/log";

/// Marks every descriptor from `first` up close-on-exec (FreeBSD 13.1+:
/// `close_range(CLOSE_RANGE_CLOEXEC)`; otherwise a loop). Called between fork and
/// exec: async-signal-safe calls only.
pub(crate) fn cloexec_from(first: libc::c_int, limit: libc::c_int) {
    #[cfg(target_os = "freebsd")]
    {
        // SAFETY: close_range(2) on descriptor numbers; no memory is touched.
        let rc = unsafe {
            libc::close_range(
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            )
        };
        if rc == 0 {
            return;
        }
    }
    super::portable::cloexec_loop(first, limit);
}

/// The binary children are started from. OpenBSD has no kernel path for it: like
/// proc.c (`execvp(argv[0])`), `argv[0]`. FreeBSD and NetBSD ask the kernel.
pub(crate) fn self_exe() -> io::Result<PathBuf> {
    if cfg!(target_os = "openbsd") {
        super::portable::argv0_exe()
    } else {
        std::env::current_exe()
    }
}

/// Sets the title `ps` shows (`setproctitle`, as proc.c does).
pub(crate) fn set_process_title(name: &CStr) -> io::Result<()> {
    // SAFETY: a "%s" format with one NUL-terminated string argument that lives for
    // the call.
    unsafe { libc::setproctitle(c"%s".as_ptr(), name.as_ptr()) };
    Ok(())
}

/// Switches group then user (real, effective and saved ids).
#[cfg(not(target_os = "netbsd"))]
pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (IdSwitch, io::Error)> {
    // SAFETY: plain libc calls with values.
    unsafe {
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err((IdSwitch::Gid, io::Error::last_os_error()));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err((IdSwitch::Uid, io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Switches group then user (NetBSD has no `setres[ug]id`).
#[cfg(target_os = "netbsd")]
pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (IdSwitch, io::Error)> {
    super::portable::set_ids_posix(uid, gid)
}

/// (real, effective, saved) uids and gids.
#[cfg(not(target_os = "netbsd"))]
pub(crate) fn get_ids() -> io::Result<([u32; 3], [u32; 3])> {
    super::portable::get_resids()
}

/// Real and effective ids (NetBSD cannot read the saved ones).
#[cfg(target_os = "netbsd")]
pub(crate) fn get_ids() -> io::Result<([u32; 3], [u32; 3])> {
    Ok(super::portable::get_ids_posix())
}

/// Where this thread's `errno` lives, for a signal handler to save and restore it.
pub(crate) fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno address; no preconditions.
    #[cfg(target_os = "freebsd")]
    unsafe {
        libc::__error()
    }
    // SAFETY: as above.
    #[cfg(not(target_os = "freebsd"))]
    unsafe {
        libc::__errno()
    }
}

/// Not known here: `daemonize` cannot check that the process is single-threaded.
pub(crate) fn thread_count() -> io::Result<Option<usize>> {
    Ok(None)
}

/// A pipe, both ends close-on-exec and non-blocking from the start.
pub(crate) fn pipe_cloexec_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::{pipe_with, PipeFlags};
    Ok(pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// A stream socketpair, both ends close-on-exec and non-blocking from the start.
pub(crate) fn stream_pair_cloexec_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}
