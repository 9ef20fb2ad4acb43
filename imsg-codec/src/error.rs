//! The codec's errors, one type per concern, so each function returns only what
//! can go wrong in it:
//!
//! - [`LimitError`]: a frame limit outside what a dialect allows ([`Framing::new`]).
//! - [`FrameError`]: bytes that can never become a valid frame (splitting, parsing).
//! - [`NoSpace`]: the caller's storage is full (every append).
//! - [`EmitError`]: a frame that cannot be encoded (too long, or [`NoSpace`]).
//! - [`OutOfBounds`], [`WriteError`]: payload writers ([`Writer`]).
//! - [`ShortRead`], [`ReadError`], [`SizeMismatch`]: payload readers ([`Reader`], [`exact`]).
//!
//! Input that ends inside a frame is not an error: splitting answers
//! [`Status::Partial`].
//!
//! [`Framing::new`]: crate::Framing::new
//! [`Writer`]: crate::Writer
//! [`Reader`]: crate::Reader
//! [`exact`]: crate::exact
//! [`Status::Partial`]: crate::Status::Partial

use core::fmt;

use crate::{Dialect, HEADER_SIZE};

/// A frame limit outside `16..=dialect.max_frame_len()`.
///
/// ```
/// use imsg_codec::{Dialect, Framing};
/// let e = Framing::new(Dialect::Legacy, 65536).unwrap_err();
/// assert_eq!(e.to_string(), "frame limit 65536 is outside 16..=65535 (legacy dialect)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitError {
    /// The limit asked for (a total frame size, header included).
    pub max: usize,
    /// The dialect it was asked for.
    pub dialect: Dialect,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame limit {} is outside {HEADER_SIZE}..={} ({} dialect)",
            self.max,
            self.dialect.max_frame_len(),
            self.dialect
        )
    }
}

impl core::error::Error for LimitError {}

/// Bytes that can never become a valid frame. Each variant names the C `errno`
/// it stands for.
///
/// ```
/// use imsg_codec::{Dialect, FrameError, Framing};
/// let mut bytes = [0u8; 16];
/// bytes[4..8].copy_from_slice(&15u32.to_ne_bytes());
/// let framing = Framing::new(Dialect::Current, 16384).unwrap();
/// assert_eq!(framing.split(&bytes), Err(FrameError::TooShort { len: 15 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameError {
    /// A header claims a total length below the 16-byte header (C: `ERANGE`).
    TooShort {
        /// The total length the header claims.
        len: usize,
    },
    /// A header claims a total length above the limit (C: `ERANGE`).
    TooLong {
        /// The total length, header included.
        len: usize,
        /// The limit in force, header included.
        max: usize,
    },
    /// The frame is invalid in the channel's dialect but is a well-formed
    /// descriptor-carrying frame of the other one: the peer speaks `peer`.
    DialectMismatch {
        /// The dialect the channel was set up with.
        expected: Dialect,
        /// The dialect the peer seems to speak.
        peer: Dialect,
    },
    /// A buffer given as one whole frame ([`Frame::new_checked`]) is not exactly
    /// as long as its header says (or shorter than a header).
    ///
    /// [`Frame::new_checked`]: crate::Frame::new_checked
    BufferLength {
        /// The frame's total length (16 if the header itself is incomplete).
        frame: usize,
        /// The buffer's length.
        buffer: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::TooShort { len } => {
                write!(f, "frame length {len} is below the 16-byte header")
            }
            FrameError::TooLong { len, max } => {
                write!(f, "frame length {len} is above the limit of {max} bytes")
            }
            FrameError::DialectMismatch { expected, peer } => write!(
                f,
                "the peer seems to speak the {peer} imsg dialect, not the {expected} one \
                 ({})",
                match peer {
                    Dialect::Legacy => "OpenBSD <= 7.6, tmux <= 3.5a",
                    Dialect::Current => "OpenBSD >= 7.7, tmux >= 3.6",
                }
            ),
            FrameError::BufferLength { frame, buffer } => write!(
                f,
                "a buffer of {buffer} bytes does not hold exactly one frame of {frame} bytes"
            ),
        }
    }
}

impl core::error::Error for FrameError {}

/// The caller's storage cannot hold what is being written; nothing was written.
///
/// ```
/// use imsg_codec::{FrameBuf, NoSpace, SliceBuf};
/// let mut bytes = [0u8; 4];
/// let mut out = SliceBuf::new(&mut bytes);
/// assert_eq!(out.put(b"hello"), Err(NoSpace { needed: 5, available: 4 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoSpace {
    /// Bytes the write needs.
    pub needed: usize,
    /// Bytes the storage (or the frame's limit) has left.
    pub available: usize,
}

