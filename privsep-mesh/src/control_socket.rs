//! Control sockets: the `AF_UNIX` sockets through which `httpctl`-style tools talk to
//! a running daemon (proc.c's `ps_csock` and `ps_rcsocks`, relayd's and bgpd's
//! `control.c`).
//!
//! - [`ControlSocket::bind`] is `control_init`: it refuses to take over a socket a
//!   live daemon listens on, replaces a stale file, binds with the right umask and
//!   mode (main socket 0660, restricted 0666), and is meant to run before chroot and
//!   privilege drop. [`ControlSocket::listen`] is the `listen(2)` of
//!   `control_listen`, after the drop. A process the table marks with
//!   [`ProcSpec::with_control_socket`](crate::ProcSpec::with_control_socket) gets both done
//!   by the framework, as proc.c's `proc_run` does for `PROC_CONTROL`; a
//!   `control_server::ControlServer` then accepts.
//! - [`check_free`] is bgpd's `control_check`: a daemon can refuse to start (before
//!   it detaches) when another one serves the path; [`remove_if_stale`] is the
//!   parent's `control_cleanup` at exit.
//! - [`Access`] says what a client of each socket may ask: everything on the main
//!   socket, only the types the application marks unprivileged on a restricted one.
//! - [`peer_credentials`] reads the connected client's pid, uid and gid
//!   (`SO_PEERCRED`).
//! - [`REFUSED`] is the error frame a client receives for a refused request.
//!
//! ```
//! use privsep_mesh::control_socket::{Access, ControlSocket};
//! let dir = std::env::temp_dir().join(format!("csock-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("d.sock");
//! let sock = ControlSocket::bind(&path, Access::Restricted)?;
//! sock.listen()?;
//! // A second daemon must not take over a live socket.
//! assert!(ControlSocket::bind(&path, Access::Restricted).is_err());
//! drop(sock);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::control::CONTROL_BASE;

/// The frame a control client receives when its request is refused (not allowed on
/// a restricted socket, or a type nobody handles). Payload: the reason, UTF-8 text.
pub const REFUSED: u32 = CONTROL_BASE + 0x10;

/// Listen backlog of a control socket.
pub const BACKLOG: i32 = 16;

/// Which kind of control socket a client came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The main socket: root-owned, mode 0660; every request is allowed.
    Main,
    /// A restricted socket: mode 0666 (anyone may connect); only the message types the
    /// application marks unprivileged are allowed (bgpd's and relayd's "show"
    /// commands).
    Restricted,
}

impl Access {
    /// The file mode the socket gets.
    pub fn mode(self) -> u32 {
        match self {
            Access::Main => 0o660,
            Access::Restricted => 0o666,
        }
    }

    /// Whether a request of type `ty` is allowed through a socket of this kind.
    ///
    /// ```
    /// use privsep_mesh::control_socket::Access;
    /// const SHOW: u32 = 1;
    /// const STOP: u32 = 2;
    /// assert!(Access::Main.permits(STOP, &[SHOW]));
    /// assert!(Access::Restricted.permits(SHOW, &[SHOW]));
    /// assert!(!Access::Restricted.permits(STOP, &[SHOW]));
    /// ```
    pub fn permits(self, ty: u32, unprivileged: &[u32]) -> bool {
        !crate::control::is_control(ty)
            && match self {
                Access::Main => true,
                Access::Restricted => unprivileged.contains(&ty),
            }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Main => "main",
            Access::Restricted => "restricted",
        })
    }
}

/// Why a control socket could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum SocketError {
    /// Something listens on the path: another daemon is running.
    InUse(PathBuf),
    /// The path exists and is not a socket; it is left alone.
    NotASocket(PathBuf),
    /// A system call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::InUse(p) => write!(
                f,
                "control socket {} already in use: is another daemon running?",
                p.display()
            ),
            SocketError::NotASocket(p) => {
                write!(
                    f,
                    "{} exists and is not a socket; not replacing it",
                    p.display()
                )
            }
            SocketError::Io { what, path, error } => {
                write!(f, "control socket {}: {what}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for SocketError {}

/// A bound control socket (listening once [`listen`](Self::listen) was called).
/// Dropping it closes the socket and removes the file (as proc.c's
/// `control_cleanup`), unless [`keep_file`](Self::keep_file) was called (a process
/// inside a chroot must not remove a path there; the parent removes the file).
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
    remove_on_drop: bool,
}

impl ControlSocket {
    /// Creates the socket at `path` (`control_init`: socket, bind, mode; not yet
    /// listening, see [`listen`](Self::listen)).
    ///
    /// If `path` exists: a connect that succeeds means a daemon is serving it, and the
    /// answer is [`SocketError::InUse`] (nothing is touched); a refused connect means a
    /// stale file of a dead daemon, which is removed. The socket is bound with a umask
    /// giving exactly [`Access::mode`], then the mode is set again explicitly (the
    /// umask is per process and this must not depend on it). When run as root the
    /// file is owned by root (the binder).
    pub fn bind(path: &Path, access: Access) -> Result<ControlSocket, SocketError> {
        let io = |what| {
            let path = path.to_path_buf();
            move |error| SocketError::Io { what, path, error }
        };
        if check_free(path)? == Existing::Stale {
            log::info!("removing stale control socket {}", path.display());
            std::fs::remove_file(path).map_err(io("unlink"))?;
        }
        let addr = rustix::net::SocketAddrUnix::new(path).map_err(|e| io("bind")(e.into()))?;
        let fd = crate::sys::stream_socket_cloexec().map_err(io("socket"))?;
        let mask =
            rustix::fs::Mode::from_bits_truncate((0o777 & !access.mode()) as rustix::fs::RawMode);
        let old = rustix::process::umask(mask);
        let bound = rustix::net::bind(&fd, &addr);
        rustix::process::umask(old);
        bound.map_err(|e| io("bind")(e.into()))?;
        let listener = UnixListener::from(fd);
        let sock = ControlSocket {
            listener,
            path: path.to_path_buf(),
            access,
            remove_on_drop: true,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode()))
            .map_err(io("chmod"))?;
        Ok(sock)
    }

    /// Starts listening (the `listen(2)` of proc.c's `control_listen`, after the
    /// privilege drop): from here on clients can connect. Until then a connect is
    /// refused.
    pub fn listen(&self) -> io::Result<()> {
        rustix::net::listen(&self.listener, BACKLOG)?;
        Ok(())
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which kind of socket this is.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Leaves the file in place when this value is dropped.
    pub fn keep_file(mut self) -> ControlSocket {
        self.remove_on_drop = false;
        self
    }

    /// A duplicate of the listening descriptor, e.g. to pass to the control process
    /// (the file stays until this value is dropped).
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        Ok(self.listener.try_clone()?.into())
    }
}

