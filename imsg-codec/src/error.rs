//! The one error type of the codec: one variant per way input or storage is wrong.

use core::fmt;

use crate::Dialect;

/// Everything the codec can refuse. Each variant names the C `errno` it stands for
/// where C has one.
///
/// ```
/// use imsg_codec::{split, Dialect, Error};
/// let mut bytes = [0u8; 16];
/// bytes[4..8].copy_from_slice(&15u32.to_ne_bytes());
/// assert_eq!(split(&bytes, Dialect::Current, 16384), Err(Error::TooShort { len: 15 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A header claims a total length below the 16-byte header (C: `ERANGE`).
    TooShort {
        /// The total length the header claims.
        len: usize,
    },
    /// A frame's total length is above the limit (C: `ERANGE`). Also returned by
    /// encoders for frames the dialect cannot express.
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
    /// Fewer bytes than a header are available to a function that needs a whole one.
    Truncated {
        /// How many more bytes are needed.
        needed: usize,
    },
    /// The caller's storage cannot hold what is being written.
    NoSpace {
        /// Bytes the write needs.
        needed: usize,
        /// Bytes the storage has left.
        available: usize,
    },
    /// A read past the end of a payload (C: `EBADMSG`).
    ShortRead {
        /// Bytes asked for.
        wanted: usize,
        /// Bytes left.
        left: usize,
    },
    /// A payload's size is not the exact size expected (`IMSG_SIZE_CHECK`,
    /// `imsg_get_data`; C: `EBADMSG`).
    SizeMismatch {
        /// The size the reader expected.
        expected: usize,
        /// The size the payload has.
        actual: usize,
    },
    /// A string does not fit its fixed-size field, or has no NUL terminator within
    /// it (C: `EOVERFLOW`).
    StringOverflow,
    /// A position given to a `set_*` method is outside what was written (C: `ERANGE`).
    OutOfBounds {
        /// First byte of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Bytes written so far.
        size: usize,
    },
    /// A dialect name other than `legacy` or `current`.
    UnknownDialect,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::TooShort { len } => {
                write!(f, "frame length {len} is below the 16-byte header")
            }
            Error::TooLong { len, max } => {
                write!(f, "frame length {len} is above the limit of {max} bytes")
            }
            Error::DialectMismatch { expected, peer } => write!(
                f,
                "the peer seems to speak the {peer} imsg dialect, not the {expected} one \
                 ({})",
                match peer {
                    Dialect::Legacy => "OpenBSD <= 7.6, tmux <= 3.5a",
                    Dialect::Current => "OpenBSD >= 7.7, tmux >= 3.6",
                }
            ),
            Error::Truncated { needed } => write!(f, "{needed} more bytes needed"),
            Error::NoSpace { needed, available } => write!(
                f,
                "storage too small: {needed} bytes needed, {available} available"
            ),
            Error::ShortRead { wanted, left } => {
                write!(f, "read of {wanted} bytes with {left} left")
            }
            Error::SizeMismatch { expected, actual } => {
                write!(f, "payload is {actual} bytes, expected exactly {expected}")
            }
            Error::StringOverflow => f.write_str("string does not fit its field"),
            Error::OutOfBounds { offset, len, size } => write!(
                f,
                "access of {len} bytes at offset {offset} is outside the {size} bytes written"
            ),
            Error::UnknownDialect => f.write_str("unknown dialect (legacy or current)"),
        }
    }
}

impl core::error::Error for Error {}
