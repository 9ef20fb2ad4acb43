//! Whole frames: a checked view over one frame's bytes ([`Frame`]) and the stream
//! splitter ([`Framing::split`], [`Framing::frames`]) that finds them in a byte
//! stream without copying.

use zerocopy::FromBytes;

use crate::header::RawHeader;
use crate::{Dialect, FrameError, Framing, Header, HEADER_SIZE};

/// Result of looking for a frame in a byte stream, as `httparse` answers:
/// short input is the normal case on a stream socket, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A complete value.
    Complete(T),
    /// The input ends inside a frame; at least `needed` more bytes are required.
    Partial {
        /// Minimum number of further bytes before another attempt can succeed.
        needed: usize,
    },
}

impl<T> Status<T> {
    /// The complete value, if any.
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Complete(t) => Some(t),
            Status::Partial { .. } => None,
        }
    }
}

/// A view over the bytes of exactly one frame, header first, in a given dialect.
///
/// Made with [`Frame::new_checked`] (length checked once, then every accessor is
/// infallible) or found in a stream by [`Framing::split`]. The header fields are
/// read through [`RawHeader`].
///
/// ```
/// use imsg_codec::{Dialect, Frame, Framing};
/// let mut bytes = [0u8; 19];
/// bytes[0..4].copy_from_slice(&42u32.to_ne_bytes());
/// bytes[4..6].copy_from_slice(&19u16.to_ne_bytes());
/// bytes[16..].copy_from_slice(b"abc");
/// let frame = Frame::new_checked(&bytes[..], &Framing::standard(Dialect::Legacy)).unwrap();
/// assert_eq!(frame.msg_type(), 42);
/// assert_eq!(frame.payload(), b"abc");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    dialect: Dialect,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without any check; accessors may then panic on short buffers.
    /// Prefer [`Frame::new_checked`].
    pub const fn new_unchecked(buffer: T, dialect: Dialect) -> Frame<T> {
        Frame { buffer, dialect }
    }

    /// Wraps `buffer`, checking that it holds exactly one frame valid under
    /// `framing` ([`FrameError::BufferLength`] if it holds less or more).
    pub fn new_checked(buffer: T, framing: &Framing) -> Result<Frame<T>, FrameError> {
        let bytes = buffer.as_ref();
        let Some(head) = bytes.first_chunk::<HEADER_SIZE>() else {
            return Err(FrameError::BufferLength {
                frame: HEADER_SIZE,
                buffer: bytes.len(),
            });
        };
        let len = framing.check_header(RawHeader::from_array(head))?;
        if bytes.len() != len {
            return Err(FrameError::BufferLength {
                frame: len,
                buffer: bytes.len(),
            });
        }
        Ok(Frame {
            buffer,
            dialect: framing.dialect(),
        })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The dialect this frame is read in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The header bytes (panics on a buffer shorter than a header, which only
    /// [`Frame::new_unchecked`] can wrap).
    #[inline]
    pub fn raw_header(&self) -> &RawHeader {
        match self.buffer.as_ref().first_chunk::<HEADER_SIZE>() {
            Some(head) => RawHeader::from_array(head),
            None => short_frame(),
        }
    }

    /// The meaning of the header.
    #[inline]
    pub fn header(&self) -> Header {
        Header::from_raw(self.raw_header(), self.dialect)
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u32 {
        self.raw_header().msg_type()
    }

    /// Total length, header included.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.raw_header().total_len(self.dialect)
    }

    /// Whether the header says a descriptor travels with this frame.
    #[inline]
    pub fn has_fd(&self) -> bool {
        self.raw_header().has_fd(self.dialect)
    }

    /// Peer id.
    #[inline]
    pub fn peerid(&self) -> u32 {
        self.raw_header().peerid()
    }

    /// The pid field as the wire carries it (`u32`; C's `pid_t` view is `as i32`).
    #[inline]
    pub fn pid(&self) -> u32 {
        self.raw_header().pid()
    }

    /// The payload bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_SIZE..self.total_len()]
    }

    /// The whole frame's bytes, header included.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn short_frame() -> ! {
    panic!("Frame shorter than a header (made with new_unchecked?)")
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// The header bytes, to set fields in place (length first: it decides where
    /// the payload ends).
    ///
    /// ```
    /// use imsg_codec::{Dialect, Frame, Framing};
    /// let mut bytes = [0u8; 18];
    /// let mut frame = Frame::new_unchecked(&mut bytes[..], Dialect::Legacy);
    /// frame.raw_header_mut().set_total_len(Dialect::Legacy, 18).unwrap();
    /// frame.raw_header_mut().set_msg_type(7);
    /// frame.payload_mut().copy_from_slice(b"hi");
    /// let frame = Frame::new_checked(&bytes[..], &Framing::standard(Dialect::Legacy)).unwrap();
    /// assert_eq!((frame.msg_type(), frame.payload()), (7, &b"hi"[..]));
    /// ```
    pub fn raw_header_mut(&mut self) -> &mut RawHeader {
        match RawHeader::mut_from_prefix(self.buffer.as_mut()) {
            Ok((raw, _)) => raw,
            Err(_) => short_frame(),
        }
    }

    /// The payload bytes, to fill in; as long as the header's length says.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.total_len();
        &mut self.buffer.as_mut()[HEADER_SIZE..len]
    }
}

