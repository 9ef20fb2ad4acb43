//! The control protocol between `httpctl` and `httpd`, shared by both examples.
//!
//! A client sends one request (a type, empty payload) on the control socket and
//! reads replies: [`ROW`] frames (one line of text each) ended by [`END`], or one
//! [`FAILED`] (the daemon could not do it) or `REFUSED` (the socket does not allow
//! it) frame with the reason.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imsg_io::{Channel, Config, ReadStatus};
use privsep_mesh::control_socket::REFUSED;

/// `show procs`: title, instance, pid, uid, gid of every process.
pub const SHOW_PROCS: u32 = 100;
/// `show stats`: requests served per server instance, in total, and access-log lines.
pub const SHOW_STATS: u32 = 101;
/// `log verbose`: debug logging in every process.
pub const LOG_VERBOSE: u32 = 102;
/// `log brief`: back to info.
pub const LOG_BRIEF: u32 = 103;
/// `log reopen`: the parent opens the access log anew and passes it to the logger.
pub const LOG_REOPEN: u32 = 104;
/// `reload`: as SIGHUP.
pub const RELOAD: u32 = 105;
/// `stop`: as SIGTERM.
pub const STOP: u32 = 106;

/// One line of a reply.
pub const ROW: u32 = 120;
/// End of a reply.
pub const END: u32 = 121;
/// The request failed; payload: why.
pub const FAILED: u32 = 122;

/// What a restricted socket allows.
pub const UNPRIVILEGED: [u32; 2] = [SHOW_PROCS, SHOW_STATS];

/// The command words of each request.
pub const COMMANDS: [(&str, u32); 7] = [
    ("show procs", SHOW_PROCS),
    ("show stats", SHOW_STATS),
    ("log verbose", LOG_VERBOSE),
    ("log brief", LOG_BRIEF),
    ("log reopen", LOG_REOPEN),
    ("reload", RELOAD),
    ("stop", STOP),
];

/// The request type of a command given as words (`["show", "stats"]`).
pub fn parse_command(words: &[String]) -> Result<u32, String> {
    let joined = words.join(" ");
    COMMANDS
        .iter()
        .find(|(c, _)| *c == joined)
        .map(|&(_, ty)| ty)
        .ok_or_else(|| {
            let known: Vec<&str> = COMMANDS.iter().map(|(c, _)| *c).collect();
            format!("unknown command {joined:?} (one of: {})", known.join(", "))
        })
}

/// Why a request did not succeed.
#[derive(Debug)]
pub enum CtlError {
    /// Nothing at the path, or nothing listening on it.
    NoDaemon(PathBuf, io::Error),
    /// The socket's mode does not let this user connect.
    PermissionDenied(PathBuf),
    /// The socket does not allow this request.
    Refused(String),
    /// The daemon could not do it.
    Failed(String),
    /// Anything else (timeout, broken frame, connection lost).
    Other(String),
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtlError::NoDaemon(p, e) => write!(f, "{}: {e} (is httpd running?)", p.display()),
            CtlError::PermissionDenied(p) => write!(f, "{}: permission denied", p.display()),
            CtlError::Refused(why) => write!(f, "refused: {why}"),
            CtlError::Failed(why) => write!(f, "failed: {why}"),
            CtlError::Other(why) => f.write_str(why),
        }
    }
}

/// Sends request `ty` on the control socket at `path` and returns the reply's rows.
/// A `stop` whose connection closes before the end frame succeeded (the daemon is
/// going away).
pub fn request(path: &Path, ty: u32, timeout: Duration) -> Result<Vec<String>, CtlError> {
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => CtlError::PermissionDenied(path.to_path_buf()),
        _ => CtlError::NoDaemon(path.to_path_buf(), e),
    })?;
    let other = |e: &dyn std::fmt::Display| CtlError::Other(e.to_string());
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| other(&e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| other(&e))?;
    let mut ch = Channel::new(stream, Config::default()).map_err(|e| other(&e))?;
    ch.compose(ty, 0, 0, None, b"").map_err(|e| other(&e))?;
    ch.flush().map_err(|e| other(&e))?;
    let mut rows = Vec::new();
    loop {
        while let Some(msg) = ch.get_owned().map_err(|e| other(&e))? {
            let text = String::from_utf8_lossy(msg.payload()).into_owned();
            match msg.msg_type() {
                ROW => rows.push(text),
                END => return Ok(rows),
                FAILED => return Err(CtlError::Failed(text)),
                REFUSED => return Err(CtlError::Refused(text)),
                other_ty => {
                    return Err(CtlError::Other(format!("unexpected reply type {other_ty}")))
                }
            }
        }
        match ch.read() {
            Ok(ReadStatus::Read(_)) => {}
            Ok(ReadStatus::Eof) | Err(imsg_io::Error::PeerClosed) if ty == STOP => return Ok(rows),
            Ok(ReadStatus::Eof) => {
                return Err(CtlError::Other("the daemon closed the connection".into()))
            }
            Ok(_) => return Err(CtlError::Other(format!("no answer within {timeout:?}"))),
            Err(e) => return Err(other(&e)),
        }
    }
}
