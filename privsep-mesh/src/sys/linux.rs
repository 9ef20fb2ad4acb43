//! Linux. With `--cfg imsg_fallback`, the portable implementations instead of the
//! Linux-only calls wherever a portable one exists.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

pub(crate) use super::portable::open_max;
use super::IdSwitch;

/// The local syslog socket.
pub(crate) const SYSLOG_SOCKET: &str = "/dev/log";

/// Marks every descriptor from `first` up close-on-exec. Called between fork and
/// exec: async-signal-safe calls only.
pub(crate) fn cloexec_from(first: libc::c_int, limit: libc::c_int) {
    #[cfg(not(imsg_fallback))]
    {
        // SAFETY: close_range(2) on descriptor numbers; no memory is touched.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc == 0 {
            return;
        }
        // Kernels before 5.11 have no close_range: the loop below.
    }
    super::portable::cloexec_loop(first, limit);
}

/// The binary children are started from: this process's own executable, through
/// the kernel's link (which stays right even if the file was replaced since).
pub(crate) fn self_exe() -> io::Result<PathBuf> {
    if cfg!(imsg_fallback) {
        super::portable::argv0_exe()
    } else {
        Ok(PathBuf::from("/proc/self/exe"))
    }
}

/// Sets the name `ps -o comm` and `/proc/PID/comm` show (the kernel keeps 15 bytes).
pub(crate) fn set_process_title(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    let mut short = [0u8; 16];
    let n = bytes.len().min(15);
    short[..n].copy_from_slice(&bytes[..n]);
    let short = CStr::from_bytes_until_nul(&short).map_err(io::Error::other)?;
    Ok(rustix::thread::set_name(short)?)
}

/// Switches group then user for every thread (glibc's wrappers broadcast them; the
/// raw system calls change only the calling thread).
pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), (IdSwitch, io::Error)> {
    if cfg!(imsg_fallback) {
        return super::portable::set_ids_posix(uid, gid);
    }
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

/// (real, effective, saved) uids and gids.
pub(crate) fn get_ids() -> io::Result<([u32; 3], [u32; 3])> {
    if cfg!(imsg_fallback) {
        return Ok(super::portable::get_ids_posix());
    }
    super::portable::get_resids()
}

/// Where this thread's `errno` lives, for a signal handler to save and restore it.
pub(crate) fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno address; no preconditions.
    unsafe { libc::__errno_location() }
}

/// The peer's (pid, uid, gid) at connect time (`SO_PEERCRED`).
pub(crate) fn peer_ids(sock: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let c = rustix::net::sockopt::socket_peercred(sock)?;
    Ok((
        c.pid.as_raw_nonzero().get() as u32,
        c.uid.as_raw(),
        c.gid.as_raw(),
    ))
}

/// How many threads this process has, where the system says.
pub(crate) fn thread_count() -> io::Result<Option<usize>> {
    Ok(Some(std::fs::read_dir("/proc/self/task")?.count()))
}

/// A pipe, both ends close-on-exec and non-blocking from the start.
pub(crate) fn pipe_cloexec_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    if cfg!(imsg_fallback) {
        return super::portable::pipe_two_step();
    }
    use rustix::pipe::{pipe_with, PipeFlags};
    Ok(pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// An `AF_UNIX` stream socket, close-on-exec from the start.
pub(crate) fn stream_socket_cloexec() -> io::Result<OwnedFd> {
    if cfg!(imsg_fallback) {
        return super::portable::stream_socket_two_step();
    }
    super::portable::stream_socket_one_step()
}

/// A stream socketpair, both ends close-on-exec and non-blocking from the start.
pub(crate) fn stream_pair_cloexec_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    if cfg!(imsg_fallback) {
        return super::portable::stream_pair_two_step();
    }
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}
