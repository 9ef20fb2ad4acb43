//! The crate's error type.

use core::fmt;
use std::io;

use crate::args::ArgsError;
use crate::control::{self, PayloadError};
use crate::control_socket::SocketError;
use crate::privdrop::PrivdropError;
pub use crate::readiness::AckError;
use crate::route::Peer;
use crate::route::ProcId;
pub use crate::route::RouteError;
use crate::route::MAX_INSTANCES;

/// An application error: returned by a handler, it ends the process with a log line
/// naming it and a non-zero exit status.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// A table that cannot describe a daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableError {
    /// No process with id 0.
    NoParent,
    /// The parent must have exactly one instance, drop no privileges and create no
    /// control socket (the control process does).
    BadParent,
    /// Two processes with one id.
    DuplicateId(ProcId),
    /// Two processes with one title.
    DuplicateTitle(String),
    /// A title that is empty, starts with `-`, or contains NUL or white space.
    BadTitle(String),
    /// An instance count of 0 or above [`MAX_INSTANCES`].
    BadInstances {
        /// The process.
        id: ProcId,
        /// The count asked for.
        instances: u32,
    },
    /// A process id the table does not have.
    UnknownProcess(ProcId),
    /// The frame size limit is not valid for the dialect.
    BadMaxFrame(usize),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::NoParent => f.write_str("the table has no parent (process 0)"),
            TableError::BadParent => f.write_str(
                "the parent has exactly one instance and no user, chroot or control socket",
            ),
            TableError::DuplicateId(id) => write!(f, "process id {id} appears twice"),
            TableError::DuplicateTitle(t) => write!(f, "process title {t:?} appears twice"),
            TableError::BadTitle(t) => write!(f, "bad process title {t:?}"),
            TableError::BadInstances { id, instances } => write!(
                f,
                "process {id}: {instances} instances (1 to {MAX_INSTANCES} allowed)"
            ),
            TableError::UnknownProcess(id) => write!(f, "no process with id {id}"),
            TableError::BadMaxFrame(n) => write!(f, "frame size limit {n} is not valid"),
        }
    }
}

impl std::error::Error for TableError {}

/// A message on the mesh that breaks the framework's protocol. proc.c calls `fatalx`
/// for these; here the dispatch path returns them and the event loop ends the
/// process with a log line and a non-zero status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The process's handler does not handle this type.
    Unhandled {
        /// The message type.
        ty: u32,
    },
    /// A reserved type the framework does not define.
    UnknownControl {
        /// The message type.
        ty: u32,
    },
    /// A framework payload of the wrong shape.
    Payload(PayloadError),
    /// A `PROCFD` without a descriptor.
    MissingFd,
    /// A framework message only the parent may send came from another peer, or one
    /// only children send reached a child.
    WrongSender {
        /// The message type.
        ty: u32,
    },
    /// An application message before the mesh was ready.
    BeforeReady {
        /// The message type.
        ty: u32,
    },
    /// The parent's table differs from this process's (different instance counts).
    LayoutMismatch {
        /// The parent's (id, instances) list.
        parent: Vec<(ProcId, u32)>,
        /// This process's.
        mine: Vec<(ProcId, u32)>,
    },
    /// The parent finished sending channels but some expected ones never came.
    MeshIncomplete {
        /// The peers without a channel.
        missing: Vec<Peer>,
    },
    /// A bad readiness acknowledgement.
    Ack(AckError),
    /// A second `PROCREADY` or `READY` from the parent.
    Repeated {
        /// The message type.
        ty: u32,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Unhandled { ty } => write!(f, "got invalid imsg {ty}: no handler"),
            ProtocolError::UnknownControl { ty } => {
                write!(f, "got invalid imsg {ty:#x}: reserved type")
            }
            ProtocolError::Payload(e) => e.fmt(f),
            ProtocolError::MissingFd => f.write_str("PROCFD without a descriptor"),
            ProtocolError::WrongSender { ty } => write!(
                f,
                "{} from a peer that may not send it",
                control::name(*ty).unwrap_or("control message")
            ),
            ProtocolError::BeforeReady { ty } => {
                write!(f, "message {ty} before the mesh was ready")
            }
            ProtocolError::LayoutMismatch { parent, mine } => write!(
                f,
                "process table differs from the parent's: (id, instances) {parent:?} there, \
                 {mine:?} here; build it from the same arguments in every process"
            ),
            ProtocolError::MeshIncomplete { missing } => {
                write!(f, "mesh incomplete: no channel to")?;
                for p in missing {
                    write!(f, " {p}")?;
                }
                Ok(())
            }
            ProtocolError::Ack(e) => e.fmt(f),
            ProtocolError::Repeated { ty } => write!(
                f,
                "second {} from the parent",
                control::name(*ty).unwrap_or("control message")
            ),
        }
    }
}