impl<'a> Frame<&'a [u8]> {
    /// The payload, borrowed for as long as the underlying buffer.
    #[inline]
    pub fn payload_ref(&self) -> &'a [u8] {
        let len = self.total_len();
        &self.buffer[HEADER_SIZE..len]
    }
}

/// What [`Framing::split`] finds: a frame borrowing from the input and the bytes
/// it used.
pub type Split<'a> = Status<(Frame<&'a [u8]>, usize)>;

impl Framing {
    /// Finds the next frame at the start of `input`.
    ///
    /// Returns the frame, borrowing from `input`, and the number of bytes it used;
    /// or [`Status::Partial`] with how many more bytes are needed; or a
    /// [`FrameError`] for a header that can never become valid (see
    /// [`check_header`](Framing::check_header)). Never panics.
    ///
    /// ```
    /// use imsg_codec::{Dialect, Framing, Status};
    /// let framing = Framing::standard(Dialect::Current);
    /// let mut stream = vec![0u8; 16];
    /// stream[4..8].copy_from_slice(&16u32.to_ne_bytes());
    /// stream.extend_from_slice(&[0u8; 5]); // the start of a next frame
    /// let Status::Complete((frame, used)) = framing.split(&stream).unwrap()
    /// else { unreachable!() };
    /// assert_eq!((frame.payload().len(), used), (0, 16));
    /// assert_eq!(framing.split(&stream[used..]), Ok(Status::Partial { needed: 11 }));
    /// ```
    #[inline]
    pub fn split<'a>(&self, input: &'a [u8]) -> Result<Split<'a>, FrameError> {
        let Some(head) = input.first_chunk::<HEADER_SIZE>() else {
            return Ok(Status::Partial {
                needed: HEADER_SIZE - input.len(),
            });
        };
        let len = self.check_header(RawHeader::from_array(head))?;
        Ok(match input.get(..len) {
            Some(bytes) => Status::Complete((Frame::new_unchecked(bytes, self.dialect()), len)),
            None => Status::Partial {
                needed: len - input.len(),
            },
        })
    }

    /// Iterates over the complete frames of `input`, stopping at the first partial
    /// frame or after the first error. [`Frames::consumed`] tells how many bytes the
    /// frames returned so far used.
    ///
    /// ```
    /// use imsg_codec::{Dialect, Framing, Header};
    /// let framing = Framing::standard(Dialect::Legacy);
    /// let mut buf = heapless::Vec::<u8, 64>::new();
    /// framing.emit(&mut buf, Header::new(1, 0, 0), b"a").unwrap();
    /// framing.emit(&mut buf, Header::new(2, 0, 0), b"bc").unwrap();
    /// let types: Vec<u32> = framing.frames(&buf).map(|f| f.unwrap().msg_type()).collect();
    /// assert_eq!(types, [1, 2]);
    /// ```
    #[inline]
    pub fn frames<'a>(&self, input: &'a [u8]) -> Frames<'a> {
        Frames {
            rest: input,
            used: 0,
            framing: *self,
            failed: false,
        }
    }
}

/// An iterator over the complete frames at the start of a buffer; see
/// [`Framing::frames`].
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    used: usize,
    framing: Framing,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Bytes used by the frames returned so far.
    #[inline]
    pub fn consumed(&self) -> usize {
        self.used
    }

    /// The bytes not yet returned as frames.
    #[inline]
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<&'a [u8]>, FrameError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.framing.split(self.rest) {
            Ok(Status::Complete((frame, used))) => {
                self.rest = &self.rest[used..];
                self.used += used;
                Some(Ok(frame))
            }
            Ok(Status::Partial { .. }) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(len: u32) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[4..8].copy_from_slice(&len.to_ne_bytes());
        b
    }

    #[test]
    fn partial_counts_missing_bytes() {
        let f = Framing::standard(Dialect::Current);
        let b = frame_bytes(40);
        for cut in 0..40 {
            let needed = if cut < 16 { 16 - cut } else { 40 - cut };
            assert_eq!(f.split(&b[..cut]), Ok(Status::Partial { needed }));
        }
        let (fr, used) = f.split(&b[..40]).unwrap().complete().unwrap();
        assert_eq!((fr.payload().len(), used), (24, 40));
    }

    #[test]
    fn bad_header_is_error_even_when_short() {
        // 1_000_000 read as legacy is not a descriptor frame either.
        let b = frame_bytes(1_000_000);
        assert_eq!(
            Framing::standard(Dialect::Current).split(&b[..16]),
            Err(FrameError::TooLong {
                len: 1_000_000,
                max: 16384
            })
        );
    }

    #[test]
    fn new_checked_wants_exact_frame() {
        let f = Framing::new(Dialect::Legacy, 100).unwrap();
        let b = frame_bytes(20);
        assert!(Frame::new_checked(&b[..20], &f).is_ok());
        for n in [19, 21, 3] {
            assert_eq!(
                Frame::new_checked(&b[..n], &f),
                Err(FrameError::BufferLength {
                    frame: if n < 16 { 16 } else { 20 },
                    buffer: n
                })
            );
        }
    }

    #[test]
    fn iterator_stops_after_error() {
        let mut b = [0u8; 48];
        b[4..8].copy_from_slice(&16u32.to_ne_bytes());
        b[20..24].copy_from_slice(&3u32.to_ne_bytes());
        let f = Framing::standard(Dialect::Current);
        let mut it = f.frames(&b);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(FrameError::TooShort { len: 3 })));
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), 16);
    }
}
