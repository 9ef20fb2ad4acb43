//! macOS. Checked against the `libc` crate's declarations; built, not run, by this
//! project's CI.

use std::ffi::CStr;
use std::io;
use std::path::PathBuf;

pub(crate) use super::portable::{
    get_ids_posix as get_ids_infallible, open_max, peer_ids,
    pipe_two_step as pipe_cloexec_nonblock, stream_pair_two_step as stream_pair_cloexec_nonblock,
    stream_socket_two_step as stream_socket_cloexec,
};
use super::IdSwitch;

/// The local syslog socket.
pub(crate) const SYSLOG_SOCKET: &str = "/var/run/syslog";

/// Marks every descriptor from `first` up close-on-exec (no `close_range` here).
/// Called between fork and exec: async-signal-safe calls only.
pub(crate) fn cloexec_from(first: libc::c_int, limit: libc::c_int) {
    super::portable::cloexec_loop(first, limit);
}

/// The binary children are started from (the kernel's path for it).
pub(crate) fn self_exe() -> io::Result<PathBuf> {
    std::env::current_exe()
}

/// macOS has no `setproctitle`: the main thread's name, which debuggers and crash
/// reports show, stands in.
pub(crate) fn set_process_title(name: &CStr) -> io::Result<()> {
    // SAFETY: a NUL-terminated string that lives for the call.
    match unsafe { libc::pthread_setname_np(name.as_ptr()) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Switches group then user (macOS has no `setres[ug]id`).
pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (IdSwitch, io::Error)> {
    super::portable::set_ids_posix(uid, gid)
}

/// Real and effective ids (macOS cannot read the saved ones).
pub(crate) fn get_ids() -> io::Result<([u32; 3], [u32; 3])> {
    Ok(get_ids_infallible())
}

/// Where this thread's `errno` lives, for a signal handler to save and restore it.
pub(crate) fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno address; no preconditions.
    unsafe { libc::__error() }
}

/// Not known here: `daemonize` cannot check that the process is single-threaded.
pub(crate) fn thread_count() -> io::Result<Option<usize>> {
    Ok(None)
}
