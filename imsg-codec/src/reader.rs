//! Decoding payloads: an ibuf-style [`Reader`] over a borrowed slice and the
//! exact-size struct read of `IMSG_SIZE_CHECK` / `imsg_get_data` ([`exact`]).

use core::ffi::CStr;

use zerocopy::FromBytes;

use crate::{ReadError, ShortRead, SizeMismatch};

/// A read cursor over a payload (`ibuf_from_buffer` + `ibuf_get_*`). Every read
/// past the end is [`ShortRead`] and leaves the cursor where it was.
///
/// ```
/// use imsg_codec::Reader;
/// let payload = [0, 1, 0, 0, 0, 2, b'h', b'i', 0, 0];
/// let mut r = Reader::new(&payload);
/// assert_eq!(r.get_n16().unwrap(), 1);
/// assert_eq!(r.get_n32().unwrap(), 2);
/// assert_eq!(r.get_strbuf(4).unwrap().to_bytes(), b"hi");
/// assert!(r.get_n8().is_err());
/// r.rewind();
/// assert_eq!(r.left(), 10);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

macro_rules! get {
    ($(#[$m:meta])* $name:ident, $t:ty, $conv:ident) => {
        $(#[$m])*
        pub fn $name(&mut self) -> Result<$t, ShortRead> {
            let mut a = [0u8; core::mem::size_of::<$t>()];
            a.copy_from_slice(self.get(core::mem::size_of::<$t>())?);
            Ok(<$t>::$conv(a))
        }
    };
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read (`ibuf_size`).
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not yet read (`ibuf_data`), without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Back to the start (`ibuf_rewind`).
    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    /// Consumes `n` bytes and returns them without a copy (`ibuf_get_ibuf`).
    pub fn get(&mut self, n: usize) -> Result<&'a [u8], ShortRead> {
        let left = self.left();
        if n > left {
            return Err(ShortRead { wanted: n, left });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Copies `dst.len()` bytes into `dst` (`ibuf_get`).
    pub fn get_into(&mut self, dst: &mut [u8]) -> Result<(), ShortRead> {
        dst.copy_from_slice(self.get(dst.len())?);
        Ok(())
    }

    /// Skips `n` bytes (`ibuf_skip`).
    pub fn skip(&mut self, n: usize) -> Result<(), ShortRead> {
        self.get(n).map(|_| ())
    }

    /// Reads a plain-data value laid out as C lays out a struct (`ibuf_get` into a
    /// struct). Use [`exact`] when the whole payload must be exactly one `T`.
    pub fn get_struct<T: FromBytes>(&mut self) -> Result<T, ShortRead> {
        let n = core::mem::size_of::<T>();
        let left = self.left();
        match T::read_from_prefix(self.rest()) {
            Ok((v, _)) => {
                self.pos += n;
                Ok(v)
            }
            Err(_) => Err(ShortRead { wanted: n, left }),
        }
    }

    /// Consumes a fixed field of `len` bytes that must hold a NUL
    /// (`ibuf_get_strbuf`); returns the string before the first NUL, borrowed.
    /// [`ReadError::StringOverflow`] if the field has no NUL (the field is
    /// consumed only on success).
    pub fn get_strbuf(&mut self, len: usize) -> Result<&'a CStr, ReadError> {
        let field = self.rest().get(..len).ok_or(ShortRead {
            wanted: len,
            left: self.left(),
        })?;
        let s = CStr::from_bytes_until_nul(field).map_err(|_| ReadError::StringOverflow)?;
        self.pos += len;
        Ok(s)
    }

    /// Consumes `len` bytes and returns them up to the first NUL, or all of them if
    /// there is none (`ibuf_get_string`, without the allocation).
    pub fn get_string(&mut self, len: usize) -> Result<&'a [u8], ShortRead> {
        let field = self.get(len)?;
        Ok(field.split(|&b| b == 0).next().unwrap_or(field))
    }

    /// Reads a NUL-terminated string from the rest of the payload, consuming it
    /// and its NUL (how tmux sends `TERM`, `CWD`, `ENVIRON`, command arguments).
    /// [`ReadError::StringOverflow`] if no NUL follows.
    pub fn get_cstr(&mut self) -> Result<&'a CStr, ReadError> {
        let s = CStr::from_bytes_until_nul(self.rest()).map_err(|_| ReadError::StringOverflow)?;
        self.pos += s.to_bytes_with_nul().len();
        Ok(s)
    }

    get!(
        /// Reads a byte (`ibuf_get_n8`).
        get_n8, u8, from_be_bytes);
    get!(
        /// Reads a network-order `u16` (`ibuf_get_n16`).
        get_n16, u16, from_be_bytes);
    get!(
        /// Reads a network-order `u32` (`ibuf_get_n32`).
        get_n32, u32, from_be_bytes);
    get!(
        /// Reads a network-order `u64` (`ibuf_get_n64`).
        get_n64, u64, from_be_bytes);
    get!(
        /// Reads a host-order `u16` (`ibuf_get_h16`).
        get_h16, u16, from_ne_bytes);
    get!(
        /// Reads a host-order `u32` (`ibuf_get_h32`).
        get_h32, u32, from_ne_bytes);
    get!(
        /// Reads a host-order `u64` (`ibuf_get_h64`).
        get_h64, u64, from_ne_bytes);
    get!(
        /// Reads a host-order `i32`, C's `int` (tmux's flags, exit status, streams).
        get_i32, i32, from_ne_bytes);
}

