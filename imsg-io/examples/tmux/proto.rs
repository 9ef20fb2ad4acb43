//! The tmux 3.3a client–server protocol spoken over an imsg [`Channel`]: message
//! types, the payloads of the identify sequence and of `COMMAND` (client to
//! server), the file messages and `EXIT` (server to client), and a client that
//! runs one command to its end.
//!
//! Shared by the `tmux` example and the tmux interop tests (through `#[path]`),
//! each of which uses a part of it. Every payload is checked for its exact size:
//! the 3.3a server calls `fatalx()` (and dies) on a wrong one, so the encoders
//! never produce one and the decoders refuse one with [`ProtoError::BadSize`].
#![allow(dead_code)]

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use imsg_codec::{exact, Reader, HEADER_SIZE, MAX_IMSGSIZE};
use imsg_io::{Channel, OwnedMessage, ReadStatus};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// tmux's `PROTOCOL_VERSION`: the low byte of every header's peerid, both ways.
pub const PROTOCOL_VERSION: u32 = 8;

/// The largest payload a tmux frame carries (the limit counts the header).
pub const MAX_PAYLOAD: usize = MAX_IMSGSIZE - HEADER_SIZE;

/// tmux's message types (`enum msgtype` in tmux.h, 3.3a).
pub mod msg {
    /// The receiver speaks another protocol version.
    pub const VERSION: u32 = 12;
    /// Identify: `int` client flags.
    pub const IDENTIFY_FLAGS: u32 = 100;
    /// Identify: the client's `TERM`, NUL-terminated.
    pub const IDENTIFY_TERM: u32 = 101;
    /// Identify: the client's tty name (empty when none), NUL-terminated.
    pub const IDENTIFY_TTYNAME: u32 = 102;
    /// Identify: obsolete, no longer sent by 3.3a.
    pub const IDENTIFY_OLDCWD: u32 = 103;
    /// Identify: empty payload, the client's stdin as the descriptor.
    pub const IDENTIFY_STDIN: u32 = 104;
    /// Identify: one `NAME=VALUE` environment entry, NUL-terminated.
    pub const IDENTIFY_ENVIRON: u32 = 105;
    /// Identify: end of the sequence, empty payload.
    pub const IDENTIFY_DONE: u32 = 106;
    /// Identify: the client's pid as `int`.
    pub const IDENTIFY_CLIENTPID: u32 = 107;
    /// Identify: the client's working directory, NUL-terminated.
    pub const IDENTIFY_CWD: u32 = 108;
    /// Identify: `int` terminal features.
    pub const IDENTIFY_FEATURES: u32 = 109;
    /// Identify: empty payload, the client's stdout as the descriptor.
    pub const IDENTIFY_STDOUT: u32 = 110;
    /// Identify: `uint64_t` client flags.
    pub const IDENTIFY_LONGFLAGS: u32 = 111;
    /// Identify: one terminfo capability, NUL-terminated.
    pub const IDENTIFY_TERMINFO: u32 = 112;
    /// `int argc` then the NUL-terminated arguments.
    pub const COMMAND: u32 = 200;
    /// Detach an attached client.
    pub const DETACH: u32 = 201;
    /// Detach and kill the client's parent.
    pub const DETACHKILL: u32 = 202;
    /// The command finished: optional `int retval`, optional message.
    pub const EXIT: u32 = 203;
    /// The server saw the client exit.
    pub const EXITED: u32 = 204;
    /// The client is exiting.
    pub const EXITING: u32 = 205;
    /// Lock the client.
    pub const LOCK: u32 = 206;
    /// The client is attached.
    pub const READY: u32 = 207;
    /// The client's terminal changed size.
    pub const RESIZE: u32 = 208;
    /// Run the user's shell.
    pub const SHELL: u32 = 209;
    /// The server is shutting down.
    pub const SHUTDOWN: u32 = 210;
    /// Server asks the client to open a file for reading.
    pub const READ_OPEN: u32 = 300;
    /// `int stream` then data read by the client.
    pub const READ: u32 = 301;
    /// `int stream, int error`: the client finished reading.
    pub const READ_DONE: u32 = 302;
    /// `int stream, int fd, int flags`, optional path: open a file for writing.
    pub const WRITE_OPEN: u32 = 303;
    /// `int stream` then data for the client to write.
    pub const WRITE: u32 = 304;
    /// `int stream, int error`: the client opened (or failed to open) the file.
    pub const WRITE_READY: u32 = 305;
    /// `int stream`: the server closes a write stream.
    pub const WRITE_CLOSE: u32 = 306;
}

