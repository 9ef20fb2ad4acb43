//! The error type of channels.

use std::fmt;
use std::io;

/// Everything a channel can report.
///
/// ```
/// use imsg_io::Error;
/// let e: Error = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
/// assert!(matches!(e, Error::Io(_)));
/// assert_eq!(Error::PeerClosed.to_string(),
///     "peer closed the connection; the queued messages and their descriptors were discarded");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A frame from the peer is malformed (bad length, other dialect, over the
    /// limit), or the caller's frame or setting is out of bounds. A malformed frame
    /// from the peer leaves the stream unsynchronised: every later
    /// [`get`](crate::Channel::get) returns the same error; close the channel.
    Codec(imsg_codec::Error),
    /// A system call failed.
    Io(io::Error),
    /// Writing failed with `EPIPE` or `ECONNRESET`: the peer is gone. The whole send
    /// queue was discarded with this error: its frames are not sent and its queued
    /// descriptors are closed ([`queue_len`](crate::Channel::queue_len) is then 0).
    PeerClosed,
    /// A descriptor was given to a channel without descriptor passing
    /// ([`Config::fdpass`](crate::Config::fdpass) off). The descriptor was closed and
    /// nothing was queued.
    FdPassingDisabled,
    /// The kernel truncated the control data of a read (`MSG_CTRUNC`): one or more
    /// descriptors the peer sent were lost (sent too many at once, or this process
    /// ran out of descriptors). The bytes of that read were kept and the
    /// descriptors that did arrive with it were closed, so the frame that was
    /// flagged for a descriptor is delivered without one; the channel stays usable.
    DescriptorsLost,
    /// The peer closed the stream in the middle of a frame. `buffered` bytes of that
    /// frame had arrived; they are dropped with the channel. Complete frames before
    /// it can still be taken with [`get`](crate::Channel::get).
    UnexpectedEof {
        /// Bytes of the incomplete frame that were received.
        buffered: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Codec(e) => write!(f, "imsg frame: {e}"),
            Error::Io(e) => write!(f, "imsg channel I/O: {e}"),
            Error::PeerClosed => f.write_str(
                "peer closed the connection; the queued messages and their descriptors were \
                 discarded",
            ),
            Error::FdPassingDisabled => f.write_str(
                "descriptor passing is not enabled on this channel; the descriptor was closed",
            ),
            Error::DescriptorsLost => f.write_str(
                "descriptors sent by the peer were lost (control data truncated, MSG_CTRUNC)",
            ),
            Error::UnexpectedEof { buffered } => write!(
                f,
                "peer closed the stream in the middle of a frame ({buffered} bytes of it received)"
            ),
        }
    }
}

/// Words [`Channel::peer_may_speak`](crate::Channel::peer_may_speak) for an error
/// message: the peer hung up right after a frame with a descriptor, which is what a
/// peer of the other dialect does.
///
/// ```
/// use imsg_io::{DialectHint, Dialect};
/// assert_eq!(
///     DialectHint(Dialect::Current).to_string(),
///     "the peer closed the connection right after receiving a frame with a descriptor: \
///      it may speak the current imsg dialect (OpenBSD >= 7.7, tmux >= 3.6), not the legacy one"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialectHint(pub imsg_codec::Dialect);

impl fmt::Display for DialectHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use imsg_codec::Dialect;
        let who = match self.0 {
            Dialect::Legacy => "OpenBSD <= 7.6, tmux <= 3.5a",
            Dialect::Current => "OpenBSD >= 7.7, tmux >= 3.6",
        };
        write!(
            f,
            "the peer closed the connection right after receiving a frame with a descriptor: \
             it may speak the {} imsg dialect ({who}), not the {} one",
            self.0,
            self.0.other()
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Codec(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

impl From<imsg_codec::Error> for Error {
    fn from(e: imsg_codec::Error) -> Self {
        Error::Codec(e)
    }
}
