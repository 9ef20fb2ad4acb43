//! What an application plugs into a process: its [`Handler`] (dispatch callback,
//! readiness and shutdown hooks), the [`Identity`] it runs as, and the [`Received`]
//! messages it is handed.

use std::os::fd::{BorrowedFd, OwnedFd};

use imsg_codec::Reader;
use imsg_io::OwnedMessage;

use crate::context::Context;
use crate::route::{instance_from_pid, Peer};
use crate::signals::Signal;

/// An application error: returned by a handler, it ends the process with a log line
/// naming it and a non-zero exit status.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Who this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The daemon's name ([`crate::ProcTable::new`]).
    pub daemon: String,
    /// Process id and instance.
    pub peer: Peer,
    /// The process title.
    pub title: String,
    /// The operating system's process id.
    pub pid: u32,
}

impl Identity {
    /// `title[instance]`, the form used in log lines.
    pub fn name(&self) -> String {
        format!("{}[{}]", self.title, self.peer.instance)
    }
}

/// Whether a handler took care of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The message was understood.
    Yes,
    /// The handler has nothing for this type: a protocol error, as proc.c's
    /// `fatalx("got invalid imsg")` — the process logs it and ends non-zero.
    No,
}

/// The behaviour of one process: proc.c's `p_cb` dispatch callback, plus the
/// readiness and shutdown hooks. Every method has a default; the defaults accept no
/// application message (proc.c's `proc_dispatch_null`).
///
/// A handler runs in one thread of one process; it is built by the process's start
/// function ([`crate::ProcSpec::start`]) after privileges were dropped.
pub trait Handler {
    /// Called once, when every channel of the whole mesh is connected (every child
    /// has acknowledged the readiness barrier). From here on messages can be sent to
    /// any connected peer, and [`dispatch`](Handler::dispatch) is never called before.
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let _ = ctx;
        Ok(())
    }

    /// One application message (type below [`crate::control::CONTROL_BASE`]) from
    /// peer [`Received::from`].
    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        let _ = (ctx, msg);
        Ok(Handled::No)
    }

    /// A signal the process asked for with [`crate::ProcSpec::signals`].
    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        let _ = (ctx, signal);
        Ok(())
    }

    /// The process is leaving its event loop (end of file on a channel, SIGTERM or
    /// SIGINT, or [`Context::shutdown`]); proc.c's `p_shutdown`. Messages composed
    /// here get one non-blocking write attempt before the channels close.
    fn shutdown(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }
}

/// The handler of a process without a start function: every application message is
/// a protocol error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullHandler;

impl Handler for NullHandler {}

/// A message received on one of the process's channels.
#[derive(Debug)]
pub struct Received {
    from: Peer,
    msg: OwnedMessage,
}

impl Received {
    /// Wraps a message that arrived on the channel to `from`.
    pub fn new(from: Peer, msg: OwnedMessage) -> Received {
        Received { from, msg }
    }

    /// The peer whose channel it arrived on.
    pub fn from(&self) -> Peer {
        self.from
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        self.msg.msg_type()
    }

    /// The peer id field.
    pub fn peerid(&self) -> u32 {
        self.msg.peerid()
    }

    /// The raw pid field: the sender's instance + 1 on the mesh.
    pub fn pid(&self) -> i32 {
        self.msg.pid()
    }

    /// The sender's instance as read from the pid field (for a forwarded message
    /// this is the forwarder's, as in proc.c).
    pub fn sender_instance(&self) -> Option<u32> {
        instance_from_pid(self.msg.pid())
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.msg.payload()
    }

    /// An ibuf-style reader over the payload.
    pub fn reader(&self) -> Reader<'_> {
        self.msg.reader()
    }

    /// Whether the sender flagged a descriptor.
    pub fn flagged_fd(&self) -> bool {
        self.msg.flagged_fd()
    }

    /// The descriptor, without taking it.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.msg.fd()
    }

    /// Takes the descriptor; one not taken is closed with the message.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.msg.take_fd()
    }

    /// The underlying message.
    pub fn message(&self) -> &OwnedMessage {
        &self.msg
    }

    /// The underlying message, moved out (with its descriptor, if not taken).
    pub fn into_message(self) -> OwnedMessage {
        self.msg
    }
}
