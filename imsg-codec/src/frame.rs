//! Whole frames: a checked view over one frame's bytes ([`Frame`]) and the stream
//! splitter ([`split`]) that finds them in a byte stream without copying.

use zerocopy::FromBytes;

use crate::header::{checked_len, raw_ref, wire_len, words, RawHeader};
use crate::{Dialect, Error, Header, HEADER_SIZE};

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
/// infallible) or found in a stream by [`split`].
///
/// ```
/// use imsg_codec::{Dialect, Frame};
/// let mut bytes = [0u8; 19];
/// bytes[0..4].copy_from_slice(&42u32.to_ne_bytes());
/// bytes[4..6].copy_from_slice(&19u16.to_ne_bytes());
/// bytes[16..].copy_from_slice(b"abc");
/// let frame = Frame::new_checked(&bytes[..], Dialect::Legacy, 16384).unwrap();
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

    /// Wraps `buffer`, checking that it holds exactly one valid frame of at most
    /// `max` bytes in total.
    pub fn new_checked(buffer: T, dialect: Dialect, max: usize) -> Result<Frame<T>, Error> {
        let bytes = buffer.as_ref();
        let len = checked_len(head_of(bytes)?, dialect, max)?;
        if bytes.len() < len {
            return Err(Error::Truncated {
                needed: len - bytes.len(),
            });
        }
        if bytes.len() > len {
            return Err(Error::SizeMismatch {
                expected: len,
                actual: bytes.len(),
            });
        }
        Ok(Frame { buffer, dialect })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The dialect this frame is read in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The 16 header bytes (panics on a buffer shorter than a header, which only
    /// [`Frame::new_unchecked`] can wrap).
    #[inline(always)]
    fn head(&self) -> &[u8; HEADER_SIZE] {
        match self.buffer.as_ref().first_chunk::<HEADER_SIZE>() {
            Some(head) => head,
            None => short_frame(),
        }
    }

    /// Header word `i` (0: type, 2: peer id, 3: pid) read straight from the bytes.
    #[inline(always)]
    fn word(&self, i: usize) -> u32 {
        words(self.head())[i]
    }

    /// The header bytes.
    #[inline]
    pub fn raw_header(&self) -> &RawHeader {
        raw_ref(self.head())
    }

    /// The meaning of the header.
    #[inline]
    pub fn header(&self) -> Header {
        Header::from_raw(self.raw_header(), self.dialect, self.total_len() as u32)
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u32 {
        self.word(0)
    }

    /// Total length, header included.
    #[inline]
    pub fn total_len(&self) -> usize {
        wire_len(self.head(), self.dialect)
    }

    /// Whether the header says a descriptor travels with this frame.
    #[inline]
    pub fn has_fd(&self) -> bool {
        self.raw_header().has_fd(self.dialect)
    }

    /// Peer id.
    #[inline]
    pub fn peerid(&self) -> u32 {
        self.word(2)
    }

    /// The pid field as the wire carries it (`u32`; C's `pid_t` view is `as i32`).
    #[inline]
    pub fn pid(&self) -> u32 {
        self.word(3)
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

/// The 16 header bytes at the start of `bytes`, or [`Error::Truncated`].
#[inline(always)]
fn head_of(bytes: &[u8]) -> Result<&[u8; HEADER_SIZE], Error> {
    match bytes.first_chunk::<HEADER_SIZE>() {
        Some(head) => Ok(head),
        None => Err(Error::Truncated {
            needed: HEADER_SIZE - bytes.len(),
        }),
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// The header bytes, to set fields in place (length first: it decides where
    /// the payload ends).
    ///
    /// ```
    /// use imsg_codec::{Dialect, Frame};
    /// let mut bytes = [0u8; 18];
    /// let mut frame = Frame::new_unchecked(&mut bytes[..], Dialect::Legacy);
    /// frame.raw_header_mut().set_total_len(Dialect::Legacy, 18).unwrap();
    /// frame.raw_header_mut().set_msg_type(7);
    /// frame.payload_mut().copy_from_slice(b"hi");
    /// let frame = Frame::new_checked(&bytes[..], Dialect::Legacy, 16384).unwrap();
    /// assert_eq!((frame.msg_type(), frame.payload()), (7, &b"hi"[..]));
    /// ```
    pub fn raw_header_mut(&mut self) -> &mut RawHeader {
        match RawHeader::mut_from_prefix(self.buffer.as_mut()) {
            Ok((raw, _)) => raw,
            Err(_) => panic!("Frame shorter than a header (made with new_unchecked?)"),
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

/// What [`split`] finds: a frame borrowing from the input and the bytes it used.
pub type Split<'a> = Status<(Frame<&'a [u8]>, usize)>;

/// Finds the next frame at the start of `input`.
///
/// `max` limits a frame's **total** size, header included (C's `MAX_IMSGSIZE`
/// convention; it is also capped at what `dialect` can express). Returns the
/// frame, borrowing from `input`, and the number of bytes it used; or
/// [`Status::Partial`] with how many more bytes are needed; or an [`Error`] for a
/// header that can never become valid ([`Error::TooShort`], [`Error::TooLong`],
/// [`Error::DialectMismatch`]). Never panics.
///
/// ```
/// use imsg_codec::{split, Dialect, Status};
/// let mut stream = vec![0u8; 16];
/// stream[4..8].copy_from_slice(&16u32.to_ne_bytes());
/// stream.extend_from_slice(&[0u8; 5]); // the start of a next frame
/// let Status::Complete((frame, used)) = split(&stream, Dialect::Current, 16384).unwrap()
/// else { unreachable!() };
/// assert_eq!((frame.payload().len(), used), (0, 16));
/// assert_eq!(split(&stream[used..], Dialect::Current, 16384), Ok(Status::Partial { needed: 11 }));
/// ```
#[inline]
pub fn split(input: &[u8], dialect: Dialect, max: usize) -> Result<Split<'_>, Error> {
    // The header is checked once; then one bounds test both tells a partial
    // frame and cuts the frame out.
    let Some(head) = input.first_chunk::<HEADER_SIZE>() else {
        return Ok(Status::Partial {
            needed: HEADER_SIZE - input.len(),
        });
    };
    let len = checked_len(head, dialect, max)?;
    Ok(match input.get(..len) {
        Some(bytes) => Status::Complete((Frame::new_unchecked(bytes, dialect), len)),
        None => Status::Partial {
            needed: len - input.len(),
        },
    })
}

/// An iterator over the complete frames at the start of a buffer; see [`frames`].
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    used: usize,
    dialect: Dialect,
    max: usize,
    failed: bool,
}

/// Iterates over the complete frames of `input`, stopping at the first partial
/// frame or after the first error. [`Frames::consumed`] tells how many bytes the
/// frames returned so far used.
///
/// ```
/// use imsg_codec::{frames, emit, Dialect, Header};
/// let mut buf = heapless::Vec::<u8, 64>::new();
/// emit(&mut buf, Dialect::Legacy, 16384, Header::new(1, 0, 0), b"a").unwrap();
/// emit(&mut buf, Dialect::Legacy, 16384, Header::new(2, 0, 0), b"bc").unwrap();
/// let types: Vec<u32> = frames(&buf, Dialect::Legacy, 16384)
///     .map(|f| f.unwrap().msg_type())
///     .collect();
/// assert_eq!(types, [1, 2]);
/// ```
#[inline]
pub fn frames(input: &[u8], dialect: Dialect, max: usize) -> Frames<'_> {
    Frames {
        rest: input,
        used: 0,
        dialect,
        max,
        failed: false,
    }
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
    type Item = Result<Frame<&'a [u8]>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Inline: the split's own checks, once each; a partial frame ends the
        // iteration (`?`), an error ends it after being returned.
        let head = self.rest.first_chunk::<HEADER_SIZE>()?;
        match checked_len(head, self.dialect, self.max) {
            Ok(len) => {
                let (bytes, rest) = self.rest.split_at_checked(len)?;
                self.rest = rest;
                self.used += len;
                Some(Ok(Frame::new_unchecked(bytes, self.dialect)))
            }
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
    use crate::MAX_IMSGSIZE;

    fn frame_bytes(len: u32) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[4..8].copy_from_slice(&len.to_ne_bytes());
        b
    }

    #[test]
    fn partial_counts_missing_bytes() {
        let b = frame_bytes(40);
        for cut in 0..40 {
            let needed = if cut < 16 { 16 - cut } else { 40 - cut };
            assert_eq!(
                split(&b[..cut], Dialect::Current, MAX_IMSGSIZE),
                Ok(Status::Partial { needed })
            );
        }
        let (f, used) = split(&b[..40], Dialect::Current, MAX_IMSGSIZE)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!((f.payload().len(), used), (24, 40));
    }

    #[test]
    fn bad_header_is_error_even_when_short() {
        // 1_000_000 read as legacy is not a descriptor frame either.
        let b = frame_bytes(1_000_000);
        assert_eq!(
            split(&b[..16], Dialect::Current, MAX_IMSGSIZE),
            Err(Error::TooLong {
                len: 1_000_000,
                max: MAX_IMSGSIZE
            })
        );
    }

    #[test]
    fn new_checked_wants_exact_frame() {
        let b = frame_bytes(20);
        assert!(Frame::new_checked(&b[..20], Dialect::Legacy, 100).is_ok());
        assert_eq!(
            Frame::new_checked(&b[..19], Dialect::Legacy, 100),
            Err(Error::Truncated { needed: 1 })
        );
        assert_eq!(
            Frame::new_checked(&b[..21], Dialect::Legacy, 100),
            Err(Error::SizeMismatch {
                expected: 20,
                actual: 21
            })
        );
    }

    #[test]
    fn iterator_stops_after_error() {
        let mut b = [0u8; 48];
        b[4..8].copy_from_slice(&16u32.to_ne_bytes());
        b[20..24].copy_from_slice(&3u32.to_ne_bytes());
        let mut it = frames(&b, Dialect::Current, MAX_IMSGSIZE);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(Error::TooShort { len: 3 })));
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), 16);
    }
}