/// Why a tmux exchange failed.
#[derive(Debug)]
pub enum ProtoError {
    /// A payload of the wrong size for its type.
    BadSize {
        /// The message type.
        ty: u32,
        /// The payload length received.
        len: usize,
    },
    /// A string payload that is not exactly one NUL-terminated string.
    BadString {
        /// The message type.
        ty: u32,
    },
    /// A string or argument to send contains a NUL byte.
    NulInString,
    /// A message to send does not fit in one tmux frame.
    TooLong {
        /// The message type.
        ty: u32,
        /// The payload length it would have.
        len: usize,
    },
    /// The peer speaks another protocol version (its header's peerid, or
    /// `MSG_VERSION` from the server).
    Version {
        /// The peer's peerid.
        peerid: u32,
    },
    /// A message that has no place at this point of the exchange.
    Unexpected {
        /// The message type.
        ty: u32,
    },
    /// A message that should carry a descriptor arrived without one.
    MissingFd {
        /// The message type.
        ty: u32,
    },
    /// The imsg channel failed.
    Channel(imsg_io::Error),
    /// Writing the command's output (or reading its input) failed.
    Io(io::Error),
    /// The deadline passed.
    Timeout,
    /// The peer closed the connection before the exchange ended.
    Eof,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadSize { ty, len } => {
                write!(f, "message type {ty}: bad payload size {len}")
            }
            ProtoError::BadString { ty } => {
                write!(
                    f,
                    "message type {ty}: payload is not one NUL-terminated string"
                )
            }
            ProtoError::NulInString => f.write_str("a string to send contains a NUL byte"),
            ProtoError::TooLong { ty, len } => write!(
                f,
                "message type {ty}: payload of {len} bytes exceeds tmux's {MAX_PAYLOAD}"
            ),
            ProtoError::Version { peerid } => write!(
                f,
                "protocol version mismatch (ours {PROTOCOL_VERSION}, peer's peerid {peerid})"
            ),
            ProtoError::Unexpected { ty } => write!(f, "unexpected message type {ty}"),
            ProtoError::MissingFd { ty } => {
                write!(f, "message type {ty} arrived without its descriptor")
            }
            ProtoError::Channel(e) => write!(f, "imsg channel: {e}"),
            ProtoError::Io(e) => write!(f, "{e}"),
            ProtoError::Timeout => f.write_str("timed out"),
            ProtoError::Eof => f.write_str("connection closed before the exchange ended"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<imsg_io::Error> for ProtoError {
    fn from(e: imsg_io::Error) -> ProtoError {
        ProtoError::Channel(e)
    }
}

impl From<io::Error> for ProtoError {
    fn from(e: io::Error) -> ProtoError {
        ProtoError::Io(e)
    }
}

impl From<imsg_codec::NoSpace> for ProtoError {
    fn from(e: imsg_codec::NoSpace) -> ProtoError {
        ProtoError::Channel(imsg_io::Error::NoSpace(e))
    }
}

/// A message from client to server, its payload decoded (borrowed).
///
/// Strings are given without their NUL terminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// `MSG_IDENTIFY_FLAGS`.
    Flags(i32),
    /// `MSG_IDENTIFY_LONGFLAGS`.
    LongFlags(u64),
    /// `MSG_IDENTIFY_TERM`.
    Term(&'a [u8]),
    /// `MSG_IDENTIFY_TTYNAME`.
    TtyName(&'a [u8]),
    /// `MSG_IDENTIFY_CWD`.
    Cwd(&'a [u8]),
    /// `MSG_IDENTIFY_FEATURES`.
    Features(i32),
    /// `MSG_IDENTIFY_STDIN` (the descriptor travels with the frame).
    Stdin,
    /// `MSG_IDENTIFY_STDOUT` (the descriptor travels with the frame).
    Stdout,
    /// `MSG_IDENTIFY_CLIENTPID`.
    ClientPid(i32),
    /// `MSG_IDENTIFY_ENVIRON`: one `NAME=VALUE`.
    Environ(&'a [u8]),
    /// `MSG_IDENTIFY_TERMINFO`: one capability.
    Terminfo(&'a [u8]),
    /// `MSG_IDENTIFY_DONE`.
    Done,
    /// `MSG_COMMAND`: `argc` arguments packed one after another, each with its NUL.
    Command(Argv<'a>),
    /// `MSG_WRITE_READY`.
    WriteReady {
        /// The stream the server named in `WRITE_OPEN`.
        stream: i32,
        /// 0, or the `errno` of the client's failure to open it.
        error: i32,
    },
    /// `MSG_READ`: data for a stream the server opened with `READ_OPEN`.
    Read {
        /// The stream.
        stream: i32,
        /// The data.
        data: &'a [u8],
    },
    /// `MSG_READ_DONE`.
    ReadDone {
        /// The stream.
        stream: i32,
        /// 0 at end of file, or the `errno` of the failure.
        error: i32,
    },
    /// `MSG_EXITING`.
    Exiting,
}

/// The arguments of a `COMMAND`: `argc` NUL-terminated strings, packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argv<'a> {
    packed: &'a [u8],
}

impl<'a> Argv<'a> {
    /// Checks `packed` holds NUL-terminated strings only (none unterminated).
    fn new(packed: &'a [u8]) -> Option<Argv<'a>> {
        (packed.is_empty() || packed.last() == Some(&0)).then_some(Argv { packed })
    }

    /// Packs `args` into `out` (cleared first), refusing NULs inside an argument.
    pub fn pack<A: AsRef<[u8]>>(args: &[A], out: &'a mut Vec<u8>) -> Result<Argv<'a>, ProtoError> {
        out.clear();
        for a in args {
            let a = a.as_ref();
            if a.contains(&0) {
                return Err(ProtoError::NulInString);
            }
            out.extend_from_slice(a);
            out.push(0);
        }
        Ok(Argv { packed: out })
    }

    /// The number of arguments.
    pub fn len(&self) -> usize {
        self.packed.iter().filter(|&&b| b == 0).count()
    }

    /// True when there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// The arguments, without their NULs.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let packed = self.packed;
        let body = packed.strip_suffix(&[0]).unwrap_or(packed);
        body.split(|&b| b == 0).take(self.len())
    }
}

/// A message from server to client, its payload decoded (borrowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// `MSG_VERSION`: the server refuses our protocol version.
    Version,
    /// `MSG_WRITE_OPEN`: open `path` (or, without one or with `-`, the client's
    /// descriptor `fd`) for writing as `stream`.
    WriteOpen {
        /// The stream number the server chose.
        stream: i32,
        /// The client's descriptor number (1 stdout, 2 stderr) when `path` is `-`.
        fd: i32,
        /// `open(2)` flags for a path.
        flags: i32,
        /// The path, if the server sent one.
        path: Option<&'a [u8]>,
    },
    /// `MSG_WRITE`: data for `stream`.
    Write {
        /// The stream.
        stream: i32,
        /// The data.
        data: &'a [u8],
    },
    /// `MSG_WRITE_CLOSE`.
    WriteClose {
        /// The stream.
        stream: i32,
    },
    /// `MSG_READ_OPEN`: open `path` (or descriptor `fd` for `-`) for reading.
    ReadOpen {
        /// The stream number the server chose.
        stream: i32,
        /// The client's descriptor number when `path` is `-`.
        fd: i32,
        /// The path, if the server sent one.
        path: Option<&'a [u8]>,
    },
    /// `MSG_EXIT`: the command is over.
    Exit {
        /// The exit status, if the server sent one.
        retval: Option<i32>,
        /// A message to show, if the server sent one.
        message: Option<&'a [u8]>,
    },
    /// `MSG_EXITED`, `MSG_READY`, `MSG_DETACH`… : a type this client has no use for.
    Other(u32),
}

/// The string in a NUL-terminated payload, as tmux's server requires it.
fn c_string(ty: u32, payload: &[u8]) -> Result<&[u8], ProtoError> {
    match payload.split_last() {
        Some((0, s)) if !s.contains(&0) => Ok(s),
        _ => Err(ProtoError::BadString { ty }),
    }
}

/// An optional NUL-terminated path after a fixed part.
fn optional_path(ty: u32, rest: &[u8]) -> Result<Option<&[u8]>, ProtoError> {
    if rest.is_empty() {
        Ok(None)
    } else {
        c_string(ty, rest).map(Some)
    }
}

/// One `int` (or, for `u64`, one `uint64_t`) and nothing else.
fn exact_i32(ty: u32, payload: &[u8]) -> Result<i32, ProtoError> {
    let ([v, ..], rest) = ints(ty, payload, 1)?;
    empty(ty, rest)
        .map(|()| v)
        .map_err(|_| ProtoError::BadSize {
            ty,
            len: payload.len(),
        })
}

fn exact_u64(ty: u32, payload: &[u8]) -> Result<u64, ProtoError> {
    exact::<u64>(payload).map_err(|_| ProtoError::BadSize {
        ty,
        len: payload.len(),
    })
}

/// Exactly two `int`s.
fn exact_two(ty: u32, payload: &[u8]) -> Result<(i32, i32), ProtoError> {
    match ints(ty, payload, 2)? {
        ([a, b, _], []) => Ok((a, b)),
        _ => Err(ProtoError::BadSize {
            ty,
            len: payload.len(),
        }),
    }
}

fn empty(ty: u32, payload: &[u8]) -> Result<(), ProtoError> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(ProtoError::BadSize {
            ty,
            len: payload.len(),
        })
    }
}

/// The first `n` (at most 3) `int`s of a payload and the rest of it.
fn ints(ty: u32, payload: &[u8], n: usize) -> Result<([i32; 3], &[u8]), ProtoError> {
    let mut r = Reader::new(payload);
    let mut out = [0i32; 3];
    for v in out.iter_mut().take(n) {
        *v = r.get_i32().map_err(|_| ProtoError::BadSize {
            ty,
            len: payload.len(),
        })?;
    }
    Ok((out, r.rest()))
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Result<(), ProtoError> {
    if s.contains(&0) {
        return Err(ProtoError::NulInString);
    }
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

impl<'a> ClientMessage<'a> {
    /// Decodes a client message, checking its size as the 3.3a server does.
    /// Types a client does not send are [`ProtoError::Unexpected`].
    pub fn parse(ty: u32, payload: &'a [u8]) -> Result<ClientMessage<'a>, ProtoError> {
        use ClientMessage as M;
        Ok(match ty {
            msg::IDENTIFY_FLAGS => M::Flags(exact_i32(ty, payload)?),
            msg::IDENTIFY_LONGFLAGS => M::LongFlags(exact_u64(ty, payload)?),
            msg::IDENTIFY_TERM => M::Term(c_string(ty, payload)?),
            msg::IDENTIFY_TTYNAME => M::TtyName(c_string(ty, payload)?),
            msg::IDENTIFY_CWD => M::Cwd(c_string(ty, payload)?),
            msg::IDENTIFY_FEATURES => M::Features(exact_i32(ty, payload)?),
            msg::IDENTIFY_STDIN => empty(ty, payload).map(|()| M::Stdin)?,
            msg::IDENTIFY_STDOUT => empty(ty, payload).map(|()| M::Stdout)?,
            msg::IDENTIFY_CLIENTPID => M::ClientPid(exact_i32(ty, payload)?),
            msg::IDENTIFY_ENVIRON => M::Environ(c_string(ty, payload)?),
            msg::IDENTIFY_TERMINFO => M::Terminfo(c_string(ty, payload)?),
            msg::IDENTIFY_DONE => empty(ty, payload).map(|()| M::Done)?,
            msg::COMMAND => {
                let ([argc, ..], packed) = ints(ty, payload, 1)?;
                let argv = Argv::new(packed).ok_or(ProtoError::BadString { ty })?;
                if usize::try_from(argc).ok() != Some(argv.len()) {
                    return Err(ProtoError::BadString { ty });
                }
                M::Command(argv)
            }
            msg::WRITE_READY | msg::READ_DONE => {
                let (stream, error) = exact_two(ty, payload)?;
                if ty == msg::WRITE_READY {
                    M::WriteReady { stream, error }
                } else {
                    M::ReadDone { stream, error }
                }
            }
            msg::READ => {
                let ([stream, ..], data) = ints(ty, payload, 1)?;
                M::Read { stream, data }
            }
            msg::EXITING => empty(ty, payload).map(|()| M::Exiting)?,
            _ => return Err(ProtoError::Unexpected { ty }),
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        use ClientMessage as M;
        match self {
            M::Flags(_) => msg::IDENTIFY_FLAGS,
            M::LongFlags(_) => msg::IDENTIFY_LONGFLAGS,
            M::Term(_) => msg::IDENTIFY_TERM,
            M::TtyName(_) => msg::IDENTIFY_TTYNAME,
            M::Cwd(_) => msg::IDENTIFY_CWD,
            M::Features(_) => msg::IDENTIFY_FEATURES,
            M::Stdin => msg::IDENTIFY_STDIN,
            M::Stdout => msg::IDENTIFY_STDOUT,
            M::ClientPid(_) => msg::IDENTIFY_CLIENTPID,
            M::Environ(_) => msg::IDENTIFY_ENVIRON,
            M::Terminfo(_) => msg::IDENTIFY_TERMINFO,
            M::Done => msg::IDENTIFY_DONE,
            M::Command(_) => msg::COMMAND,
            M::WriteReady { .. } => msg::WRITE_READY,
            M::Read { .. } => msg::READ,
            M::ReadDone { .. } => msg::READ_DONE,
            M::Exiting => msg::EXITING,
        }
    }

    /// Whether the message must travel with a descriptor.
    pub fn carries_fd(&self) -> bool {
        matches!(self, ClientMessage::Stdin | ClientMessage::Stdout)
    }

    /// Appends the payload to `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        use ClientMessage as M;
        out.clear();
        match *self {
            M::Flags(v) | M::Features(v) | M::ClientPid(v) => out.extend(v.to_ne_bytes()),
            M::LongFlags(v) => out.extend(v.to_ne_bytes()),
            M::Term(s) | M::TtyName(s) | M::Cwd(s) | M::Environ(s) | M::Terminfo(s) => {
                put_str(out, s)?
            }
            M::Stdin | M::Stdout | M::Done | M::Exiting => {}
            M::Command(argv) => {
                let argc = i32::try_from(argv.len()).map_err(|_| ProtoError::TooLong {
                    ty: msg::COMMAND,
                    len: argv.packed.len(),
                })?;
                out.extend(argc.to_ne_bytes());
                out.extend_from_slice(argv.packed);
            }
            M::WriteReady { stream, error } | M::ReadDone { stream, error } => {
                out.extend(stream.to_ne_bytes());
                out.extend(error.to_ne_bytes());
            }
            M::Read { stream, data } => {
                out.extend(stream.to_ne_bytes());
                out.extend_from_slice(data);
            }
        }
        check_len(self.msg_type(), out)
    }
}

fn check_len(ty: u32, payload: &[u8]) -> Result<(), ProtoError> {
    if payload.len() > MAX_PAYLOAD {
        Err(ProtoError::TooLong {
            ty,
            len: payload.len(),
        })
    } else {
        Ok(())
    }
}

impl<'a> ServerMessage<'a> {
    /// Decodes a server message, checking its size as the 3.3a client does.
    pub fn parse(ty: u32, payload: &'a [u8]) -> Result<ServerMessage<'a>, ProtoError> {
        use ServerMessage as M;
        Ok(match ty {
            msg::VERSION => empty(ty, payload).map(|()| M::Version)?,
            msg::WRITE_OPEN => {
                let ([stream, fd, flags], rest) = ints(ty, payload, 3)?;
                M::WriteOpen {
                    stream,
                    fd,
                    flags,
                    path: optional_path(ty, rest)?,
                }
            }
            msg::WRITE => {
                let ([stream, ..], data) = ints(ty, payload, 1)?;
                M::Write { stream, data }
            }
            msg::WRITE_CLOSE => M::WriteClose {
                stream: exact_i32(ty, payload)?,
            },
            msg::READ_OPEN => {
                let ([stream, fd, _], rest) = ints(ty, payload, 2)?;
                M::ReadOpen {
                    stream,
                    fd,
                    path: optional_path(ty, rest)?,
                }
            }
            msg::EXIT => {
                if payload.is_empty() {
                    M::Exit {
                        retval: None,
                        message: None,
                    }
                } else {
                    let ([retval, ..], rest) = ints(ty, payload, 1)?;
                    M::Exit {
                        retval: Some(retval),
                        message: optional_path(ty, rest)?,
                    }
                }
            }
            other => M::Other(other),
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        use ServerMessage as M;
        match self {
            M::Version => msg::VERSION,
            M::WriteOpen { .. } => msg::WRITE_OPEN,
            M::Write { .. } => msg::WRITE,
            M::WriteClose { .. } => msg::WRITE_CLOSE,
            M::ReadOpen { .. } => msg::READ_OPEN,
            M::Exit { .. } => msg::EXIT,
            M::Other(ty) => *ty,
        }
    }

    /// Appends the payload to `out` (cleared first). [`ServerMessage::Other`]
    /// encodes as an empty payload.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        use ServerMessage as M;
        out.clear();
        match *self {
            M::Version | M::Other(_) => {}
            M::WriteOpen {
                stream,
                fd,
                flags,
                path,
            } => {
                for v in [stream, fd, flags] {
                    out.extend(v.to_ne_bytes());
                }
                if let Some(p) = path {
                    put_str(out, p)?;
                }
            }
            M::Write { stream, data } => {
                out.extend(stream.to_ne_bytes());
                out.extend_from_slice(data);
            }
            M::WriteClose { stream } => out.extend(stream.to_ne_bytes()),
            M::ReadOpen { stream, fd, path } => {
                out.extend(stream.to_ne_bytes());
                out.extend(fd.to_ne_bytes());
                if let Some(p) = path {
                    put_str(out, p)?;
                }
            }
            M::Exit { retval, message } => {
                if let Some(v) = retval {
                    out.extend(v.to_ne_bytes());
                    if let Some(m) = message {
                        put_str(out, m)?;
                    }
                } else if message.is_some() {
                    // tmux reads a message only after a retval.
                    return Err(ProtoError::BadSize {
                        ty: msg::EXIT,
                        len: 0,
                    });
                }
            }
        }
        check_len(self.msg_type(), out)
    }
}

/// Waits until `fd` is ready for `events` or `deadline` passes.
pub fn wait_ready(
    fd: impl AsFd,
    events: PollFlags,
    deadline: Option<Instant>,
) -> Result<(), ProtoError> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ProtoError::Timeout);
                }
                Some(Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }))
            }
        };
        let mut fds = [PollFd::new(&fd, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ProtoError::Io(e.into())),
        }
    }
}

/// The next message from `chan`, reading (and waiting, up to `deadline`) as needed;
/// `None` at end of file.
pub fn recv(
    chan: &mut Channel,
    deadline: Option<Instant>,
) -> Result<Option<OwnedMessage>, ProtoError> {
    let mut guard = false;
    loop {
        if let Some(m) = chan.get_owned()? {
            return Ok(Some(m));
        }
        if guard {
            // Too few free descriptors to read safely; the socket stays readable,
            // so waiting for it would spin. Give the process time to close some.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ProtoError::Timeout);
            }
            std::thread::sleep(imsg_io::FD_GUARD_RETRY);
        } else {
            wait_ready(chan.as_fd(), PollFlags::IN, deadline)?;
        }
        guard = match chan.read()? {
            ReadStatus::Eof => return Ok(None),
            ReadStatus::FdGuard => true,
            _ => false,
        };
    }
}

/// Queues `m` on `chan` with tmux's version in the peerid (pid: the channel's).
pub fn send_client(
    chan: &mut Channel,
    m: &ClientMessage<'_>,
    fd: Option<OwnedFd>,
    scratch: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    m.encode(scratch)?;
    chan.compose(m.msg_type(), PROTOCOL_VERSION, 0, fd, scratch)?;
    Ok(())
}

/// Queues `m` on `chan` with tmux's version in the peerid (pid: the channel's).
pub fn send_server(
    chan: &mut Channel,
    m: &ServerMessage<'_>,
    scratch: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    m.encode(scratch)?;
    chan.compose(m.msg_type(), PROTOCOL_VERSION, 0, None, scratch)?;
    Ok(())
}

/// Who the client says it is in the identify sequence.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// `TERM` (the real client sends its environment's, or `unknown`).
    pub term: Vec<u8>,
    /// The working directory for the command.
    pub cwd: Vec<u8>,
    /// The client's pid.
    pub client_pid: i32,
    /// `NAME=VALUE` entries for the server's copy of the client environment.
    pub environ: Vec<Vec<u8>>,
}

