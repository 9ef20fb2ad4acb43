//! The 16-byte imsg header: a view over the bytes ([`RawHeader`], one getter and
//! one setter per field, offsets in one table), the meaning of those bytes
//! ([`Header`]) and the [`Dialect`] that decides how bytes 4..8 are read.

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::FrameError;

/// Size of an imsg header on the wire (`IMSG_HEADER_SIZE`).
pub const HEADER_SIZE: usize = 16;

/// Default limit on a frame's **total** size, header included (`MAX_IMSGSIZE`).
pub const MAX_IMSGSIZE: usize = 16384;

/// Legacy descriptor flag (`IMSGF_HASFD`) in the legacy `flags` field.
pub const LEGACY_HASFD: u16 = 0x0001;

/// Current descriptor mark (`IMSG_FD_MARK`) in the top bit of the current `len` field.
pub const CURRENT_FD_MARK: u32 = 0x8000_0000;

/// The two wire layouts of header bytes 4..8 found in the wild.
///
/// Choose one per channel; a peer never announces which it speaks.
///
/// ```
/// use imsg_codec::Dialect;
/// assert_eq!(Dialect::Legacy.max_frame_len(), 65535);
/// assert_eq!(Dialect::Current.max_frame_len(), 0x7fff_ffff);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// `len: u16` then `flags: u16` (bit 0 = a descriptor travels with the frame).
    /// OpenBSD up to 7.6, tmux up to 3.5a and Debian bookworm's portable daemons.
    #[default]
    Legacy,
    /// `len: u32` whose top bit marks a descriptor; the length is the other 31 bits.
    /// OpenBSD 7.7 and later, tmux 3.6 and later.
    Current,
}

impl Dialect {
    /// The largest total frame length this dialect can express.
    #[inline]
    pub const fn max_frame_len(self) -> usize {
        match self {
            Dialect::Legacy => u16::MAX as usize,
            Dialect::Current => (CURRENT_FD_MARK - 1) as usize,
        }
    }

    /// The other dialect.
    pub const fn other(self) -> Dialect {
        match self {
            Dialect::Legacy => Dialect::Current,
            Dialect::Current => Dialect::Legacy,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Legacy => "legacy",
            Dialect::Current => "current",
        })
    }
}

/// Where each header field lies: the one table of the wire layout.
mod field {
    pub type Field = core::ops::Range<usize>;

    /// Message type.
    pub const TYPE: Field = 0..4;
    /// Current dialect: total length, top bit the descriptor mark.
    pub const LEN_WORD: Field = 4..8;
    /// Legacy dialect: total length.
    pub const LEGACY_LEN: Field = 4..6;
    /// Legacy dialect: flags, bit 0 the descriptor flag.
    pub const LEGACY_FLAGS: Field = 6..8;
    /// Peer id.
    pub const PEERID: Field = 8..12;
    /// Sender's pid.
    pub const PID: Field = 12..16;
}

/// The header exactly as it lies on the wire, host byte order, no padding.
///
/// Bytes 4..8 mean different things in each [`Dialect`]; read them through
/// [`RawHeader::total_len`] and [`RawHeader::has_fd`]. Setters write one field
/// each and leave the others alone.
///
/// ```
/// use imsg_codec::{Dialect, RawHeader};
/// use zerocopy::FromBytes;
/// let bytes = [7u32.to_ne_bytes(), 20u32.to_ne_bytes(), 1u32.to_ne_bytes(), 2u32.to_ne_bytes()]
///     .concat();
/// let raw = RawHeader::ref_from_bytes(&bytes[..]).unwrap();
/// assert_eq!(raw.msg_type(), 7);
/// assert_eq!(raw.total_len(Dialect::Current), 20);
/// ```
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct RawHeader([u8; HEADER_SIZE]);

impl RawHeader {
    /// The header view over exactly 16 bytes.
    #[inline(always)]
    pub fn from_array(bytes: &[u8; HEADER_SIZE]) -> &RawHeader {
        zerocopy::transmute_ref!(bytes)
    }

