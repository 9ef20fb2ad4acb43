//! Encoding: ibuf-style payload writers ([`Writer`]), the `imsg_create` /
//! `imsg_add` / `imsg_close` idiom ([`FrameBuilder`]), and one-call encoders
//! ([`Framing::emit`], `imsg_compose`; [`Framing::emitv`], `imsg_composev`).

use core::ops::{Deref, DerefMut};

use zerocopy::{Immutable, IntoBytes};

use crate::header::RawHeader;
use crate::{EmitError, FrameBuf, Framing, Header, NoSpace, OutOfBounds, WriteError, HEADER_SIZE};

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
        pub fn $add(&mut self, v: $t) -> Result<(), NoSpace> {
            self.add(&v.$conv())
        }
        $(#[$sn])*
        pub fn $set(&mut self, pos: usize, v: $t) -> Result<(), OutOfBounds> {
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
    fn room(&self, n: usize) -> Result<(), NoSpace> {
        if n > self.cap - self.len() {
            Err(NoSpace {
                needed: n,
                available: self.cap - self.len(),
            })
        } else {
            Ok(())
        }
    }

    /// Appends bytes (`ibuf_add`).
    #[inline]
    pub fn add(&mut self, data: &[u8]) -> Result<(), NoSpace> {
        self.room(data.len())?;
        self.buf.put(data)
    }

    /// Appends `n` zero bytes (`ibuf_add_zero`).
    pub fn add_zero(&mut self, n: usize) -> Result<(), NoSpace> {
        self.reserve(n).map(|_| ())
    }

    /// Appends `n` zero bytes and returns them to fill in (`ibuf_reserve`).
    pub fn reserve(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        self.room(n)?;
        self.buf.put_zeroed(n)
    }

    /// Appends the bytes of a plain-data value, as C appends a struct.
    pub fn add_struct<T: IntoBytes + Immutable + ?Sized>(&mut self, v: &T) -> Result<(), NoSpace> {
        self.add(v.as_bytes())
    }

    /// Appends `s` in a fixed field of `width` bytes, NUL-padded; `s` must leave room
    /// for at least one NUL (`ibuf_add_strbuf`, [`WriteError::StringOverflow`] otherwise).
    pub fn add_strbuf(&mut self, s: &[u8], width: usize) -> Result<(), WriteError> {
        let s = s.split(|&b| b == 0).next().unwrap_or(s);
        if s.len() >= width {
            return Err(WriteError::StringOverflow);
        }
        self.reserve(width)?[..s.len()].copy_from_slice(s);
        Ok(())
    }

    /// Overwrites bytes at `pos` within what was written (`ibuf_set`).
    pub fn set(&mut self, pos: usize, data: &[u8]) -> Result<(), OutOfBounds> {
        let size = self.len();
        match pos.checked_add(data.len()) {
            Some(end) if end <= size => {
                self.written()[pos..end].copy_from_slice(data);
                Ok(())
            }
            _ => Err(OutOfBounds {
                offset: pos,
                len: data.len(),
                size,
            }),
        }
    }

    /// Shrinks to `len` bytes, or zero-extends up to it (`ibuf_truncate`).
    pub fn truncate(&mut self, len: usize) -> Result<(), NoSpace> {
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

/// A frame whose payload is added in pieces: `imsg_create`
/// ([`Framing::builder`]), then `imsg_add` (the [`Writer`] methods, through
/// `Deref`), then `imsg_close` ([`FrameBuilder::finish`]).
///
/// The payload is capped at the framing's limit. The length and descriptor flag
/// are stamped by `finish`. A builder dropped without `finish` takes its bytes
/// back out of the storage: the storage never holds half a frame.
///
/// ```
/// use imsg_codec::{Dialect, Framing, Header};
/// let framing = Framing::standard(Dialect::Current);
/// let mut buf = arrayvec::ArrayVec::<u8, 64>::new();
/// let mut b = framing.builder(&mut buf, Header::new(7, 0, 1)).unwrap();
/// b.add_h32(5).unwrap();
/// b.add(b"xyz").unwrap();
/// assert_eq!(b.finish(), 23);
/// let (frame, _) = framing.split(&buf).unwrap().complete().unwrap();
/// assert_eq!(frame.payload().len(), 7);
/// ```
#[derive(Debug)]
pub struct FrameBuilder<'b, B: FrameBuf + ?Sized> {
    payload: Writer<'b, B>,
    header: Header,
    framing: Framing,
    done: bool,
}

impl Framing {
    /// Starts a frame in `buf` (`imsg_create`); [`NoSpace`] if `buf` cannot hold
    /// even the header.
    #[inline]
    pub fn builder<'b, B: FrameBuf + ?Sized>(
        &self,
        buf: &'b mut B,
        header: Header,
    ) -> Result<FrameBuilder<'b, B>, NoSpace> {
        // Room for the header, stamped by `finish`.
        buf.put(&[0; HEADER_SIZE])?;
        let start = buf.len();
        Ok(FrameBuilder {
            payload: Writer {
                buf,
                start,
                cap: self.max_frame() - HEADER_SIZE,
            },
            header,
            framing: *self,
            done: false,
        })
    }

    /// Starts a frame with room checked up front for `datalen` payload bytes, as
    /// `imsg_create` does (`ERANGE`, [`EmitError::TooLong`], when `datalen + 16`
    /// is above the limit).
    pub fn builder_with_len<'b, B: FrameBuf + ?Sized>(
        &self,
        buf: &'b mut B,
        header: Header,
        datalen: usize,
    ) -> Result<FrameBuilder<'b, B>, EmitError> {
        let total = datalen.saturating_add(HEADER_SIZE);
        if total > self.max_frame() {
            return Err(EmitError::TooLong {
                len: total,
                max: self.max_frame(),
            });
        }
        Ok(self.builder(buf, header)?)
    }

    /// Appends one frame with `payload` to `buf` (`imsg_compose` without the
    /// descriptor, which travels outside the bytes). The header's `len` is filled
    /// in; its `has_fd` is written as the dialect's flag. Refuses a frame above the
    /// limit with [`EmitError::TooLong`]; on any error `buf` is unchanged. Returns
    /// the frame's total length.
    ///
    /// ```
    /// use imsg_codec::{Dialect, Framing, Header};
    /// let mut buf = heapless::Vec::<u8, 64>::new();
    /// let framing = Framing::standard(Dialect::Legacy);
    /// assert_eq!(framing.emit(&mut buf, Header::new(12, 8, u32::MAX), &[]), Ok(16));
    /// let small = Framing::new(Dialect::Legacy, 20).unwrap();
    /// assert!(small.emit(&mut buf, Header::new(1, 0, 0), &[0; 5]).is_err());
    /// assert_eq!(buf.len(), 16);
    /// ```
    #[inline]
    pub fn emit<B: FrameBuf + ?Sized>(
        &self,
        buf: &mut B,
        header: Header,
        payload: &[u8],
    ) -> Result<usize, EmitError> {
        self.emitv(buf, header, &[payload])
    }

    /// Appends one frame whose payload is the concatenation of `parts`
    /// (`imsg_composev`). Same rules as [`emit`](Framing::emit).
    ///
    /// ```
    /// use imsg_codec::{Dialect, Framing, Header};
    /// let framing = Framing::standard(Dialect::Current);
    /// let mut buf = heapless::Vec::<u8, 64>::new();
    /// framing.emitv(&mut buf, Header::new(1, 0, 0), &[b"ab", b"", b"c"]).unwrap();
    /// let (frame, _) = framing.split(&buf).unwrap().complete().unwrap();
    /// assert_eq!(frame.payload(), b"abc");
    /// ```
    // Always inlined: with the larger small-part copy the compiler otherwise left
    // it out of line in some callers' compose loops, and a 16-byte frame stream
    // then fell from about 3,000 to 2,100 MiB/s (imsg-io's process benchmark).
    #[inline(always)]
    pub fn emitv<B: FrameBuf + ?Sized>(
        &self,
        buf: &mut B,
        header: Header,
        parts: &[&[u8]],
    ) -> Result<usize, EmitError> {
        let total = parts
            .iter()
            .try_fold(HEADER_SIZE, |acc, p| acc.checked_add(p.len()))
            .unwrap_or(usize::MAX);
        if total > self.max_frame() {
            return Err(EmitError::TooLong {
                len: total,
                max: self.max_frame(),
            });
        }
        let start = buf.len();
        // One reservation for the whole frame, then header and parts in place.
        let dst = buf.put_unfilled(total)?;
        let Some((head, mut body)) = dst.split_first_chunk_mut::<HEADER_SIZE>() else {
            return Err(lost_room(buf, start, total));
        };
        // 16 <= total <= max <= the dialect's largest frame: the length fits.
        RawHeader::from_array_mut(head)
            .write_fitting(&header.with_len(total as u32), self.dialect());
        for p in parts {
            match body.split_at_mut_checked(p.len()) {
                Some((to, rest)) => {
                    copy_part(to, p);
                    body = rest;
                }
                None => return Err(lost_room(buf, start, total)),
            }
        }
        Ok(total)
    }
}