/// The whole payload as exactly one `T` (`IMSG_SIZE_CHECK` + copy,
/// `imsg_get_data`): [`SizeMismatch`] unless the sizes are equal.
///
/// ```
/// use imsg_codec::{exact, SizeMismatch};
/// assert_eq!(exact::<u32>(&7u32.to_ne_bytes()), Ok(7));
/// assert_eq!(exact::<u32>(&[0; 3]), Err(SizeMismatch { expected: 4, actual: 3 }));
/// ```
pub fn exact<T: FromBytes>(payload: &[u8]) -> Result<T, SizeMismatch> {
    T::read_from_bytes(payload).map_err(|_| SizeMismatch {
        expected: core::mem::size_of::<T>(),
        actual: payload.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.get_n32(), Err(ShortRead { wanted: 4, left: 3 }));
        assert_eq!(r.position(), 0);
        assert_eq!(r.get_n16(), Ok(0x0102));
        assert_eq!(r.get_h16(), Err(ShortRead { wanted: 2, left: 1 }));
        assert_eq!(r.skip(2), Err(ShortRead { wanted: 2, left: 1 }));
        r.skip(1).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn strbuf_requires_nul() {
        let mut r = Reader::new(b"abcd");
        assert_eq!(r.get_strbuf(4), Err(ReadError::StringOverflow));
        assert_eq!(r.position(), 0);
        assert_eq!(
            r.get_strbuf(5),
            Err(ReadError::ShortRead(ShortRead { wanted: 5, left: 4 }))
        );
        assert_eq!(r.get_string(4), Ok(&b"abcd"[..]));
        let mut r = Reader::new(b"ab\0d");
        assert_eq!(r.get_string(4), Ok(&b"ab"[..]));
    }

    #[test]
    fn cstr_sequence() {
        let mut r = Reader::new(b"TERM=x\0PATH=/\0tail");
        assert_eq!(r.get_cstr().unwrap().to_bytes(), b"TERM=x");
        assert_eq!(r.get_cstr().unwrap().to_bytes(), b"PATH=/");
        assert_eq!(r.get_cstr(), Err(ReadError::StringOverflow));
        assert_eq!(r.rest(), b"tail");
    }

    #[test]
    fn structs() {
        #[derive(FromBytes, Debug, PartialEq)]
        #[repr(C)]
        struct WriteOpen {
            stream: i32,
            fd: i32,
            flags: i32,
        }
        let mut p = [0u8; 12];
        p[..4].copy_from_slice(&1i32.to_ne_bytes());
        p[4..8].copy_from_slice(&1i32.to_ne_bytes());
        let w: WriteOpen = exact(&p).unwrap();
        assert_eq!(
            w,
            WriteOpen {
                stream: 1,
                fd: 1,
                flags: 0
            }
        );
        assert!(exact::<WriteOpen>(&p[..11]).is_err());
        let mut r = Reader::new(&p);
        assert_eq!(r.get_struct::<[i32; 2]>().unwrap(), [1, 1]);
        assert!(r.get_struct::<[i32; 2]>().is_err());
    }
}