    /// The mutable header view over exactly 16 bytes.
    #[inline(always)]
    pub fn from_array_mut(bytes: &mut [u8; HEADER_SIZE]) -> &mut RawHeader {
        zerocopy::transmute_mut!(bytes)
    }

    #[inline(always)]
    fn u32_at(&self, f: field::Field) -> u32 {
        let mut w = [0; 4];
        w.copy_from_slice(&self.0[f]);
        u32::from_ne_bytes(w)
    }

    #[inline(always)]
    fn u16_at(&self, f: field::Field) -> u16 {
        let mut w = [0; 2];
        w.copy_from_slice(&self.0[f]);
        u16::from_ne_bytes(w)
    }

    /// The message type (bytes 0..4).
    #[inline]
    pub fn msg_type(&self) -> u32 {
        self.u32_at(field::TYPE)
    }

    /// The current dialect's length word, descriptor mark included (bytes 4..8).
    #[inline]
    pub fn current_word(&self) -> u32 {
        self.u32_at(field::LEN_WORD)
    }

    /// The legacy `len` field (bytes 4..6).
    #[inline]
    pub fn legacy_len(&self) -> u16 {
        self.u16_at(field::LEGACY_LEN)
    }

    /// The legacy `flags` field (bytes 6..8).
    #[inline]
    pub fn legacy_flags(&self) -> u16 {
        self.u16_at(field::LEGACY_FLAGS)
    }

    /// The peer id (bytes 8..12).
    #[inline]
    pub fn peerid(&self) -> u32 {
        self.u32_at(field::PEERID)
    }

    /// The pid field (bytes 12..16), as the unsigned wire value.
    #[inline]
    pub fn pid(&self) -> u32 {
        self.u32_at(field::PID)
    }

    /// The frame's total length (header included) as `dialect` reads it.
    #[inline]
    pub fn total_len(&self, dialect: Dialect) -> usize {
        match dialect {
            Dialect::Legacy => self.legacy_len() as usize,
            Dialect::Current => (self.current_word() & !CURRENT_FD_MARK) as usize,
        }
    }

