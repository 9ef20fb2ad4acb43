//! Encoding: ibuf-style payload writers ([`Writer`]), the `imsg_create` /
//! `imsg_add` / `imsg_close` idiom ([`FrameBuilder`]), and one-call encoders
//! ([`emit`], `imsg_compose`; [`emitv`], `imsg_composev`).

use core::ops::{Deref, DerefMut};

use zerocopy::{Immutable, IntoBytes};

use crate::{Dialect, Error, FrameBuf, Header, HEADER_SIZE};

/// An ibuf-style writer appending to a [`FrameBuf`], with positions counted from
/// where it started and an optional cap on how much it may write.
///
/// `add_n*` write network byte order (`ibuf_add_n16`..), `add_h*` host order
/// (`ibuf_add_h16`..). C's range check on the value (`ibuf_add_n16(70000)` is
/// `EINVAL`) is done by the argument's type here.
///
/// ```
/// use imsg_codec::Writer;
/// let mut buf = heapless::Vec::<u8, 16>::new();
/// let mut w = Writer::new(&mut buf);
/// w.add_n16(0x0102).unwrap();
/// let at = w.len();
/// w.add_zero(4).unwrap();
/// w.set_n32(at, 7).unwrap();
/// assert_eq!(buf.as_slice(), [1, 2, 0, 0, 0, 7]);
/// ```
#[derive(Debug)]
pub struct Writer<'b, B: FrameBuf + ?Sized> {
    buf: &'b mut B,
    start: usize,
    cap: usize,
}