/// Copies `src` into `dst` (same length). Parts of 4 to 32 bytes, the usual size
/// of a control message's payload, are moved with two overlapping fixed-size
/// copies (a few register moves) instead of a call to `memcpy`, which took 5 % of
/// the samples of a stream of 16-byte payloads. Together with the send queue's
/// sparse frame marks in imsg-io this brought that stream from 0.53 to 0.65 of
/// its raw-socket ceiling (imsg-io's README, bench (a)).
#[inline(always)]
fn copy_part(dst: &mut [u8], src: &[u8]) {
    fn two<const W: usize>(dst: &mut [u8], src: &[u8]) {
        if let (Some(d), Some(s)) = (dst.first_chunk_mut::<W>(), src.first_chunk::<W>()) {
            *d = *s;
        }
        if let (Some(d), Some(s)) = (dst.last_chunk_mut::<W>(), src.last_chunk::<W>()) {
            *d = *s;
        }
    }
    match src.len() {
        4..=7 => two::<4>(dst, src),
        8..=16 => two::<8>(dst, src),
        17..=32 => two::<16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// A storage whose `put_unfilled` gave a slice of the wrong length: its bytes are
/// taken back and the error says what was asked for.
#[cold]
#[inline(never)]
fn lost_room<B: FrameBuf + ?Sized>(buf: &mut B, start: usize, total: usize) -> EmitError {
    buf.truncate(start);
    EmitError::NoSpace(NoSpace {
        needed: total,
        available: buf.spare(),
    })
}

impl<'b, B: FrameBuf + ?Sized> FrameBuilder<'b, B> {
    /// Sets whether the header, stamped by [`finish`](FrameBuilder::finish), says a
    /// descriptor travels with this frame (`imsg_close` on a buffer with an fd).
    ///
    /// ```
    /// use imsg_codec::{Dialect, Framing, Header};
    /// let framing = Framing::standard(Dialect::Legacy);
    /// let mut buf = heapless::Vec::<u8, 32>::new();
    /// let mut b = framing.builder(&mut buf, Header::new(1, 0, 0)).unwrap();
    /// b.set_has_fd(true);
    /// b.finish();
    /// let (frame, _) = framing.split(&buf).unwrap().complete().unwrap();
    /// assert!(frame.has_fd());
    /// ```
    #[inline]
    pub fn set_has_fd(&mut self, has_fd: bool) {
        self.header = self.header.with_fd(has_fd);
    }

    /// Stamps the header (length, descriptor flag) and leaves the frame in the
    /// storage; returns its total length.
    #[inline]
    pub fn finish(mut self) -> usize {
        // The payload's cap keeps the total within the limit.
        let total = HEADER_SIZE + self.payload.len();
        let start = self.payload.start - HEADER_SIZE;
        let header = self.header.with_len(total as u32);
        let dialect = self.framing.dialect();
        // The builder holds the storage exclusively from `builder` on, and a
        // `Writer` never shrinks below its start: the header's bytes are there.
        if let Some(head) = self
            .payload
            .buf
            .bytes_mut()
            .get_mut(start..)
            .and_then(|b| b.first_chunk_mut::<HEADER_SIZE>())
        {
            RawHeader::from_array_mut(head).write_fitting(&header, dialect);
        }
        self.done = true;
        total
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, SliceBuf};

    #[test]
    fn emitv_writes_every_part_over_stale_bytes() {
        let framing = Framing::standard(Dialect::Current);
        let mut raw = [0xaau8; 256];
        let mut out = SliceBuf::new(&mut raw);
        let parts: [&[u8]; 4] = [b"a", &[2; 17], b"", &[3; 40]];
        let h = Header::new(9, 8, 7).with_fd(true);
        assert_eq!(framing.emitv(&mut out, h, &parts), Ok(74));
        let mut arr = arrayvec::ArrayVec::<u8, 128>::new();
        framing.emitv(&mut arr, h, &parts).unwrap();
        assert_eq!(out.filled(), arr.as_slice());
        let (f, _) = framing.split(out.filled()).unwrap().complete().unwrap();
        assert_eq!(f.payload(), [&parts[..]].concat().concat());
        assert!(f.has_fd());
        assert_eq!((f.msg_type(), f.peerid(), f.pid()), (9, 8, 7));
    }

    /// Every part length around the inline copy's cases (4-7, 8-16, 17-32 bytes)
    /// and past them lands whole, at its place.
    #[test]
    fn emitv_copies_parts_of_every_small_length() {
        let framing = Framing::standard(Dialect::Legacy);
        for len in 0..=40usize {
            let part: arrayvec::ArrayVec<u8, 40> = (0..len as u8).map(|b| b + 1).collect();
            let mut raw = [0xaau8; 128];
            let mut out = SliceBuf::new(&mut raw);
            let parts: [&[u8]; 3] = [&part, b"|", &part];
            framing
                .emitv(&mut out, Header::new(1, 0, 0), &parts)
                .unwrap();
            let (f, _) = framing.split(out.filled()).unwrap().complete().unwrap();
            let want: arrayvec::ArrayVec<u8, 81> = part
                .iter()
                .chain(b"|")
                .chain(part.iter())
                .copied()
                .collect();
            assert_eq!(f.payload(), want.as_slice(), "part length {len}");
        }
    }

    #[test]
    fn builder_rolls_back_when_dropped() {
        let framing = Framing::new(Dialect::Legacy, 64).unwrap();
        let mut buf = heapless::Vec::<u8, 64>::new();
        buf.extend_from_slice(b"keep").unwrap();
        {
            let mut b = framing.builder(&mut buf, Header::new(1, 0, 0)).unwrap();
            b.add(b"lost").unwrap();
        }
        assert_eq!(buf.as_slice(), b"keep");
    }

    #[test]
    fn builder_caps_payload_at_max() {
        let framing = Framing::new(Dialect::Legacy, 20).unwrap();
        let mut buf = heapless::Vec::<u8, 256>::new();
        let mut b = framing.builder(&mut buf, Header::new(1, 0, 0)).unwrap();
        b.add(&[1; 4]).unwrap();
        assert_eq!(b.left(), 0);
        assert!(b.add_n8(1).is_err());
        assert_eq!(b.finish(), 20);
    }

    #[test]
    fn create_checks_datalen_like_c() {
        let framing = Framing::new(Dialect::Legacy, 100).unwrap();
        let mut buf = heapless::Vec::<u8, 256>::new();
        let h = Header::new(1, 0, 0);
        assert!(framing.builder_with_len(&mut buf, h, 84).is_ok());
        assert_eq!(
            framing.builder_with_len(&mut buf, h, 85).unwrap_err(),
            EmitError::TooLong { len: 101, max: 100 }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn writer_values() {
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
        assert_eq!(w.add_strbuf(b"abc", 3), Err(WriteError::StringOverflow));
        w.add_strbuf(b"abc", 4).unwrap();
        assert_eq!(
            w.set_n32(w.len() - 3, 1),
            Err(OutOfBounds {
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
        let framing = Framing::standard(Dialect::Legacy);
        assert!(matches!(
            framing.emit(&mut out, Header::new(1, 0, 0), &[0; 8]),
            Err(EmitError::NoSpace(_))
        ));
        assert_eq!(out.len(), 0);
        assert_eq!(
            framing.emit(&mut out, Header::new(1, 0, 0), &[0; 4]),
            Ok(20)
        );
        let (f, _) = framing.split(out.filled()).unwrap().complete().unwrap();
        assert_eq!(f.payload(), [0; 4]);
    }
}
