//! The error type of channels.

use std::fmt;
use std::io;

use imsg_codec::{EmitError, FrameError, LimitError, NoSpace};

/// Everything a channel can report.
///
/// Each variant's message includes the text of the error it wraps, so
/// [`source`](std::error::Error::source) skips that error and goes on with its
/// own cause: a chain printed level by level (anyhow's `{:#}`) says each thing once.
///
/// ```
/// use imsg_io::Error;
/// let e: Error = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
/// assert!(matches!(e, Error::Io(_)));
/// assert_eq!(e.to_string(), "imsg channel I/O: broken pipe");
/// assert!(std::error::Error::source(&e).is_none());
/// assert_eq!(Error::PeerClosed.to_string(),
///     "peer closed the connection; the queued messages and their descriptors were discarded");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A frame from the peer is malformed (bad length, other dialect, over the
    /// limit). The stream is unsynchronised from there: every later
    /// [`get`](crate::ChannelCore::get) returns the same error; close the channel.
    Frame(FrameError),
    /// A frame limit outside what the dialect allows
    /// ([`Config::with_max_frame`](crate::Config::with_max_frame)).
    Limit(LimitError),
    /// A frame to queue is above the channel's frame limit (C: `ERANGE`). Nothing
    /// was queued and its descriptor was closed.
    TooLong {
        /// The frame's total length, header included.
        len: usize,
        /// The channel's limit, header included.
        max: usize,
    },
    /// The send queue is at its high-water mark
    /// ([`Config::queue_limit`](crate::Config::queue_limit)): the frame was not
    /// queued. Its descriptor, if any, is handed back in `fd`. Write (or drop the
    /// peer) before queueing more.
    QueueFull {
        /// The descriptor that was to travel with the frame.
        fd: Option<std::os::fd::OwnedFd>,
        /// Bytes queued and not yet written.
        queued: usize,
        /// The high-water mark.
        limit: usize,
    },
    /// A message builder's payload reached the frame limit
    /// ([`ChannelCore::create`](crate::ChannelCore::create)); what did not fit was not added.
    NoSpace(NoSpace),
    /// A system call failed.
    Io(io::Error),
    /// Writing failed with `EPIPE` or `ECONNRESET`: the peer is gone. The whole send
    /// queue was discarded with this error: its frames are not sent and its queued
    /// descriptors are closed ([`queue_len`](crate::ChannelCore::queue_len) is then 0).
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
    /// it can still be taken with [`get`](crate::ChannelCore::get).
    UnexpectedEof {
        /// Bytes of the incomplete frame that were received.
        buffered: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Frame(e) => write!(f, "invalid imsg frame from the peer: {e}"),
            Error::Limit(e) => write!(f, "channel settings: {e}"),
            Error::TooLong { len, max } => write!(
                f,
                "frame of {len} bytes is above the channel's limit of {max} bytes"
            ),
            Error::QueueFull { queued, limit, .. } => write!(
                f,
                "send queue full: {queued} bytes not yet written, limit {limit}; nothing queued"
            ),
            Error::NoSpace(e) => write!(f, "message above the frame limit: {e}"),
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

/// Words [`ChannelCore::peer_may_speak`](crate::ChannelCore::peer_may_speak) for an error
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
    /// The cause of the wrapped error (whose text this error's message already
    /// includes), if it has one.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    /// Wraps `e`; an `io::Error` that itself wraps a channel error gives that
    /// error back instead of wrapping it twice.
    fn from(e: io::Error) -> Self {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|b| b.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::Io(io::Error::new(kind, other)),
            None => Error::Io(kind.into()),
        }
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        Error::Frame(e)
    }
}

impl From<LimitError> for Error {
    fn from(e: LimitError) -> Self {
        Error::Limit(e)
    }
}

impl From<NoSpace> for Error {
    fn from(e: NoSpace) -> Self {
        Error::NoSpace(e)
    }
}

impl From<EmitError> for Error {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::TooLong { len, max } => Error::TooLong { len, max },
            EmitError::NoSpace(e) => Error::NoSpace(e),
            // `EmitError` may grow; what it says is kept as text.
            other => Error::Io(io::Error::other(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Walks `e`'s chain and checks that no level's message contains the message
    /// of the level below it.
    fn assert_no_repeat(e: &(dyn std::error::Error + 'static)) {
        let mut level = e;
        while let Some(next) = level.source() {
            let (outer, inner) = (level.to_string(), next.to_string());
            assert!(
                !outer.contains(&inner),
                "{outer:?} repeats its source {inner:?}"
            );
            level = next;
        }
    }

    #[test]
    fn chains_say_each_thing_once() {
        let pipe = || io::Error::from(io::ErrorKind::BrokenPipe);
        let cases = [
            Error::Io(pipe()),
            Error::from(io::Error::other(Error::Io(pipe()))),
            Error::Frame(FrameError::TooShort { len: 3 }),
            Error::Limit(LimitError {
                max: 3,
                dialect: imsg_codec::Dialect::Legacy,
            }),
            Error::NoSpace(NoSpace {
                needed: 4,
                available: 1,
            }),
            Error::PeerClosed,
        ];
        for e in &cases {
            assert_no_repeat(e);
            // The io::Error a caller may wrap a channel error in is a level too.
            assert_no_repeat(&io::Error::other(Error::Io(pipe())));
        }
        // An io::Error wrapping a channel error is unwrapped, not nested.
        let e = Error::from(io::Error::other(Error::Io(pipe())));
        assert_eq!(e.to_string(), "imsg channel I/O: broken pipe");
        assert!(e.source().is_none());
    }
}