macro_rules! add_set {
    ($(#[$an:meta])* $add:ident, $(#[$sn:meta])* $set:ident, $t:ty, $conv:ident) => {
        $(#[$an])*
        pub fn $add(&mut self, v: $t) -> Result<(), Error> {
            self.add(&v.$conv())
        }
        $(#[$sn])*
        pub fn $set(&mut self, pos: usize, v: $t) -> Result<(), Error> {
            self.set(pos, &v.$conv())
        }
    };
}

impl<'b, B: FrameBuf + ?Sized> Writer<'b, B> {
    /// A writer appending to `buf` without a cap of its own.
    #[inline]
    pub fn new(buf: &'b mut B) -> Writer<'b, B> {
        let start = buf.len();
        Writer {
            buf,
            start,
            cap: usize::MAX,
        }
    }

    /// A writer that may write at most `cap` bytes (`ibuf_dynamic`'s max).
    pub fn with_cap(buf: &'b mut B, cap: usize) -> Writer<'b, B> {
        Writer {
            cap,
            ..Writer::new(buf)
        }
    }

    /// Bytes written by this writer (`ibuf_size`).
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True if nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes that may still be written (`ibuf_left`).
    #[inline]
    pub fn left(&self) -> usize {
        (self.cap - self.len()).min(self.buf.spare())
    }

    /// The bytes written so far.
    pub fn written(&mut self) -> &mut [u8] {
        let start = self.start;
        &mut self.buf.bytes_mut()[start..]
    }

    #[inline]
    fn room(&self, n: usize) -> Result<(), Error> {
        if n > self.cap - self.len() {
            Err(Error::NoSpace {
                needed: n,
                available: self.cap - self.len(),
            })
        } else {
            Ok(())
        }
    }

    /// Appends bytes (`ibuf_add`).
    #[inline]
    pub fn add(&mut self, data: &[u8]) -> Result<(), Error> {
        self.room(data.len())?;
        self.buf.put(data)
    }

    /// Appends `n` zero bytes (`ibuf_add_zero`).
    pub fn add_zero(&mut self, n: usize) -> Result<(), Error> {
        self.reserve(n).map(|_| ())
    }

    /// Appends `n` zero bytes and returns them to fill in (`ibuf_reserve`).
    pub fn reserve(&mut self, n: usize) -> Result<&mut [u8], Error> {
        self.room(n)?;
        self.buf.put_zeroed(n)
    }

    /// Appends the bytes of a plain-data value, as C appends a struct.
    pub fn add_struct<T: IntoBytes + Immutable + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.add(v.as_bytes())
    }

    /// Appends `s` in a fixed field of `width` bytes, NUL-padded; `s` must leave room
    /// for at least one NUL (`ibuf_add_strbuf`, [`Error::StringOverflow`] otherwise).
    pub fn add_strbuf(&mut self, s: &[u8], width: usize) -> Result<(), Error> {
        let s = s.split(|&b| b == 0).next().unwrap_or(s);
        if s.len() >= width {
            return Err(Error::StringOverflow);
        }
        self.reserve(width)?[..s.len()].copy_from_slice(s);
        Ok(())
    }

    /// Overwrites bytes at `pos` within what was written (`ibuf_set`).
    pub fn set(&mut self, pos: usize, data: &[u8]) -> Result<(), Error> {
        let size = self.len();
        match pos.checked_add(data.len()) {
            Some(end) if end <= size => {
                self.written()[pos..end].copy_from_slice(data);
                Ok(())
            }
            _ => Err(Error::OutOfBounds {
                offset: pos,
                len: data.len(),
                size,
            }),
        }
    }

    /// Shrinks to `len` bytes, or zero-extends up to it (`ibuf_truncate`).
    pub fn truncate(&mut self, len: usize) -> Result<(), Error> {
        match len.checked_sub(self.len()) {
            Some(grow) => self.add_zero(grow),
            None => {
                self.buf.truncate(self.start + len);
                Ok(())
            }
        }
    }

    add_set!(
        /// Appends a byte (`ibuf_add_n8`).
        add_n8,
        /// Overwrites a byte at `pos` (`ibuf_set_n8`).
        set_n8, u8, to_be_bytes);
    add_set!(
        /// Appends a `u16` in network order (`ibuf_add_n16`).
        add_n16,
        /// Overwrites a network-order `u16` at `pos` (`ibuf_set_n16`).
        set_n16, u16, to_be_bytes);
    add_set!(
        /// Appends a `u32` in network order (`ibuf_add_n32`).
        add_n32,
        /// Overwrites a network-order `u32` at `pos` (`ibuf_set_n32`).
        set_n32, u32, to_be_bytes);
    add_set!(
        /// Appends a `u64` in network order (`ibuf_add_n64`).
        add_n64,
        /// Overwrites a network-order `u64` at `pos` (`ibuf_set_n64`).
        set_n64, u64, to_be_bytes);
    add_set!(
        /// Appends a `u16` in host order (`ibuf_add_h16`).
        add_h16,
        /// Overwrites a host-order `u16` at `pos` (`ibuf_set_h16`).
        set_h16, u16, to_ne_bytes);
    add_set!(
        /// Appends a `u32` in host order (`ibuf_add_h32`).
        add_h32,
        /// Overwrites a host-order `u32` at `pos` (`ibuf_set_h32`).
        set_h32, u32, to_ne_bytes);
    add_set!(
        /// Appends a `u64` in host order (`ibuf_add_h64`).
        add_h64,
        /// Overwrites a host-order `u64` at `pos` (`ibuf_set_h64`).
        set_h64, u64, to_ne_bytes);
}

/// A frame whose payload is added in pieces: `imsg_create`, then `imsg_add` (the
/// [`Writer`] methods, through `Deref`), then `imsg_close` ([`FrameBuilder::finish`]).
///
/// The length and descriptor flag are stamped by `finish`. A builder dropped
/// without `finish`, or whose `finish` fails, takes its bytes back out of the
/// storage: the storage never holds half a frame.
///
/// ```
/// use imsg_codec::{split, Dialect, FrameBuilder, Header};
/// let mut buf = arrayvec::ArrayVec::<u8, 64>::new();
/// let mut b = FrameBuilder::new(&mut buf, Dialect::Current, 16384, Header::new(7, 0, 1)).unwrap();
/// b.add_h32(5).unwrap();
/// b.add(b"xyz").unwrap();
/// assert_eq!(b.finish().unwrap(), 23);
/// let (frame, _) = split(&buf, Dialect::Current, 16384).unwrap().complete().unwrap();
/// assert_eq!(frame.payload().len(), 7);
/// ```
#[derive(Debug)]
pub struct FrameBuilder<'b, B: FrameBuf + ?Sized> {
    payload: Writer<'b, B>,
    header: Header,
    dialect: Dialect,
    done: bool,
}

impl<'b, B: FrameBuf + ?Sized> FrameBuilder<'b, B> {
    /// Starts a frame in `buf` whose total size may reach `max` bytes (header
    /// included; capped at what `dialect` can express).
    #[inline]
    pub fn new(
        buf: &'b mut B,
        dialect: Dialect,
        max: usize,
        header: Header,
    ) -> Result<FrameBuilder<'b, B>, Error> {
        let max = max.min(dialect.max_frame_len());
        if max < HEADER_SIZE {
            return Err(Error::TooLong {
                len: HEADER_SIZE,
                max,
            });
        }
        // Room for the header, stamped by `finish`.
        buf.put(&[0; HEADER_SIZE])?;
        let start = buf.len();
        Ok(FrameBuilder {
            payload: Writer {
                buf,
                start,
                cap: max - HEADER_SIZE,
            },
            header,
            dialect,
            done: false,
        })
    }

    /// Starts a frame with room checked up front for `datalen` payload bytes, as
    /// `imsg_create` does (`ERANGE` when `datalen + 16` is above `max`).
    pub fn with_len(
        buf: &'b mut B,
        dialect: Dialect,
        max: usize,
        header: Header,
        datalen: usize,
    ) -> Result<FrameBuilder<'b, B>, Error> {
        let max = max.min(dialect.max_frame_len());
        let total = datalen.saturating_add(HEADER_SIZE);
        if total > max {
            return Err(Error::TooLong { len: total, max });
        }
        FrameBuilder::new(buf, dialect, max, header)
    }

    /// Sets whether the header, stamped by [`finish`](FrameBuilder::finish), says a
    /// descriptor travels with this frame (`imsg_close` on a buffer with an fd).
    ///
    /// ```
    /// use imsg_codec::{split, Dialect, FrameBuilder, Header};
    /// let mut buf = heapless::Vec::<u8, 32>::new();
    /// let mut b = FrameBuilder::new(&mut buf, Dialect::Legacy, 16384, Header::new(1, 0, 0)).unwrap();
    /// b.set_has_fd(true);
    /// b.finish().unwrap();
    /// let (frame, _) = split(&buf, Dialect::Legacy, 16384).unwrap().complete().unwrap();
    /// assert!(frame.has_fd());
    /// ```
    #[inline]
    pub fn set_has_fd(&mut self, has_fd: bool) {
        self.header = self.header.with_fd(has_fd);
    }

    /// Stamps the header (length, descriptor flag) and leaves the frame in the
    /// storage; returns its total length.
    #[inline]
    pub fn finish(mut self) -> Result<usize, Error> {
        let total = HEADER_SIZE + self.payload.len();
        // The payload's cap keeps `total` within the limit; checked all the same
        // before the length is cast and written unchecked.
        let max = self.dialect.max_frame_len();
        if total > max {
            return Err(Error::TooLong { len: total, max });
        }
        let head = self
            .header
            .with_len(total as u32)
            .wire_bytes_unchecked(self.dialect);
        let start = self.payload.start - HEADER_SIZE;
        let bytes = self.payload.buf.bytes_mut();
        let size = bytes.len();
        match bytes
            .get_mut(start..)
            .and_then(|b| b.first_chunk_mut::<HEADER_SIZE>())
        {
            Some(dst) => *dst = head,
            // Only a storage that lost bytes under the builder gets here.
            None => {
                return Err(Error::OutOfBounds {
                    offset: start,
                    len: HEADER_SIZE,
                    size,
                })
            }
        }
        self.done = true;
        Ok(total)
    }
}

impl<'b, B: FrameBuf + ?Sized> Deref for FrameBuilder<'b, B> {
    type Target = Writer<'b, B>;

    #[inline]
    fn deref(&self) -> &Writer<'b, B> {
        &self.payload
    }
}

