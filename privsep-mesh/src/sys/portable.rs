//! POSIX-only implementations: what the BSDs and macOS use where they have nothing
//! better, and what Linux uses when built with `--cfg imsg_fallback`.
#![allow(dead_code)] // each platform uses a different subset

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

use super::IdSwitch;

/// Marks every descriptor from `first` up close-on-exec, one `fcntl` per possible
/// descriptor below `limit` (from [`open_max`], read before the fork). Called between
/// fork and exec: async-signal-safe calls only.
pub(crate) fn cloexec_loop(first: libc::c_int, limit: libc::c_int) {
    for fd in first..limit {
        // SAFETY: fcntl(2) on a descriptor number; a closed one fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The highest descriptor number the process can have, plus one (capped at 65,536
/// so the loop above stays short).
pub(crate) fn open_max() -> libc::c_int {
    // SAFETY: sysconf only reads a limit.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    max.clamp(0, 1 << 16) as libc::c_int
}

/// The binary to re-execute, as proc.c finds it (`execvp(argv[0])`): `argv[0]` made
/// absolute against the working directory the first time this is asked (call it
/// before a `chdir`), or, without a `/`, the bare name for a `PATH` search.
pub(crate) fn argv0_exe() -> io::Result<PathBuf> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    EXE.get_or_init(|| {
        let arg0: OsString = std::env::args_os()
            .next()
            .ok_or_else(|| "no argv[0] to re-execute".to_owned())?;
        let path = Path::new(&arg0);
        if !path.as_os_str().as_encoded_bytes().contains(&b'/') || path.is_absolute() {
            return Ok(path.to_path_buf());
        }
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .map_err(|e| format!("making argv[0] absolute: {e}"))
    })
    .clone()
    .map_err(io::Error::other)
}

/// Switches group then user with `setgid`/`setuid`, which for root set the real,
/// effective and saved ids together (where `setres[ug]id` does not exist).
pub(crate) fn set_ids_posix(
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> Result<(), (IdSwitch, io::Error)> {
    // SAFETY: plain libc calls with values.
    unsafe {
        if libc::setgid(gid) != 0 {
            return Err((IdSwitch::Gid, io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err((IdSwitch::Uid, io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Real and effective uid and gid; the saved ids cannot be read without
/// `getres[ug]id`, so the effective ones stand in for them (the caller's proof
/// that root cannot be regained is the `setuid(0)` that must fail).
pub(crate) fn get_ids_posix() -> ([u32; 3], [u32; 3]) {
    // SAFETY: these calls only return ids and cannot fail.
    unsafe {
        let (u, eu, g, eg) = (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        );
        ([u, eu, eu], [g, eg, eg])
    }
}

/// Peer credentials from `getpeereid`, which has no pid (reported as 0).
#[cfg(not(target_os = "linux"))]
pub(crate) fn peer_ids(sock: std::os::fd::BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    use std::os::fd::AsRawFd;
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: getpeereid writes one uid and one gid to the locals.
    if unsafe { libc::getpeereid(sock.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0, uid, gid))
}

/// A pipe or a stream socketpair with both ends close-on-exec and non-blocking,
/// in two steps where the system cannot do it in the creating call (macOS): a fork
/// and exec in another thread between the two can inherit the ends.
fn set_cloexec_nonblock(fds: (OwnedFd, OwnedFd)) -> io::Result<(OwnedFd, OwnedFd)> {
    for fd in [&fds.0, &fds.1] {
        fcntl_setfd(fd, fcntl_getfd(fd)? | FdFlags::CLOEXEC)?;
        fcntl_setfl(fd, fcntl_getfl(fd)? | OFlags::NONBLOCK)?;
    }
    Ok(fds)
}

/// `pipe` made close-on-exec and non-blocking afterwards.
pub(crate) fn pipe_two_step() -> io::Result<(OwnedFd, OwnedFd)> {
    set_cloexec_nonblock(rustix::pipe::pipe()?)
}

/// An `AF_UNIX` stream socket, close-on-exec from the start (`SOCK_CLOEXEC`, in
/// POSIX.1-2024; Linux and the BSDs have it, macOS does not).
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn stream_socket_one_step() -> io::Result<OwnedFd> {
    use rustix::net::socket_with;
    Ok(socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// An `AF_UNIX` stream socket made close-on-exec afterwards (where `socket` cannot
/// do it: macOS; same window as [`set_cloexec_nonblock`]).
pub(crate) fn stream_socket_two_step() -> io::Result<OwnedFd> {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    fcntl_setfd(&fd, fcntl_getfd(&fd)? | FdFlags::CLOEXEC)?;
    Ok(fd)
}

/// `socketpair(AF_UNIX, SOCK_STREAM)` made close-on-exec and non-blocking
/// afterwards.
pub(crate) fn stream_pair_two_step() -> io::Result<(OwnedFd, OwnedFd)> {
    let pair = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )?;
    set_cloexec_nonblock(pair)
}

/// (real, effective, saved) uids and gids from `getresuid`/`getresgid`, which
/// Linux, FreeBSD and OpenBSD have (NetBSD and macOS do not).
#[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
pub(crate) fn get_resids() -> io::Result<([u32; 3], [u32; 3])> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: each call writes three ids to locals.
    unsafe {
        if libc::getresuid(&mut r, &mut e, &mut s) != 0
            || libc::getresgid(&mut gr, &mut ge, &mut gs) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(([r, e, s], [gr, ge, gs]))
}