    /// Whether `dialect` reads this header as carrying a descriptor.
    #[inline]
    pub fn has_fd(&self, dialect: Dialect) -> bool {
        match dialect {
            Dialect::Legacy => self.legacy_flags() & LEGACY_HASFD != 0,
            Dialect::Current => self.current_word() & CURRENT_FD_MARK != 0,
        }
    }

    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, ty: u32) {
        self.0[field::TYPE].copy_from_slice(&ty.to_ne_bytes());
    }

    /// Sets the current dialect's length word (length and descriptor mark).
    #[inline]
    pub fn set_current_word(&mut self, word: u32) {
        self.0[field::LEN_WORD].copy_from_slice(&word.to_ne_bytes());
    }

    /// Sets the legacy `len` field.
    #[inline]
    pub fn set_legacy_len(&mut self, len: u16) {
        self.0[field::LEGACY_LEN].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sets the legacy `flags` field.
    #[inline]
    pub fn set_legacy_flags(&mut self, flags: u16) {
        self.0[field::LEGACY_FLAGS].copy_from_slice(&flags.to_ne_bytes());
    }

    /// Sets the peer id.
    #[inline]
    pub fn set_peerid(&mut self, peerid: u32) {
        self.0[field::PEERID].copy_from_slice(&peerid.to_ne_bytes());
    }

    /// Sets the pid field (the unsigned wire value; C's `-1` is `u32::MAX`).
    #[inline]
    pub fn set_pid(&mut self, pid: u32) {
        self.0[field::PID].copy_from_slice(&pid.to_ne_bytes());
    }

    /// Writes the total length (header included) as `dialect` stores it, keeping
    /// the descriptor flag (and, for legacy, the other flag bits) as they are.
    ///
    /// [`FrameError::TooShort`] below 16, [`FrameError::TooLong`] above what
    /// `dialect` can express; the header is unchanged on error.
    ///
    /// ```
    /// use imsg_codec::{Dialect, RawHeader};
    /// use zerocopy::FromZeros;
    /// let mut raw = RawHeader::new_zeroed();
    /// raw.set_has_fd(Dialect::Current, true);
    /// raw.set_total_len(Dialect::Current, 70000).unwrap();
    /// assert_eq!(raw.current_word(), 0x8000_0000 | 70000);
    /// assert!(raw.set_total_len(Dialect::Legacy, 70000).is_err());
    /// ```
    pub fn set_total_len(&mut self, dialect: Dialect, len: usize) -> Result<(), FrameError> {
        if len < HEADER_SIZE {
            return Err(FrameError::TooShort { len });
        }
        let max = dialect.max_frame_len();
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        self.set_len_unchecked(dialect, len);
        Ok(())
    }

    /// [`set_total_len`](RawHeader::set_total_len) for a length already known to
    /// fit `dialect` (16 up to `dialect.max_frame_len()`).
    #[inline(always)]
    fn set_len_unchecked(&mut self, dialect: Dialect, len: usize) {
        match dialect {
            Dialect::Legacy => self.set_legacy_len(len as u16),
            Dialect::Current => {
                let mark = self.current_word() & CURRENT_FD_MARK;
                self.set_current_word(mark | len as u32);
            }
        }
    }

    /// Sets or clears the descriptor flag as `dialect` stores it, keeping the length.
    #[inline]
    pub fn set_has_fd(&mut self, dialect: Dialect, has_fd: bool) {
        match dialect {
            Dialect::Legacy => {
                let flags = self.legacy_flags() & !LEGACY_HASFD;
                self.set_legacy_flags(flags | u16::from(has_fd));
            }
            Dialect::Current => {
                let mark = if has_fd { CURRENT_FD_MARK } else { 0 };
                self.set_current_word((self.current_word() & !CURRENT_FD_MARK) | mark);
            }
        }
    }

    /// Writes every field of `header` in `dialect`, its length already known to fit
    /// `dialect` (16 up to `dialect.max_frame_len()`); legacy flag bits other than
    /// the descriptor flag are cleared.
    #[inline(always)]
    pub(crate) fn write_fitting(&mut self, header: &Header, dialect: Dialect) {
        self.set_msg_type(header.ty);
        match dialect {
            Dialect::Legacy => {
                self.set_legacy_len(header.len as u16);
                self.set_legacy_flags(u16::from(header.has_fd));
            }
            Dialect::Current => {
                let mark = if header.has_fd { CURRENT_FD_MARK } else { 0 };
                self.set_current_word(header.len | mark);
            }
        }
        self.set_peerid(header.peerid);
        self.set_pid(header.pid);
    }

    /// The 16 bytes.
    #[inline]
    pub fn as_array(&self) -> &[u8; HEADER_SIZE] {
        &self.0
    }
}

impl fmt::Debug for RawHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawHeader")
            .field("type", &self.msg_type())
            .field("len_flags", &format_args!("{:#010x}", self.current_word()))
            .field("peerid", &self.peerid())
            .field("pid", &self.pid())
            .finish()
    }
}

/// What a header means, independent of the dialect that carried it.
///
/// ```
/// use imsg_codec::{Dialect, Framing, Header, Status};
/// let hdr = Header::new(100, 8, u32::MAX).with_fd(true).with_len(20);
/// let mut bytes = [0u8; 16];
/// hdr.emit(Dialect::Legacy, &mut bytes).unwrap();
/// let legacy = Framing::standard(Dialect::Legacy);
/// assert_eq!(legacy.parse_header(&bytes), Ok(Status::Complete(hdr)));
/// // The same header in the current dialect differs in bytes 4..8 only.
/// let mut current = [0u8; 16];
/// hdr.emit(Dialect::Current, &mut current).unwrap();
/// assert_eq!(bytes[..4], current[..4]);
/// assert_eq!(bytes[8..], current[8..]);
/// assert_ne!(bytes[4..8], current[4..8]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Message type, chosen by the application.
    pub ty: u32,
    /// Total frame length, header included. Encoders fill it in themselves.
    pub len: u32,
    /// Whether a descriptor travels with the frame. On receipt this is the flag
    /// as the sender set it, whether or not a descriptor actually arrived.
    pub has_fd: bool,
    /// Free for the application (tmux: protocol version; proc.c: routing ids).
    pub peerid: u32,
    /// The sender's pid as the wire carries it (tmux sends `u32::MAX`, i.e. -1).
    pub pid: u32,
}