impl Identity {
    /// This process: `TERM` (or `unknown`), its working directory (or `/`), its pid
    /// and its whole environment (entries too long for one frame are left out,
    /// as the real client leaves them out).
    pub fn of_this_process() -> Identity {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let term = std::env::var_os("TERM")
            .map(|t| t.into_vec())
            .filter(|t| !t.is_empty() && !t.contains(&0))
            .unwrap_or_else(|| b"unknown".to_vec());
        let cwd = std::env::current_dir()
            .map(|p| p.into_os_string().into_vec())
            .unwrap_or_else(|_| b"/".to_vec());
        let environ = std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .filter(|e| e.len() < MAX_PAYLOAD && !e.contains(&0))
            .collect();
        Identity {
            term,
            cwd,
            client_pid: rustix::process::getpid().as_raw_nonzero().get(),
            environ,
        }
    }
}

/// Where a command's streams go and come from.
pub struct ClientIo<'a> {
    /// The descriptor passed as the client's stdin (`MSG_IDENTIFY_STDIN`).
    pub stdin_fd: OwnedFd,
    /// The descriptor passed as the client's stdout (`MSG_IDENTIFY_STDOUT`).
    pub stdout_fd: OwnedFd,
    /// What the server reads when it opens `-` for reading (`load-buffer -`);
    /// `None` answers such a request with `EBADF`.
    pub input: Option<&'a mut dyn Read>,
    /// Where `WRITE` data for the client's descriptor 1 goes.
    pub out: &'a mut dyn Write,
    /// Where `WRITE` data for the client's descriptor 2 goes.
    pub err: &'a mut dyn Write,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// tmux's exit status (0 when the server sent none).
    pub retval: i32,
    /// The message the server sent with `EXIT`, if any.
    pub message: Option<Vec<u8>>,
}

