//! Storage the caller provides for encoded frames: [`FrameBuf`], implemented for
//! a cursor over `&mut [u8]` ([`SliceBuf`]), `heapless::Vec`, `arrayvec::ArrayVec`
//! and (feature `alloc`) `Vec<u8>`.

use crate::NoSpace;

/// Growable byte storage that encoders append frames to.
///
/// Appends either succeed whole or fail with [`NoSpace`] leaving the
/// storage as it was.
pub trait FrameBuf {
    /// Bytes held.
    fn len(&self) -> usize;

    /// True when nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes that can still be appended (`usize::MAX` for unbounded storage).
    fn spare(&self) -> usize;

    /// Appends `data`.
    fn put(&mut self, data: &[u8]) -> Result<(), NoSpace>;

    /// Appends `n` zero bytes and returns them for filling in.
    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], NoSpace>;

    /// Appends `n` bytes of unspecified value and returns them, to be overwritten
    /// whole: one room check for a frame the encoder then writes in place.
    ///
    /// The bytes are initialised (zeros, or whatever the storage held there
    /// before), never uninitialised memory. The default is [`put_zeroed`](FrameBuf::put_zeroed);
    /// storages that already hold initialised room override it to skip the fill.
    /// Like every append, it succeeds whole (the slice is exactly `n` bytes long)
    /// or fails with [`NoSpace`] leaving the storage as it was.
    #[inline]
    fn put_unfilled(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        self.put_zeroed(n)
    }

    /// All bytes held.
    fn bytes_mut(&mut self) -> &mut [u8];

    /// Shortens the storage to `len` bytes (no effect if already shorter).
    fn truncate(&mut self, len: usize);
}

fn no_space(needed: usize, available: usize) -> NoSpace {
    NoSpace { needed, available }
}

/// A write cursor over a caller's `&mut [u8]`.
///
/// ```
/// use imsg_codec::{Dialect, Framing, Header, SliceBuf};
/// let mut bytes = [0u8; 32];
/// let mut out = SliceBuf::new(&mut bytes);
/// Framing::standard(Dialect::Legacy).emit(&mut out, Header::new(1, 2, 3), b"hi").unwrap();
/// assert_eq!(out.filled().len(), 18);
/// ```
#[derive(Debug)]
pub struct SliceBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceBuf<'a> {
    /// An empty cursor at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> SliceBuf<'a> {
        SliceBuf { buf, len: 0 }
    }

    /// The bytes written so far.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl FrameBuf for SliceBuf<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn spare(&self) -> usize {
        self.buf.len() - self.len
    }

    #[inline]
    fn put(&mut self, data: &[u8]) -> Result<(), NoSpace> {
        // Straight into place: no zero fill first (the hot path of `emit`). One
        // `get_mut` is both the room check and the slicing.
        let end = self.len.wrapping_add(data.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) if end >= self.len => {
                dst.copy_from_slice(data);
                self.len = end;
                Ok(())
            }
            _ => Err(no_space(data.len(), self.spare())),
        }
    }

    #[inline]
    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        let spare = self.spare();
        if n > spare {
            return Err(no_space(n, spare));
        }
        let start = self.len;
        self.len += n;
        let dst = &mut self.buf[start..self.len];
        dst.fill(0);
        Ok(dst)
    }

    #[inline]
    fn put_unfilled(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        // As `put`: one `get_mut` is both the room check and the slicing, and the
        // bytes are left as they are (the caller overwrites them).
        let (start, spare) = (self.len, self.spare());
        let end = start.wrapping_add(n);
        match self.buf.get_mut(start..end) {
            Some(dst) if end >= start => {
                self.len = end;
                Ok(dst)
            }
            _ => Err(no_space(n, spare)),
        }
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl<const N: usize> FrameBuf for heapless::Vec<u8, N> {
    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    #[inline]
    fn spare(&self) -> usize {
        N - self.as_slice().len()
    }

    #[inline]
    fn put(&mut self, data: &[u8]) -> Result<(), NoSpace> {
        // heapless checks the capacity once, then copies.
        match self.extend_from_slice(data) {
            Ok(()) => Ok(()),
            Err(_) => Err(no_space(data.len(), FrameBuf::spare(self))),
        }
    }

    #[inline]
    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        let start = self.as_slice().len();
        let spare = FrameBuf::spare(self);
        if n > spare {
            return Err(no_space(n, spare));
        }
        self.resize(start + n, 0).map_err(|_| no_space(n, spare))?;
        Ok(&mut self[start..])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }

    fn truncate(&mut self, len: usize) {
        heapless::Vec::truncate(self, len)
    }
}

impl<const N: usize> FrameBuf for arrayvec::ArrayVec<u8, N> {
    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    #[inline]
    fn spare(&self) -> usize {
        self.remaining_capacity()
    }

    #[inline]
    fn put(&mut self, data: &[u8]) -> Result<(), NoSpace> {
        match self.try_extend_from_slice(data) {
            Ok(()) => Ok(()),
            Err(_) => Err(no_space(data.len(), self.remaining_capacity())),
        }
    }

    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        let start = self.as_slice().len();
        let spare = self.remaining_capacity();
        if n > spare {
            return Err(no_space(n, spare));
        }
        self.extend(core::iter::repeat_n(0u8, n));
        Ok(&mut self[start..])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }

    fn truncate(&mut self, len: usize) {
        arrayvec::ArrayVec::truncate(self, len)
    }
}

#[cfg(feature = "alloc")]
impl FrameBuf for alloc::vec::Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    #[inline]
    fn spare(&self) -> usize {
        isize::MAX as usize - self.as_slice().len()
    }

    #[inline]
    fn put(&mut self, data: &[u8]) -> Result<(), NoSpace> {
        self.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
        let start = self.as_slice().len();
        self.resize(start + n, 0);
        Ok(&mut self[start..])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }

    fn truncate(&mut self, len: usize) {
        alloc::vec::Vec::truncate(self, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise<B: FrameBuf>(b: &mut B, cap: usize) {
        assert!(b.is_empty());
        b.put(b"abc").unwrap();
        b.put_zeroed(2).unwrap().copy_from_slice(b"de");
        assert_eq!(b.bytes_mut(), b"abcde");
        let got = b.put_unfilled(2).unwrap();
        assert_eq!(got.len(), 2);
        got.copy_from_slice(b"fg");
        assert_eq!(b.bytes_mut(), b"abcdefg");
        assert!(b.put_unfilled(64).is_err());
        b.truncate(5);
        let err = b.put(&[0u8; 64]).unwrap_err();
        assert_eq!(
            err,
            NoSpace {
                needed: 64,
                available: cap - 5
            }
        );
        assert!(b.put_zeroed(64).is_err());
        assert_eq!(b.len(), 5, "a failed append leaves the storage unchanged");
        b.truncate(1);
        assert_eq!(b.bytes_mut(), b"a");
    }

    #[test]
    fn all_storages_behave_alike() {
        let mut raw = [0u8; 8];
        exercise(&mut SliceBuf::new(&mut raw), 8);
        exercise(&mut heapless::Vec::<u8, 8>::new(), 8);
        exercise(&mut arrayvec::ArrayVec::<u8, 8>::new(), 8);
    }
}