impl fmt::Display for NoSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no room: {} bytes needed, {} available",
            self.needed, self.available
        )
    }
}

impl core::error::Error for NoSpace {}

/// Why a frame could not be encoded; the storage is unchanged.
///
/// ```
/// use imsg_codec::{Dialect, EmitError, Framing, Header};
/// let framing = Framing::new(Dialect::Legacy, 20).unwrap();
/// let mut buf = heapless::Vec::<u8, 64>::new();
/// let e = framing.emit(&mut buf, Header::new(1, 0, 0), &[0; 5]).unwrap_err();
/// assert_eq!(e, EmitError::TooLong { len: 21, max: 20 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EmitError {
    /// The frame's total length is above the limit (C: `ERANGE`).
    TooLong {
        /// The total length, header included.
        len: usize,
        /// The limit in force, header included.
        max: usize,
    },
    /// The storage cannot hold the frame.
    NoSpace(NoSpace),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EmitError::TooLong { len, max } => {
                write!(f, "frame length {len} is above the limit of {max} bytes")
            }
            EmitError::NoSpace(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for EmitError {}

impl From<NoSpace> for EmitError {
    fn from(e: NoSpace) -> EmitError {
        EmitError::NoSpace(e)
    }
}

/// A position given to a `set_*` method of a [`Writer`](crate::Writer) is outside
/// what was written (C: `ERANGE`).
///
/// ```
/// use imsg_codec::{OutOfBounds, Writer};
/// let mut buf = heapless::Vec::<u8, 8>::new();
/// let mut w = Writer::new(&mut buf);
/// w.add_n16(1).unwrap();
/// assert_eq!(w.set_n32(0, 7), Err(OutOfBounds { offset: 0, len: 4, size: 2 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutOfBounds {
    /// First byte of the access.
    pub offset: usize,
    /// Length of the access.
    pub len: usize,
    /// Bytes written so far.
    pub size: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access of {} bytes at offset {} is outside the {} bytes written",
            self.len, self.offset, self.size
        )
    }
}

impl core::error::Error for OutOfBounds {}

/// Why a string could not be added to a payload
/// ([`Writer::add_strbuf`](crate::Writer::add_strbuf)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WriteError {
    /// The string does not fit its fixed-size field with a NUL (C: `EOVERFLOW`).
    StringOverflow,
    /// The storage or the frame's limit has no room for the field.
    NoSpace(NoSpace),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WriteError::StringOverflow => f.write_str("string does not fit its field"),
            WriteError::NoSpace(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for WriteError {}

impl From<NoSpace> for WriteError {
    fn from(e: NoSpace) -> WriteError {
        WriteError::NoSpace(e)
    }
}

/// A read past the end of a payload (C: `EBADMSG`); the reader did not move.
///
/// ```
/// use imsg_codec::{Reader, ShortRead};
/// let mut r = Reader::new(&[1, 2, 3]);
/// assert_eq!(r.get_n32(), Err(ShortRead { wanted: 4, left: 3 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShortRead {
    /// Bytes asked for.
    pub wanted: usize,
    /// Bytes left.
    pub left: usize,
}

impl fmt::Display for ShortRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read of {} bytes with {} left", self.wanted, self.left)
    }
}

impl core::error::Error for ShortRead {}

/// Why a string could not be read from a payload
/// ([`Reader::get_strbuf`](crate::Reader::get_strbuf),
/// [`Reader::get_cstr`](crate::Reader::get_cstr)); the reader did not move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadError {
    /// No NUL terminator within the field (C: `EOVERFLOW`).
    StringOverflow,
    /// The field runs past the end of the payload.
    ShortRead(ShortRead),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReadError::StringOverflow => f.write_str("string has no NUL within its field"),
            ReadError::ShortRead(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for ReadError {}

impl From<ShortRead> for ReadError {
    fn from(e: ShortRead) -> ReadError {
        ReadError::ShortRead(e)
    }
}

/// A payload's size is not the exact size expected (`IMSG_SIZE_CHECK`,
/// `imsg_get_data`; C: `EBADMSG`).
///
/// ```
/// use imsg_codec::{exact, SizeMismatch};
/// assert_eq!(exact::<u32>(&[0; 3]), Err(SizeMismatch { expected: 4, actual: 3 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SizeMismatch {
    /// The size the reader expected.
    pub expected: usize,
    /// The size the payload has.
    pub actual: usize,
}

impl fmt::Display for SizeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payload is {} bytes, expected exactly {}",
            self.actual, self.expected
        )
    }
}

impl core::error::Error for SizeMismatch {}
