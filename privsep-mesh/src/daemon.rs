//! Detaching from the terminal: `daemon(3)` as OpenBSD daemons call it without `-d`.
//!
//! [`daemonize`] forks; the launching process exits 0 at once, and the child goes on
//! in a new session (`setsid`), in `/`, with stdin, stdout and stderr on
//! `/dev/null`. Call it in the parent before anything else runs (before the mesh
//! starts its children and before any thread exists): the children of the mesh are
//! then started by the detached process and inherit its session and `/dev/null`
//! stdio. Relative paths given on the command line must be made absolute first
//! (after this, the working directory is `/`).

use std::io;

use rustix::fs::{Mode, OFlags};

/// Forks into the background (see the module documentation). Returns in the child
/// only; the original process exits with status 0. Refuses (error, nothing done) if
/// the process has more than one thread, since only the calling thread would
/// survive the fork (checked on Linux, from `/proc/self/task`; elsewhere that is the
/// caller's to ensure).
pub fn daemonize() -> io::Result<()> {
    if crate::sys::thread_count()?.is_some_and(|n| n != 1) {
        return Err(io::Error::other(
            "daemonize: the process must be single-threaded",
        ));
    }
    // Resolve the binary to re-execute while the working directory is still the
    // one the program was started in (a relative argv[0] is relative to it).
    crate::startup::self_exe()?;
    // Flush what the launching process printed, so that it is not printed twice.
    io::Write::flush(&mut io::stdout())?;
    // SAFETY: the process has exactly one thread (checked above), so the child
    // starts with every lock and allocator state consistent and may go on running
    // ordinary Rust code; `fork` itself has no memory-safety preconditions.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        // SAFETY: `_exit` ends the launching process without running destructors or
        // atexit handlers twice (they belong to the child now); it cannot fail.
        _ => unsafe { libc::_exit(0) },
    }
    rustix::process::setsid()?;
    rustix::process::chdir("/")?;
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    Ok(())
}