/// Sends the identify sequence exactly as the real 3.3a client orders it
/// (`TTYNAME` must come before `DONE`: the 3.3a server crashes otherwise).
pub fn send_identify(
    chan: &mut Channel,
    id: &Identity,
    stdin_fd: OwnedFd,
    stdout_fd: OwnedFd,
    scratch: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    use ClientMessage as M;
    for m in [
        M::Flags(0),
        M::LongFlags(0),
        M::Term(&id.term),
        M::Features(0),
        M::TtyName(b""),
        M::Cwd(&id.cwd),
    ] {
        send_client(chan, &m, None, scratch)?;
    }
    send_client(chan, &M::Stdin, Some(stdin_fd), scratch)?;
    send_client(chan, &M::Stdout, Some(stdout_fd), scratch)?;
    send_client(chan, &M::ClientPid(id.client_pid), None, scratch)?;
    for e in &id.environ {
        send_client(chan, &M::Environ(e), None, scratch)?;
    }
    send_client(chan, &M::Done, None, scratch)
}

/// Where a write stream goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    Out,
    Err,
}

/// Runs one tmux command (`args` may chain several with `;`) on a fresh
/// connection: identify, `COMMAND`, then serve the server's file requests until
/// `EXIT`. Every wait ends by `deadline`.
///
/// Output streams are the client's descriptors 1 and 2 (`-` paths); a request to
/// open a file by name is refused with `ENOTSUP` (tmux reports it and goes on),
/// as is reading anything but `-`.
pub fn run_command<A: AsRef<[u8]>>(
    chan: &mut Channel,
    id: &Identity,
    args: &[A],
    io: ClientIo<'_>,
    deadline: Option<Instant>,
) -> Result<Exit, ProtoError> {
    let ClientIo {
        stdin_fd,
        stdout_fd,
        mut input,
        out,
        err,
    } = io;
    let mut scratch = Vec::with_capacity(256);
    send_identify(chan, id, stdin_fd, stdout_fd, &mut scratch)?;
    let mut packed = Vec::new();
    let argv = Argv::pack(args, &mut packed)?;
    send_client(chan, &ClientMessage::Command(argv), None, &mut scratch)?;
    chan.flush()?;

    let mut streams: Vec<(i32, Sink)> = Vec::new();
    loop {
        let Some(m) = recv(chan, deadline)? else {
            return Err(ProtoError::Eof);
        };
        if m.peerid() & 0xff != PROTOCOL_VERSION {
            return Err(ProtoError::Version { peerid: m.peerid() });
        }
        let reply = match ServerMessage::parse(m.msg_type(), m.payload())? {
            ServerMessage::Version => return Err(ProtoError::Version { peerid: m.peerid() }),
            ServerMessage::WriteOpen {
                stream, fd, path, ..
            } => {
                let sink = match (path, fd) {
                    (None | Some(b"-"), 1) => Some(Sink::Out),
                    (None | Some(b"-"), 2) => Some(Sink::Err),
                    _ => None,
                };
                let error = match sink {
                    Some(s) => {
                        streams.retain(|&(st, _)| st != stream);
                        streams.push((stream, s));
                        0
                    }
                    None => rustix::io::Errno::NOTSUP.raw_os_error(),
                };
                Some(ClientMessage::WriteReady { stream, error })
            }
            ServerMessage::Write { stream, data } => {
                match streams.iter().find(|&&(st, _)| st == stream) {
                    Some((_, Sink::Out)) => out.write_all(data)?,
                    Some((_, Sink::Err)) => err.write_all(data)?,
                    // tmux's own client drops data for a stream it does not know.
                    None => {}
                }
                None
            }
            ServerMessage::WriteClose { stream } => {
                streams.retain(|&(st, _)| st != stream);
                None
            }
            ServerMessage::ReadOpen { stream, fd, path } => {
                let from_stdin = matches!(path, None | Some(b"-")) && fd == 0;
                let error = match (&mut input, from_stdin) {
                    (Some(r), true) => {
                        send_input(chan, stream, &mut **r, &mut scratch)?;
                        0
                    }
                    (None, true) => rustix::io::Errno::BADF.raw_os_error(),
                    (_, false) => rustix::io::Errno::NOTSUP.raw_os_error(),
                };
                Some(ClientMessage::ReadDone { stream, error })
            }
            ServerMessage::Exit { retval, message } => {
                out.flush()?;
                err.flush()?;
                return Ok(Exit {
                    retval: retval.unwrap_or(0),
                    message: message.map(<[u8]>::to_vec),
                });
            }
            ServerMessage::Other(ty) => return Err(ProtoError::Unexpected { ty }),
        };
        if let Some(r) = reply {
            send_client(chan, &r, None, &mut scratch)?;
            chan.flush()?;
        }
    }
}

/// Streams all of `input` to the server as `READ` messages on `stream`.
fn send_input(
    chan: &mut Channel,
    stream: i32,
    input: &mut dyn Read,
    scratch: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    let mut buf = vec![0u8; MAX_PAYLOAD - 4];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        send_client(
            chan,
            &ClientMessage::Read {
                stream,
                data: &buf[..n],
            },
            None,
            scratch,
        )?;
        chan.flush()?;
    }
}