impl<B: FrameBuf + ?Sized> DerefMut for FrameBuilder<'_, B> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.payload
    }
}

impl<B: FrameBuf + ?Sized> Drop for FrameBuilder<'_, B> {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            let start = self.payload.start - HEADER_SIZE;
            self.payload.buf.truncate(start);
        }
    }
}

/// Appends one frame with `payload` to `buf` (`imsg_compose` without the
/// descriptor, which travels outside the bytes). The header's `len` is filled in;
/// its `has_fd` is written as the dialect's flag. Refuses a frame whose total
/// size is above `max` (header included) with [`Error::TooLong`]; on any error
/// `buf` is unchanged. Returns the frame's total length.
///
/// ```
/// use imsg_codec::{emit, Dialect, Header};
/// let mut buf = heapless::Vec::<u8, 64>::new();
/// let n = emit(&mut buf, Dialect::Legacy, 16384, Header::new(12, 8, u32::MAX), &[]).unwrap();
/// assert_eq!(n, 16);
/// assert!(emit(&mut buf, Dialect::Legacy, 20, Header::new(1, 0, 0), &[0; 5]).is_err());
/// assert_eq!(buf.len(), 16);
/// ```
#[inline]
pub fn emit<B: FrameBuf + ?Sized>(
    buf: &mut B,
    dialect: Dialect,
    max: usize,
    header: Header,
    payload: &[u8],
) -> Result<usize, Error> {
    // A payload is at most isize::MAX bytes: the sum cannot overflow.
    let total = HEADER_SIZE + payload.len();
    frame_check(buf, dialect, max, total)?;
    let start = buf.len();
    // One reservation for the whole frame, then header and payload in place.
    let dst = buf.put_unfilled(total)?;
    match dst.split_first_chunk_mut::<HEADER_SIZE>() {
        Some((h, body)) if body.len() == payload.len() => {
            *h = head_bytes(header, dialect, total);
            copy_small(body, payload);
            Ok(total)
        }
        _ => Err(lost_room(buf, start, total)),
    }
}