/// Everything the mesh can report.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The process table is not valid.
    Table(TableError),
    /// The `-P`/`-I` prefix is malformed.
    Args(ArgsError),
    /// `-P` names a title the table does not have.
    UnknownTitle(String),
    /// Started as a child but descriptor 3 is not a socket from the parent.
    NoParentChannel(io::Error),
    /// A target instance that does not exist.
    Route(RouteError),
    /// A process id the table does not have.
    UnknownProcess(ProcId),
    /// No channel to that peer (the policy gives none, or it is closed).
    NotConnected(Peer),
    /// An application tried to send a type reserved for the framework.
    ReservedType(u32),
    /// A channel failed.
    Channel {
        /// The peer at the other end.
        peer: Peer,
        /// What went wrong.
        error: imsg_io::Error,
    },
    /// A peer broke the protocol.
    Protocol {
        /// The peer it came from.
        from: Peer,
        /// What was wrong.
        error: ProtocolError,
    },
    /// The application's handler failed.
    App(AppError),
    /// Dropping privileges failed.
    Privdrop(PrivdropError),
    /// A control socket could not be created (in use, not a socket, a failed call).
    ControlSocket(SocketError),
    /// A system call failed.
    Os {
        /// What was being done.
        what: &'static str,
        /// The error.
        error: io::Error,
    },
}

impl Error {
    /// Whether this is a send refused at a queue's high-water mark
    /// ([`QueueKind`](crate::QueueKind)): `Channel` with [`imsg_io::Error::QueueFull`].
    /// Nothing was queued; the descriptor, if any, is in the inner error's `fd`.
    pub fn is_queue_full(&self) -> bool {
        matches!(
            self,
            Error::Channel {
                error: imsg_io::Error::QueueFull { .. },
                ..
            }
        )
    }

    pub(crate) fn os(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |error| Error::Os { what, error }
    }

    pub(crate) fn errno(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> Error {
        move |e| Error::Os {
            what,
            error: e.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Table(e) => write!(f, "process table: {e}"),
            Error::Args(e) => e.fmt(f),
            Error::UnknownTitle(t) => write!(f, "-P {t}: no such process in the table"),
            Error::NoParentChannel(e) => {
                write!(f, "descriptor 3 is not a channel from the parent: {e}")
            }
            Error::Route(e) => e.fmt(f),
            Error::UnknownProcess(id) => write!(f, "no process with id {id}"),
            Error::NotConnected(p) => write!(f, "no channel to {p}"),
            Error::ReservedType(t) => {
                write!(f, "message type {t:#x} is reserved for the framework")
            }
            Error::Channel { peer, error } => write!(f, "channel to {peer}: {error}"),
            Error::Protocol { from, error } => write!(f, "protocol error from {from}: {error}"),
            Error::App(e) => write!(f, "application: {e}"),
            Error::Privdrop(e) => write!(f, "cannot drop privileges: {e}"),
            Error::ControlSocket(e) => e.fmt(f),
            Error::Os { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for Error {
    /// The cause of the wrapped error, whose text this error's message already
    /// includes (the rule imsg-io's errors follow too): a chain printed level by
    /// level, as anyhow's `{:#}` does, says each thing once.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Table(e) => e.source(),
            Error::Args(e) => e.source(),
            Error::Route(e) => e.source(),
            Error::Channel { error, .. } => error.source(),
            Error::Privdrop(e) => e.source(),
            Error::ControlSocket(e) => e.source(),
            Error::App(e) => e.source(),
            Error::Os { error, .. } | Error::NoParentChannel(error) => error.source(),
            _ => None,
        }
    }
}

impl From<TableError> for Error {
    fn from(e: TableError) -> Error {
        Error::Table(e)
    }
}

impl From<RouteError> for Error {
    fn from(e: RouteError) -> Error {
        Error::Route(e)
    }
}

impl From<ArgsError> for Error {
    fn from(e: ArgsError) -> Error {
        Error::Args(e)
    }
}

impl From<SocketError> for Error {
    fn from(e: SocketError) -> Error {
        Error::ControlSocket(e)
    }
}

impl From<PrivdropError> for Error {
    fn from(e: PrivdropError) -> Error {
        Error::Privdrop(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Peer, ProcId};

    /// Each level of the chain, as anyhow's `{:#}` prints it.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut at = e.source();
        while let Some(s) = at {
            out.push(s.to_string());
            at = s.source();
        }
        out
    }

    #[test]
    fn chains_say_each_thing_once() {
        let pipe = || io::Error::from(io::ErrorKind::BrokenPipe);
        let peer = Peer::new(ProcId(1), 0);
        let cases = [
            Error::Channel {
                peer,
                error: imsg_io::Error::Io(pipe()),
            },
            Error::Os {
                what: "poll",
                error: pipe(),
            },
            Error::NoParentChannel(pipe()),
            Error::Route(RouteError {
                instance: 3,
                instances: 2,
            }),
            Error::Privdrop(PrivdropError::Chdir(pipe())),
            Error::App(Box::new(io::Error::other(pipe()))),
        ];
        for e in &cases {
            let c = chain(e);
            for w in c.windows(2) {
                assert!(!w[0].contains(&w[1]), "{:?} repeats {:?}", w[0], w[1]);
            }
        }
        assert_eq!(
            chain(&cases[0]),
            ["channel to 1[0]: imsg channel I/O: broken pipe"]
        );
    }
}
