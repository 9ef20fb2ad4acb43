//! Start-up in the parent: one socketpair and one re-executed child per instance,
//! then the mesh's channels handed out with `PROCFD`, then the readiness barrier.
//! And the child's side of the handshake: taking descriptor 3.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{fstat, FileType};
use rustix::io::{fcntl_setfd, Errno, FdFlags};

use crate::args::child_args;
use crate::control;
use crate::error::Error;
use crate::mesh::Mesh;
use crate::route::Target;
use crate::table::ProcTable;

/// The descriptor a child finds its channel to the parent on (proc.c's
/// `PROC_PARENT_SOCK_FILENO`).
pub const PARENT_FD: i32 = 3;

/// The binary children are started from: this process's own executable, as the
/// platform names it (`/proc/self/exe` on Linux; the kernel's path on FreeBSD,
/// NetBSD and macOS; `argv[0]` on OpenBSD, as proc.c's `execvp(argv[0])`, made
/// absolute the first time this is asked).
pub fn self_exe() -> io::Result<std::path::PathBuf> {
    crate::sys::self_exe()
}

fn stream_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    crate::sys::stream_pair_cloexec_nonblock().map_err(|error| Error::Os {
        what: "socketpair",
        error,
    })
}

/// Starts one child instance: [`self_exe`] with `-P title -I instance` before the
/// application's arguments and `channel` on descriptor 3 (and nothing else but
/// stdio). Returns its pid.
pub(crate) fn spawn_child(
    title: &str,
    instance: u32,
    app_args: &[OsString],
    channel: &OwnedFd,
) -> io::Result<u32> {
    let mut cmd = Command::new(self_exe()?);
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.args(child_args(title, instance, app_args));
    let raw = channel.as_raw_fd();
    // Read before the fork: the loop below runs where only async-signal-safe calls
    // may be made.
    let open_max = crate::sys::open_max();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (dup2, fcntl, close_range) on descriptor numbers
    // copied in; it
    // allocates nothing (io::Error::last_os_error only reads errno).
    unsafe {
        cmd.pre_exec(move || {
            if raw == PARENT_FD {
                // Already in place: just let it survive exec.
                if libc::fcntl(PARENT_FD, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, PARENT_FD) == -1 {
                // dup2 clears FD_CLOEXEC on the new descriptor.
                return Err(io::Error::last_os_error());
            }
            // Every descriptor above 3 close-on-exec, so that a child starts with
            // stdio and its channel only, whatever the parent inherited without
            // O_CLOEXEC (proc.c execs without a closefrom). Marking instead of
            // closing keeps std's exec-error pipe working.
            crate::sys::cloexec_from(PARENT_FD + 1, open_max);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The std handle neither waits nor kills on drop: Children reaps by pid.
    Ok(child.id())
}

/// Parent: starts every child instance and attaches its channel.
pub(crate) fn spawn_all(
    table: &ProcTable,
    mesh: &mut Mesh,
    app_args: &[OsString],
) -> Result<(), Error> {
    for peer in table.children() {
        let title = table
            .get(peer.proc)
            .map(|p| p.title().to_owned())
            .ok_or(Error::UnknownProcess(peer.proc))?;
        let (ours, theirs) = stream_pair()?;
        let pid =
            spawn_child(&title, peer.instance, app_args, &theirs).map_err(|error| Error::Os {
                what: "starting a child",
                error,
            })?;
        drop(theirs);
        let name = mesh.name_of(peer);
        log::debug!("started {name} as pid {pid}");
        mesh.children_mut().add(pid, peer, name);
        mesh.attach(peer, ours)?;
    }
    Ok(())
}

/// Parent: one socketpair per allowed pair, each end sent to its owner with
/// `PROCFD`, both flushed at once so descriptors do not pile up; then `PROCREADY`
/// (with the table's layout) to every child.
pub(crate) fn connect(table: &ProcTable, mesh: &mut Mesh) -> Result<(), Error> {
    for (a, b) in table.mesh_pairs() {
        let (fa, fb) = stream_pair()?;
        mesh.send_procfd(a, b, fa)?;
        mesh.send_procfd(b, a, fb)?;
        for p in [a, b] {
            mesh.flush(p.proc, Target::Instance(p.instance))?;
        }
    }
    let layout = control::encode_layout(&table.layout());
    for child in table.children() {
        mesh.send_control(
            child.proc,
            Target::Instance(child.instance),
            control::PROCREADY,
            &layout,
        )?;
    }
    Ok(())
}

static PARENT_FD_TAKEN: AtomicBool = AtomicBool::new(false);

/// Child: takes descriptor 3, checks that it is a socket, and marks it close-on-exec
/// (so that anything this child executes does not inherit it).
pub(crate) fn take_parent_channel() -> Result<OwnedFd, Error> {
    if PARENT_FD_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Error::NoParentChannel(Errno::BUSY.into()));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(PARENT_FD, libc::F_GETFD) } == -1 {
        return Err(Error::NoParentChannel(io::Error::last_os_error()));
    }
    // SAFETY: descriptor 3 is open (F_GETFD succeeded) and, by the re-exec
    // convention, belongs to the framework; PARENT_FD_TAKEN ensures it is taken once,
    // so no other OwnedFd in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(PARENT_FD) };
    fcntl_setfd(&fd, FdFlags::CLOEXEC).map_err(|e| Error::NoParentChannel(e.into()))?;
    let st = fstat(&fd).map_err(|e| Error::NoParentChannel(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(Error::NoParentChannel(Errno::NOTSOCK.into()));
    }
    Ok(fd)
}