impl AsFd for ControlSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// What [`check_free`] found at a path nobody serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    None,
    /// A socket file nothing listens on: a dead daemon's.
    Stale,
}

/// Whether a control socket can be created at `path` (bgpd's `control_check`):
/// [`SocketError::InUse`] if a daemon serves it, [`SocketError::NotASocket`] if
/// something else is there; otherwise what is there. Nothing is changed.
pub fn check_free(path: &Path) -> Result<Existing, SocketError> {
    let io = |what| {
        let path = path.to_path_buf();
        move |error| SocketError::Io { what, path, error }
    };
    match std::fs::symlink_metadata(path) {
        Ok(md) if !md.file_type().is_socket() => Err(SocketError::NotASocket(path.to_path_buf())),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(SocketError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Existing::Stale),
            Err(e) => Err(io("connect")(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::None),
        Err(e) => Err(io("stat")(e)),
    }
}

/// Removes the socket file at `path` if nothing listens on it any more (proc.c's
/// `control_cleanup`, run by the parent once its control process has gone: a file
/// another daemon serves is left alone). Returns whether a file was removed.
pub fn remove_if_stale(path: &Path) -> bool {
    matches!(check_free(path), Ok(Existing::Stale)) && std::fs::remove_file(path).is_ok()
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The connected peer's credentials at connect time: `SO_PEERCRED` on Linux,
/// `getpeereid` on the BSDs and macOS (which give no pid: 0 there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// Process id (0 where the platform does not say).
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Reads a connected `AF_UNIX` socket's peer credentials.
pub fn peer_credentials(sock: impl AsFd) -> io::Result<Credentials> {
    let (pid, uid, gid) = crate::sys::peer_ids(sock.as_fd())?;
    Ok(Credentials { pid, uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("csock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn modes_and_cleanup() {
        let d = tmpdir("modes");
        for (access, mode) in [(Access::Main, 0o660), (Access::Restricted, 0o666)] {
            let p = d.join(format!("{access}.sock"));
            let s = ControlSocket::bind(&p, access).unwrap();
            let md = std::fs::metadata(&p).unwrap();
            assert_eq!(md.mode() & 0o7777, mode);
            assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
            drop(s);
            assert!(!p.exists(), "file removed on drop");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn live_socket_is_not_stolen_stale_one_is_replaced() {
        let d = tmpdir("stale");
        let p = d.join("d.sock");
        let live = ControlSocket::bind(&p, Access::Main).unwrap();
        live.listen().unwrap();
        let err = ControlSocket::bind(&p, Access::Main).unwrap_err();
        assert!(matches!(err, SocketError::InUse(_)), "{err}");
        assert!(err.to_string().contains("already in use"));
        // The live socket still works.
        let c = UnixStream::connect(&p).unwrap();
        let (srv, _) = live.listener().accept().unwrap();
        let cred = peer_credentials(&srv).unwrap();
        assert_eq!(cred.pid, std::process::id());
        assert_eq!(cred.uid, rustix::process::geteuid().as_raw());
        drop((c, srv));
        // Stale: the listener is closed but the file remains.
        drop(live.keep_file());
        assert!(p.exists());
        let again = ControlSocket::bind(&p, Access::Main).unwrap();
        // Bound, not listening yet (control_init before the privilege drop):
        // connects are refused until listen.
        assert_eq!(
            UnixStream::connect(&p).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        again.listen().unwrap();
        UnixStream::connect(&p).unwrap();
        // The parent's cleanup leaves a served socket alone, removes a stale one.
        assert!(!remove_if_stale(&p));
        drop(again.keep_file());
        assert!(remove_if_stale(&p));
        assert!(!p.exists());
        assert!(matches!(check_free(&p), Ok(Existing::None)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn not_a_socket_is_left_alone() {
        let d = tmpdir("file");
        let p = d.join("d.sock");
        std::fs::write(&p, b"data").unwrap();
        assert!(matches!(
            ControlSocket::bind(&p, Access::Main),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"data");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn restricted_filter() {
        let unpriv = [1, 2];
        for ty in [1, 2] {
            assert!(Access::Restricted.permits(ty, &unpriv));
            assert!(Access::Main.permits(ty, &unpriv));
        }
        for ty in [0, 3, 99] {
            assert!(!Access::Restricted.permits(ty, &unpriv));
            assert!(Access::Main.permits(ty, &unpriv));
        }
        // Framework types never come from a client.
        assert!(!Access::Main.permits(crate::control::VERBOSE, &unpriv));
        let v = crate::control::VERBOSE;
        assert!(!Access::Restricted.permits(v, &[v]));
    }
}