impl Header {
    /// A header with no descriptor and a length left for the encoder to fill in.
    pub const fn new(ty: u32, peerid: u32, pid: u32) -> Header {
        Header {
            ty,
            len: HEADER_SIZE as u32,
            has_fd: false,
            peerid,
            pid,
        }
    }

    /// Sets whether a descriptor travels with the frame.
    pub const fn with_fd(mut self, has_fd: bool) -> Header {
        self.has_fd = has_fd;
        self
    }

    /// Sets the total length (header included).
    pub const fn with_len(mut self, len: u32) -> Header {
        self.len = len;
        self
    }

    /// Payload length implied by [`Header::len`].
    pub const fn payload_len(&self) -> usize {
        (self.len as usize).saturating_sub(HEADER_SIZE)
    }

    /// The meaning of `raw` in `dialect`, without any check.
    #[inline]
    pub fn from_raw(raw: &RawHeader, dialect: Dialect) -> Header {
        Header {
            ty: raw.msg_type(),
            len: raw.total_len(dialect) as u32,
            has_fd: raw.has_fd(dialect),
            peerid: raw.peerid(),
            pid: raw.pid(),
        }
    }

    /// Writes this header into `out` in `dialect`.
    ///
    /// [`FrameError::TooShort`] or [`FrameError::TooLong`] if `len` cannot be
    /// written in `dialect`; `out` is then unchanged.
    #[inline]
    pub fn emit(&self, dialect: Dialect, out: &mut [u8; HEADER_SIZE]) -> Result<(), FrameError> {
        let len = self.len as usize;
        if len < HEADER_SIZE {
            return Err(FrameError::TooShort { len });
        }
        let max = dialect.max_frame_len();
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        RawHeader::from_array_mut(out).write_fitting(self, dialect);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_refuses_unrepresentable_lengths() {
        let h = Header::new(1, 0, 0).with_len(70000);
        let mut out = [0u8; 16];
        assert!(matches!(
            h.emit(Dialect::Legacy, &mut out),
            Err(FrameError::TooLong { .. })
        ));
        assert!(h.emit(Dialect::Current, &mut out).is_ok());
        assert_eq!(
            Header::new(1, 0, 0)
                .with_len(3)
                .emit(Dialect::Current, &mut out),
            Err(FrameError::TooShort { len: 3 })
        );
    }

    #[test]
    fn setters_touch_one_field_each() {
        let mut raw = RawHeader([0xaa; 16]);
        raw.set_msg_type(1);
        raw.set_peerid(2);
        raw.set_pid(3);
        raw.set_legacy_len(20);
        assert_eq!(raw.legacy_flags(), 0xaaaa);
        raw.set_has_fd(Dialect::Legacy, false);
        assert_eq!(raw.legacy_flags(), 0xaaaa & !LEGACY_HASFD);
        raw.set_total_len(Dialect::Current, 40).unwrap();
        raw.set_has_fd(Dialect::Current, true);
        assert_eq!(raw.current_word(), CURRENT_FD_MARK | 40);
        assert_eq!((raw.msg_type(), raw.peerid(), raw.pid()), (1, 2, 3));
        let h = Header::from_raw(&raw, Dialect::Current);
        let mut again = [0u8; 16];
        h.emit(Dialect::Current, &mut again).unwrap();
        assert_eq!(&again, raw.as_array());
    }
}