/// A storage whose `put_unfilled` gave a slice of the wrong length: its bytes are
/// taken back and the error says what was asked for.
#[cold]
#[inline(never)]
fn lost_room<B: FrameBuf + ?Sized>(buf: &mut B, start: usize, total: usize) -> Error {
    buf.truncate(start);
    Error::NoSpace {
        needed: total,
        available: buf.spare(),
    }
}

/// `dst.copy_from_slice(src)` for slices of equal length, with up to 32 bytes
/// copied inline by overlapping word moves: for a small payload, a call to
/// `memcpy` costs more than the copy.
///
/// Words, not 16-byte slice copies: LLVM merges constant-size slice copies of the
/// branches into one variable-length `memcpy` call, which is what this avoids.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    // Through a register: a word is loaded, then stored (`n >= 8` resp. `n >= 4`
    // and `dst.len() == n` keep every index in bounds).
    #[inline(always)]
    fn w64(dst: &mut [u8], d: usize, src: &[u8]) {
        let w = u64::from_ne_bytes(src[d..d + 8].try_into().unwrap_or([0; 8]));
        dst[d..d + 8].copy_from_slice(&w.to_ne_bytes());
    }
    #[inline(always)]
    fn w32(dst: &mut [u8], d: usize, src: &[u8]) {
        let w = u32::from_ne_bytes(src[d..d + 4].try_into().unwrap_or([0; 4]));
        dst[d..d + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let n = src.len();
    if dst.len() != n || n > 32 {
        dst.copy_from_slice(src);
    } else if n >= 16 {
        w64(dst, 0, src);
        w64(dst, 8, src);
        w64(dst, n - 16, src);
        w64(dst, n - 8, src);
    } else if n >= 8 {
        w64(dst, 0, src);
        w64(dst, n - 8, src);
    } else if n >= 4 {
        w32(dst, 0, src);
        w32(dst, n - 4, src);
    } else if n > 0 {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

/// The checks every encoder makes before writing a byte, once: `total` within
/// `max` (capped at what `dialect` can express) and within the storage's room.
/// Since `total` is then known to fit the dialect, the header is built after it
/// without checking the length a second time ([`head_bytes`]).
#[inline(always)]
fn frame_check<B: FrameBuf + ?Sized>(
    buf: &B,
    dialect: Dialect,
    max: usize,
    total: usize,
) -> Result<(), Error> {
    let max = max.min(dialect.max_frame_len());
    if total > max {
        return Err(Error::TooLong { len: total, max });
    }
    let spare = buf.spare();
    if total > spare {
        return Err(Error::NoSpace {
            needed: total,
            available: spare,
        });
    }
    Ok(())
}

/// The header's 16 wire bytes for a frame of `total` bytes that [`frame_check`]
/// passed. Built where they are stored, so the words go straight into place.
#[inline(always)]
fn head_bytes(header: Header, dialect: Dialect, total: usize) -> [u8; HEADER_SIZE] {
    // 16 <= total <= dialect.max_frame_len() < 2^31: fits the length field.
    header.with_len(total as u32).wire_bytes_unchecked(dialect)
}

/// Appends one frame whose payload is the concatenation of `parts`
/// (`imsg_composev`). Same rules as [`emit`].
///
/// ```
/// use imsg_codec::{emitv, split, Dialect, Header};
/// let mut buf = heapless::Vec::<u8, 64>::new();
/// emitv(&mut buf, Dialect::Current, 16384, Header::new(1, 0, 0), &[b"ab", b"", b"c"]).unwrap();
/// let (frame, _) = split(&buf, Dialect::Current, 16384).unwrap().complete().unwrap();
/// assert_eq!(frame.payload(), b"abc");
/// ```
#[inline]
pub fn emitv<B: FrameBuf + ?Sized>(
    buf: &mut B,
    dialect: Dialect,
    max: usize,
    header: Header,
    parts: &[&[u8]],
) -> Result<usize, Error> {
    let total = parts
        .iter()
        .try_fold(HEADER_SIZE, |acc, p| acc.checked_add(p.len()))
        .unwrap_or(usize::MAX);
    frame_check(buf, dialect, max, total)?;
    let start = buf.len();
    let dst = buf.put_unfilled(total)?;
    let Some((h, mut body)) = dst.split_first_chunk_mut::<HEADER_SIZE>() else {
        return Err(lost_room(buf, start, total));
    };
    *h = head_bytes(header, dialect, total);
    for p in parts {
        match body.split_at_mut_checked(p.len()) {
            Some((to, rest)) => {
                copy_small(to, p);
                body = rest;
            }
            None => return Err(lost_room(buf, start, total)),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{split, SliceBuf, MAX_IMSGSIZE};

    #[test]
    fn small_copies_of_every_size() {
        let src: [u8; 80] = core::array::from_fn(|i| i as u8 + 1);
        for n in 0..=80 {
            let mut dst = [0xeeu8; 82];
            copy_small(&mut dst[1..n + 1], &src[..n]);
            assert_eq!(&dst[1..n + 1], &src[..n], "n = {n}");
            assert_eq!((dst[0], dst[n + 1]), (0xee, 0xee), "n = {n}");
        }
    }

    #[test]
    fn emitv_writes_every_part_over_stale_bytes() {
        let mut raw = [0xaau8; 256];
        let mut out = SliceBuf::new(&mut raw);
        let parts: [&[u8]; 4] = [b"a", &[2; 17], b"", &[3; 40]];
        let h = Header::new(9, 8, 7).with_fd(true);
        assert_eq!(emitv(&mut out, Dialect::Current, 16384, h, &parts), Ok(74));
        let mut arr = arrayvec::ArrayVec::<u8, 128>::new();
        emitv(&mut arr, Dialect::Current, 16384, h, &parts).unwrap();
        assert_eq!(out.filled(), arr.as_slice());
        let (f, _) = split(out.filled(), Dialect::Current, 16384)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(f.payload(), [&parts[..]].concat().concat());
        assert!(f.has_fd());
        assert_eq!((f.msg_type(), f.peerid(), f.pid()), (9, 8, 7));
    }

    #[test]
    fn builder_rolls_back_when_dropped() {
        let mut buf = heapless::Vec::<u8, 64>::new();
        buf.extend_from_slice(b"keep").unwrap();
        {
            let mut b =
                FrameBuilder::new(&mut buf, Dialect::Legacy, 64, Header::new(1, 0, 0)).unwrap();
            b.add(b"lost").unwrap();
        }
        assert_eq!(buf.as_slice(), b"keep");
    }

    #[test]
    fn builder_caps_payload_at_max() {
        let mut buf = heapless::Vec::<u8, 256>::new();
        let mut b = FrameBuilder::new(&mut buf, Dialect::Legacy, 20, Header::new(1, 0, 0)).unwrap();
        b.add(&[1; 4]).unwrap();
        assert_eq!(b.left(), 0);
        assert!(matches!(b.add_n8(1), Err(Error::NoSpace { .. })));
        assert_eq!(b.finish(), Ok(20));
    }

    #[test]
    fn create_checks_datalen_like_c() {
        let mut buf = heapless::Vec::<u8, 256>::new();
        let h = Header::new(1, 0, 0);
        assert!(FrameBuilder::with_len(&mut buf, Dialect::Legacy, 100, h, 84).is_ok());
        assert_eq!(
            FrameBuilder::with_len(&mut buf, Dialect::Legacy, 100, h, 85).unwrap_err(),
            Error::TooLong { len: 101, max: 100 }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn writer_values_case_g() {
        let mut raw = [0u8; 64];
        let mut out = SliceBuf::new(&mut raw);
        let mut w = Writer::new(&mut out);
        w.add_n8(1).unwrap();
        w.add_n16(0x0203).unwrap();
        w.add_n32(0x0405_0607).unwrap();
        w.add_n64(0x0809_0a0b_0c0d_0e0f).unwrap();
        w.add_h16(0x1122).unwrap();
        w.add_h32(0x3344_5566).unwrap();
        w.add_h64(7).unwrap();
        assert_eq!(w.add_strbuf(b"abc", 3), Err(Error::StringOverflow));
        w.add_strbuf(b"abc", 4).unwrap();
        assert_eq!(
            w.set_n32(w.len() - 3, 1),
            Err(Error::OutOfBounds {
                offset: 30,
                len: 4,
                size: 33
            })
        );
        w.set_n16(1, 0xfffe).unwrap();
        w.truncate(40).unwrap();
        let n = w.len();
        assert_eq!(n, 40);
        let bytes = out.filled();
        assert_eq!(
            &bytes[..15],
            [1, 0xff, 0xfe, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        assert_eq!(bytes[15..17], 0x1122u16.to_ne_bytes());
        assert_eq!(&bytes[29..40], b"abc\0\0\0\0\0\0\0\0");
    }

    #[test]
    fn emit_leaves_storage_unchanged_on_error() {
        let mut raw = [0u8; 20];
        let mut out = SliceBuf::new(&mut raw);
        assert!(matches!(
            emit(
                &mut out,
                Dialect::Legacy,
                MAX_IMSGSIZE,
                Header::new(1, 0, 0),
                &[0; 8]
            ),
            Err(Error::NoSpace { .. })
        ));
        assert_eq!(out.len(), 0);
        assert_eq!(
            emit(
                &mut out,
                Dialect::Legacy,
                70000,
                Header::new(1, 0, 0),
                &[0; 4]
            ),
            Ok(20)
        );
        let (f, _) = split(out.filled(), Dialect::Legacy, MAX_IMSGSIZE)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(f.payload(), [0; 4]);
    }
}
