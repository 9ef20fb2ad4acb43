//! The one-line text form of a frame that the `imsg-tools` programs (`imsg-dump`,
//! `imsgcat`, `imsg-tap`) print, so every tool shows frames the same way:
//!
//! `type=<u32> len=<total length> peerid=<u32> pid=<i32> fd=<0|1> payload=<lowercase hex>`
//!
//! Written through [`core::fmt`], so it needs neither `std` nor an allocator.

use core::fmt;

use crate::frame::Frame;
use crate::{FrameError, Header};

/// A frame's header and payload, displayed as one `imsg-dump` line (no newline).
///
/// `len` is the header's total length, `pid` the wire value read as C's `pid_t`,
/// `fd` the header's descriptor flag (1 when the header says a descriptor travels
/// with the frame).
///
/// ```
/// use imsg_codec::dump::DumpLine;
/// use imsg_codec::Header;
/// let hdr = Header::new(200, 8, u32::MAX).with_len(19).with_fd(true);
/// assert_eq!(
///     DumpLine::new(hdr, b"\x00\xab\n").to_string(),
///     "type=200 len=19 peerid=8 pid=-1 fd=1 payload=00ab0a"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpLine<'a> {
    header: Header,
    payload: &'a [u8],
}

impl<'a> DumpLine<'a> {
    /// The line for a frame with `header` and `payload`, as given (no check that
    /// `header.len` matches the payload: a caller shows what it received).
    pub const fn new(header: Header, payload: &'a [u8]) -> DumpLine<'a> {
        DumpLine { header, payload }
    }
}

impl fmt::Display for DumpLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        write!(
            f,
            "type={} len={} peerid={} pid={} fd={} payload=",
            h.ty,
            h.len,
            h.peerid,
            h.pid as i32,
            u8::from(h.has_fd)
        )?;
        for b in self.payload {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// This frame as one `imsg-dump` line (see [`DumpLine`]).
    ///
    /// ```
    /// use imsg_codec::{Dialect, Framing, Header};
    /// let framing = Framing::standard(Dialect::Legacy);
    /// let mut wire = heapless::Vec::<u8, 32>::new();
    /// framing.emit(&mut wire, Header::new(106, 8, u32::MAX), b"").unwrap();
    /// let (frame, _) = framing.split(&wire).unwrap().complete().unwrap();
    /// assert_eq!(frame.dump_line().to_string(), "type=106 len=16 peerid=8 pid=-1 fd=0 payload=");
    /// ```
    pub fn dump_line(&self) -> DumpLine<'_> {
        DumpLine::new(self.header(), self.payload())
    }
}

/// Why a byte stream could not be dumped to its end, with the offset of the frame
/// where that happened: the one-line error `imsg-dump` prints on stderr.
///
/// ```
/// use imsg_codec::dump::StreamError;
/// use imsg_codec::FrameError;
/// let e = StreamError::Invalid { offset: 32, error: FrameError::TooShort { len: 3 } };
/// assert_eq!(e.to_string(), "offset 32: invalid frame: frame length 3 is below the 16-byte header");
/// let e = StreamError::Truncated { offset: 16, needed: 4 };
/// assert_eq!(e.to_string(), "offset 16: stream ends inside a frame (4 more bytes needed)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream ends after `offset` bytes of whole frames plus part of another.
    Truncated {
        /// Offset of the first byte of the incomplete frame.
        offset: u64,
        /// At least this many more bytes would have been needed.
        needed: usize,
    },
    /// The frame starting at `offset` can never be valid.
    Invalid {
        /// Offset of the first byte of the invalid frame.
        offset: u64,
        /// What is wrong with it.
        error: FrameError,
    },
}

impl StreamError {
    /// The byte offset of the frame the error is about.
    pub fn offset(&self) -> u64 {
        match *self {
            StreamError::Truncated { offset, .. } | StreamError::Invalid { offset, .. } => offset,
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Truncated { offset, needed } => write!(
                f,
                "offset {offset}: stream ends inside a frame ({needed} more bytes needed)"
            ),
            StreamError::Invalid { offset, error } => {
                write!(f, "offset {offset}: invalid frame: {error}")
            }
        }
    }
}

/// The frame error is part of the message, not a `source`, so a chain is printed
/// once.
impl core::error::Error for StreamError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, Framing, SliceBuf};
    use core::fmt::Write;

    /// A `fmt::Write` into a fixed array, so the tests need no allocator.
    struct Line<const N: usize> {
        buf: [u8; N],
        len: usize,
    }

    impl<const N: usize> Line<N> {
        fn of(v: impl fmt::Display) -> Line<N> {
            let mut l = Line {
                buf: [0; N],
                len: 0,
            };
            write!(l, "{v}").unwrap();
            l
        }
        fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap()
        }
    }

    impl<const N: usize> fmt::Write for Line<N> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let dst = self
                .buf
                .get_mut(self.len..self.len + s.len())
                .ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len += s.len();
            Ok(())
        }
    }

    #[test]
    fn line_shows_every_field_in_both_dialects() {
        for d in [Dialect::Legacy, Dialect::Current] {
            let mut raw = [0u8; 64];
            let mut out = SliceBuf::new(&mut raw);
            let hdr = Header::new(u32::MAX, 0x1234_5678, 0x8000_0000).with_fd(true);
            let framing = Framing::new(d, 64).unwrap();
            framing.emit(&mut out, hdr, &[0, 0x0f, 0xf0, 0xff]).unwrap();
            let (frame, _) = framing.split(out.filled()).unwrap().complete().unwrap();
            assert_eq!(
                Line::<128>::of(frame.dump_line()).as_str(),
                "type=4294967295 len=20 peerid=305419896 pid=-2147483648 fd=1 payload=000ff0ff"
            );
        }
    }

    #[test]
    fn line_without_fd_or_payload() {
        let line = DumpLine::new(Header::new(0, 0, 0), &[]);
        assert_eq!(
            Line::<64>::of(line).as_str(),
            "type=0 len=16 peerid=0 pid=0 fd=0 payload="
        );
    }
}
