//! The 16-byte imsg header: a zero-copy view over the bytes ([`RawHeader`]), the
//! meaning of those bytes ([`Header`]) and the [`Dialect`] that decides how bytes
//! 4..8 are read.

use core::fmt;

use zerocopy::byteorder::{NativeEndian, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::Error;

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
#[repr(u8)]
pub enum Dialect {
    /// `len: u16` then `flags: u16` (bit 0 = a descriptor travels with the frame).
    /// OpenBSD up to 7.6, tmux up to 3.5a and Debian bookworm's portable daemons.
    #[default]
    Legacy = 0,
    /// `len: u32` whose top bit marks a descriptor; the length is the other 31 bits.
    /// OpenBSD 7.7 and later, tmux 3.6 and later.
    Current = 1,
}

impl Dialect {
    /// The largest total frame length this dialect can express.
    #[inline]
    pub const fn max_frame_len(self) -> usize {
        // A table, not a `match`: one load where the match compiles to branches
        // on the hot path of every encoder.
        const MAX: [usize; 2] = [u16::MAX as usize, (CURRENT_FD_MARK - 1) as usize];
        MAX[self as usize]
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

impl core::str::FromStr for Dialect {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "legacy" => Ok(Dialect::Legacy),
            "current" => Ok(Dialect::Current),
            _ => Err(Error::UnknownDialect),
        }
    }
}

/// The header exactly as it lies on the wire, host byte order, no padding.
///
/// Bytes 4..8 (`len_flags`) mean different things in each [`Dialect`]; read them
/// through [`RawHeader::total_len`] and [`RawHeader::has_fd`].
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
#[repr(C)]
pub struct RawHeader {
    ty: U32<NativeEndian>,
    len_flags: [u8; 4],
    peerid: U32<NativeEndian>,
    pid: U32<NativeEndian>,
}

impl RawHeader {
    /// The message type (bytes 0..4).
    pub fn msg_type(&self) -> u32 {
        self.ty.get()
    }

    /// The peer id (bytes 8..12).
    pub fn peerid(&self) -> u32 {
        self.peerid.get()
    }

    /// The pid field (bytes 12..16), as the unsigned wire value.
    pub fn pid(&self) -> u32 {
        self.pid.get()
    }

    /// The raw legacy `len` field.
    pub fn legacy_len(&self) -> u16 {
        U16::<NativeEndian>::from_bytes([self.len_flags[0], self.len_flags[1]]).get()
    }

    /// The raw legacy `flags` field.
    pub fn legacy_flags(&self) -> u16 {
        U16::<NativeEndian>::from_bytes([self.len_flags[2], self.len_flags[3]]).get()
    }

    /// The raw current `len` field, descriptor mark included.
    pub fn current_word(&self) -> u32 {
        u32::from_ne_bytes(self.len_flags)
    }

    /// The frame's total length (header included) as `dialect` reads it.
    pub fn total_len(&self, dialect: Dialect) -> usize {
        match dialect {
            Dialect::Legacy => self.legacy_len() as usize,
            Dialect::Current => (self.current_word() & !CURRENT_FD_MARK) as usize,
        }
    }

    /// Whether `dialect` reads this header as carrying a descriptor.
    pub fn has_fd(&self, dialect: Dialect) -> bool {
        match dialect {
            Dialect::Legacy => self.legacy_flags() & LEGACY_HASFD != 0,
            Dialect::Current => self.current_word() & CURRENT_FD_MARK != 0,
        }
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, ty: u32) {
        self.ty.set(ty);
    }

    /// Sets the peer id.
    pub fn set_peerid(&mut self, peerid: u32) {
        self.peerid.set(peerid);
    }

    /// Sets the pid field (the unsigned wire value; C's `-1` is `u32::MAX`).
    pub fn set_pid(&mut self, pid: u32) {
        self.pid.set(pid);
    }

    /// Writes the total length (header included) as `dialect` stores it, keeping
    /// the descriptor flag (and, for legacy, the other flag bits) as they are.
    ///
    /// [`Error::TooShort`] below 16, [`Error::TooLong`] above what `dialect` can
    /// express; the header is unchanged on error.
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
    pub fn set_total_len(&mut self, dialect: Dialect, len: usize) -> Result<(), Error> {
        if len < HEADER_SIZE {
            return Err(Error::TooShort { len });
        }
        let max = dialect.max_frame_len();
        if len > max {
            return Err(Error::TooLong { len, max });
        }
        match dialect {
            Dialect::Legacy => self.len_flags[..2].copy_from_slice(&(len as u16).to_ne_bytes()),
            Dialect::Current => {
                let word = (self.current_word() & CURRENT_FD_MARK) | len as u32;
                self.len_flags = word.to_ne_bytes();
            }
        }
        Ok(())
    }

    /// Sets or clears the descriptor flag as `dialect` stores it, keeping the length.
    pub fn set_has_fd(&mut self, dialect: Dialect, has_fd: bool) {
        match dialect {
            Dialect::Legacy => {
                let flags = (self.legacy_flags() & !LEGACY_HASFD) | u16::from(has_fd);
                self.len_flags[2..].copy_from_slice(&flags.to_ne_bytes());
            }
            Dialect::Current => {
                let word = self.current_word() & !CURRENT_FD_MARK;
                let mark = if has_fd { CURRENT_FD_MARK } else { 0 };
                self.len_flags = (word | mark).to_ne_bytes();
            }
        }
    }

    /// Checks this header as C's reader does, with a limit on the total length
    /// (header included).
    ///
    /// Returns the total length. Errors: [`Error::TooShort`] below 16 bytes,
    /// [`Error::TooLong`] above `max`, and [`Error::DialectMismatch`] when the frame
    /// is wrong (or, for legacy, carries flag bits no legacy writer sets) in
    /// `dialect` but is a valid descriptor-carrying frame of the other dialect.
    /// Legacy flag bits other than bit 0 are otherwise ignored, as C does.
    ///
    /// Limitation: a legacy descriptor frame read as current has a length of at
    /// least 65552, so a *current* channel whose limit is 65552 or more cannot tell
    /// it from a long current frame: no mismatch is reported and the frame is read
    /// (wrongly) as a long current one. Keep current limits below 65552 where a
    /// legacy peer is possible.
    ///
    /// ```
    /// use imsg_codec::{Dialect, Error, RawHeader, LEGACY_HASFD};
    /// use zerocopy::FromBytes;
    /// let mut b = [0u8; 16];
    /// b[4..6].copy_from_slice(&20u16.to_ne_bytes());
    /// b[6..8].copy_from_slice(&LEGACY_HASFD.to_ne_bytes());
    /// let raw = RawHeader::ref_from_bytes(&b[..]).unwrap();
    /// assert!(matches!(raw.check(Dialect::Current, 16384), Err(Error::DialectMismatch { .. })));
    /// if cfg!(target_endian = "little") {
    ///     assert_eq!(raw.check(Dialect::Current, 1 << 20), Ok(65556)); // undetectable
    /// }
    /// ```
    pub fn check(&self, dialect: Dialect, max: usize) -> Result<usize, Error> {
        let max = max.min(dialect.max_frame_len());
        let len = self.total_len(dialect);
        let suspicious = match dialect {
            Dialect::Legacy => self.legacy_flags() & !LEGACY_HASFD != 0,
            Dialect::Current => false,
        };
        let valid = (HEADER_SIZE..=max).contains(&len);
        if (!valid || suspicious) && self.looks_like(dialect.other(), max) {
            return Err(Error::DialectMismatch {
                expected: dialect,
                peer: dialect.other(),
            });
        }
        if len < HEADER_SIZE {
            Err(Error::TooShort { len })
        } else if len > max {
            Err(Error::TooLong { len, max })
        } else {
            Ok(len)
        }
    }

    /// True if `other` would read this header as a well-formed frame that carries a
    /// descriptor: the only frames whose dialects disagree on a little-endian host.
    fn looks_like(&self, other: Dialect, max: usize) -> bool {
        let len = self.total_len(other);
        let fd_only = match other {
            Dialect::Legacy => self.legacy_flags() == LEGACY_HASFD,
            Dialect::Current => self.has_fd(Dialect::Current),
        };
        fd_only && (HEADER_SIZE..=max.max(MAX_IMSGSIZE)).contains(&len)
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
/// use imsg_codec::{Dialect, Header};
/// let hdr = Header::new(100, 8, u32::MAX).with_fd(true).with_len(20);
/// let mut bytes = [0u8; 16];
/// hdr.emit(Dialect::Legacy, &mut bytes).unwrap();
/// assert_eq!(Header::parse(&bytes, Dialect::Legacy, 16384).unwrap(), hdr);
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

    /// Reads and checks a header from the first 16 bytes of `bytes`
    /// (see [`RawHeader::check`] for the errors).
    pub fn parse(bytes: &[u8], dialect: Dialect, max: usize) -> Result<Header, Error> {
        let raw = raw_prefix(bytes)?;
        let len = checked_len(zerocopy::transmute_ref!(raw), dialect, max)?;
        Ok(Header::from_raw(raw, dialect, len as u32))
    }

    /// The meaning of `raw` in `dialect`, without any check.
    pub fn from_raw(raw: &RawHeader, dialect: Dialect, len: u32) -> Header {
        Header {
            ty: raw.msg_type(),
            len,
            has_fd: raw.has_fd(dialect),
            peerid: raw.peerid(),
            pid: raw.pid(),
        }
    }

    /// The wire form of this header in `dialect`.
    ///
    /// Fails with [`Error::TooShort`] or [`Error::TooLong`] if `len` cannot be
    /// written in `dialect`.
    pub fn to_raw(&self, dialect: Dialect) -> Result<RawHeader, Error> {
        Ok(RawHeader {
            ty: self.ty.into(),
            len_flags: self.len_flags(dialect)?,
            peerid: self.peerid.into(),
            pid: self.pid.into(),
        })
    }

    /// Bytes 4..8 in `dialect`, if `len` can be written there.
    #[inline]
    fn len_flags(&self, dialect: Dialect) -> Result<[u8; 4], Error> {
        let len = self.len as usize;
        if len < HEADER_SIZE {
            return Err(Error::TooShort { len });
        }
        if len > dialect.max_frame_len() {
            return Err(Error::TooLong {
                len,
                max: dialect.max_frame_len(),
            });
        }
        Ok(self.len_flags_unchecked(dialect))
    }

    /// Bytes 4..8 in `dialect`; `len` must already be known to fit (16 up to
    /// `dialect.max_frame_len()`), else the length bits are garbage.
    #[inline(always)]
    fn len_flags_unchecked(&self, dialect: Dialect) -> [u8; 4] {
        match dialect {
            Dialect::Legacy => {
                let flags = if self.has_fd { LEGACY_HASFD } else { 0 };
                zerocopy::transmute!([(self.len as u16).to_ne_bytes(), flags.to_ne_bytes()])
            }
            Dialect::Current => {
                let mark = if self.has_fd { CURRENT_FD_MARK } else { 0 };
                (self.len | mark).to_ne_bytes()
            }
        }
    }

    /// The 16 wire bytes of this header in `dialect`, for encoders that have
    /// already checked that `len` fits the dialect (16 up to
    /// `dialect.max_frame_len()`). Built as four whole words: four plain stores.
    #[inline(always)]
    pub(crate) fn wire_bytes_unchecked(&self, dialect: Dialect) -> [u8; HEADER_SIZE] {
        zerocopy::transmute!([
            self.ty.to_ne_bytes(),
            self.len_flags_unchecked(dialect),
            self.peerid.to_ne_bytes(),
            self.pid.to_ne_bytes(),
        ])
    }

    /// Writes this header into the first 16 bytes of `out`.
    ///
    /// Same errors as [`Header::to_raw`], then [`Error::NoSpace`] if `out` is
    /// shorter than a header; `out` is unchanged on error.
    #[inline]
    pub fn emit(&self, dialect: Dialect, out: &mut [u8]) -> Result<(), Error> {
        let len_flags = self.len_flags(dialect)?;
        let Some(dst) = out.get_mut(..HEADER_SIZE) else {
            return Err(Error::NoSpace {
                needed: HEADER_SIZE,
                available: out.len(),
            });
        };
        // Field by field, straight into place: building a `RawHeader` first and
        // copying it costs a store-forwarding stall per frame (seen in the bench).
        dst[0..4].copy_from_slice(&self.ty.to_ne_bytes());
        dst[4..8].copy_from_slice(&len_flags);
        dst[8..12].copy_from_slice(&self.peerid.to_ne_bytes());
        dst[12..16].copy_from_slice(&self.pid.to_ne_bytes());
        Ok(())
    }
}

/// The header view over exactly 16 bytes: a compile-time checked cast, no
/// runtime layout work.
#[inline(always)]
pub(crate) fn raw_ref(head: &[u8; HEADER_SIZE]) -> &RawHeader {
    zerocopy::transmute_ref!(head)
}

/// The header view at the start of `bytes`, or [`Error::Truncated`] if there are
/// fewer than 16 bytes.
#[inline]
pub(crate) fn raw_prefix(bytes: &[u8]) -> Result<&RawHeader, Error> {
    match bytes.first_chunk::<HEADER_SIZE>() {
        Some(head) => Ok(raw_ref(head)),
        None => Err(Error::Truncated {
            needed: HEADER_SIZE - bytes.len(),
        }),
    }
}

/// The four 32-bit header words (type, length/flags, peer id, pid) in host order.
#[inline(always)]
pub(crate) fn words(head: &[u8; HEADER_SIZE]) -> [u32; 4] {
    let [a, b, c, d]: [[u8; 4]; 4] = zerocopy::transmute!(*head);
    [
        u32::from_ne_bytes(a),
        u32::from_ne_bytes(b),
        u32::from_ne_bytes(c),
        u32::from_ne_bytes(d),
    ]
}

/// The legacy `len` and `flags` fields (bytes 4..6 and 6..8) in host order.
#[inline(always)]
fn legacy_fields(head: &[u8; HEADER_SIZE]) -> (u16, u16) {
    let halves: [[u8; 2]; 8] = zerocopy::transmute!(*head);
    (u16::from_ne_bytes(halves[2]), u16::from_ne_bytes(halves[3]))
}

/// Bytes 4..8 of `head` read as `dialect`'s length field (the descriptor mark or
/// flag masked out), without any check.
#[inline(always)]
pub(crate) fn wire_len(head: &[u8; HEADER_SIZE], dialect: Dialect) -> usize {
    match dialect {
        Dialect::Legacy => legacy_fields(head).0 as usize,
        Dialect::Current => (words(head)[1] & !CURRENT_FD_MARK) as usize,
    }
}

/// [`RawHeader::check`] on a header's bytes: the common case (a valid length
/// and, for legacy, no flag bit but `IMSGF_HASFD`) is decided here inline from
/// the one length word; anything else takes the full check, which returns the
/// same `Ok(len)` for every header accepted here and the typed error otherwise.
#[inline(always)]
pub(crate) fn checked_len(
    head: &[u8; HEADER_SIZE],
    dialect: Dialect,
    max: usize,
) -> Result<usize, Error> {
    let len = wire_len(head, dialect);
    let plain = match dialect {
        Dialect::Legacy => legacy_fields(head).1 & !LEGACY_HASFD == 0,
        Dialect::Current => true,
    };
    if plain && len >= HEADER_SIZE && len <= max.min(dialect.max_frame_len()) {
        Ok(len)
    } else {
        slow_check(head, dialect, max)
    }
}

#[cold]
#[inline(never)]
fn slow_check(head: &[u8; HEADER_SIZE], dialect: Dialect, max: usize) -> Result<usize, Error> {
    raw_ref(head).check(dialect, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn raw(ty: u32, word: u32, peerid: u32, pid: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&ty.to_ne_bytes());
        b[4..8].copy_from_slice(&word.to_ne_bytes());
        b[8..12].copy_from_slice(&peerid.to_ne_bytes());
        b[12..16].copy_from_slice(&pid.to_ne_bytes());
        b
    }

    fn legacy(ty: u32, len: u16, flags: u16, peerid: u32, pid: u32) -> [u8; 16] {
        let mut b = raw(ty, 0, peerid, pid);
        b[4..6].copy_from_slice(&len.to_ne_bytes());
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        b
    }

    #[test]
    fn length_bounds_case_a() {
        for d in [Dialect::Legacy, Dialect::Current] {
            let h = |len: u32| Header::parse(&raw(1, len, 0, 0), d, 100);
            assert_eq!(h(15), Err(Error::TooShort { len: 15 }));
            assert_eq!(h(0), Err(Error::TooShort { len: 0 }));
            assert_eq!(h(16).unwrap().payload_len(), 0);
            assert_eq!(h(100).unwrap().len, 100);
            assert_eq!(h(101), Err(Error::TooLong { len: 101, max: 100 }));
        }
    }

    #[test]
    fn legacy_ignores_unknown_flags_like_c() {
        let b = legacy(3, 20, 0x0002 | LEGACY_HASFD, 0, 0);
        let h = Header::parse(&b, Dialect::Legacy, MAX_IMSGSIZE).unwrap();
        assert!(h.has_fd);
        assert_eq!(h.len, 20);
    }

    #[test]
    fn current_masks_mark_before_range_check() {
        let b = raw(3, 16 | CURRENT_FD_MARK, 0, 0);
        let h = Header::parse(&b, Dialect::Current, MAX_IMSGSIZE).unwrap();
        assert!(h.has_fd);
        assert_eq!(h.len, 16);
    }

    #[test]
    fn detects_legacy_peer_case_d() {
        // A legacy frame with HASFD read as current.
        let b = legacy(104, 16, LEGACY_HASFD, 8, u32::MAX);
        let err = Header::parse(&b, Dialect::Current, MAX_IMSGSIZE).unwrap_err();
        assert_eq!(
            err,
            Error::DialectMismatch {
                expected: Dialect::Current,
                peer: Dialect::Legacy
            }
        );
        if cfg!(target_endian = "little") {
            assert!(
                RawHeader::ref_from_bytes(&b[..])
                    .unwrap()
                    .total_len(Dialect::Current)
                    >= 65552
            );
        }
    }

    #[test]
    fn detects_current_peer_case_d() {
        let b = raw(104, 16 | CURRENT_FD_MARK, 8, 1);
        let err = Header::parse(&b, Dialect::Legacy, MAX_IMSGSIZE).unwrap_err();
        assert_eq!(
            err,
            Error::DialectMismatch {
                expected: Dialect::Legacy,
                peer: Dialect::Current
            }
        );
        if cfg!(target_endian = "little") {
            assert_eq!(
                RawHeader::ref_from_bytes(&b[..]).unwrap().legacy_flags(),
                0x8000
            );
        }
    }

    #[test]
    fn emit_refuses_unrepresentable_lengths() {
        let h = Header::new(1, 0, 0).with_len(70000);
        let mut out = [0u8; 16];
        assert!(matches!(
            h.emit(Dialect::Legacy, &mut out),
            Err(Error::TooLong { .. })
        ));
        assert!(h.emit(Dialect::Current, &mut out).is_ok());
        assert_eq!(
            Header::new(1, 0, 0)
                .with_len(3)
                .emit(Dialect::Current, &mut out),
            Err(Error::TooShort { len: 3 })
        );
        assert!(matches!(
            Header::new(1, 0, 0).emit(Dialect::Current, &mut out[..15]),
            Err(Error::NoSpace { .. })
        ));
    }

    #[test]
    fn short_input_is_truncated() {
        assert_eq!(
            Header::parse(&[0u8; 10], Dialect::Legacy, MAX_IMSGSIZE),
            Err(Error::Truncated { needed: 6 })
        );
    }

    #[test]
    fn fast_check_agrees_at_every_boundary() {
        let maxes = [
            0,
            15,
            16,
            17,
            100,
            16384,
            65535,
            65536,
            65552,
            1 << 20,
            usize::MAX,
        ];
        let mut lens = arrayvec::ArrayVec::<u32, 64>::new();
        for m in maxes.iter().chain(&[0x7fff_ffff, 0xffff_ffff]) {
            let m = (*m).min(u32::MAX as usize) as u32;
            lens.extend([m.wrapping_sub(1), m, m.wrapping_add(1)]);
        }
        for &max in &maxes {
            for &len in &lens {
                for word in [len, len | CURRENT_FD_MARK]
                    .into_iter()
                    .chain((0u16..4).map(|f| u32::from(len as u16) | u32::from(f) << 16))
                    .chain((0u16..4).map(|f| u32::from(len as u16) << 16 | u32::from(f)))
                {
                    let head = raw(1, word, 2, 3);
                    let r = RawHeader::ref_from_bytes(&head[..]).unwrap();
                    for d in [Dialect::Legacy, Dialect::Current] {
                        assert_eq!(
                            checked_len(&head, d, max),
                            r.check(d, max),
                            "{word:#x} {max}"
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// The inline fast check answers exactly as the full check does, for any
        /// 16 bytes and any limit; and the unchecked encoder writes what the
        /// checked one does.
        #[test]
        fn fast_paths_agree_with_the_full_ones(
            mut head: [u8; 16],
            // Bytes 4..8 mostly near the boundaries: small lengths, each flag.
            word in proptest::prop_oneof![
                proptest::prelude::any::<u32>(),
                0u32..70000,
                (0u32..70000).prop_map(|l| l | CURRENT_FD_MARK),
                (0u16..=u16::MAX, 0u16..4).prop_map(|(l, f)| {
                    u32::from_ne_bytes([l.to_ne_bytes(), f.to_ne_bytes()].concat().try_into().unwrap())
                }),
            ],
            max in proptest::prop_oneof![0usize..70000, proptest::prelude::any::<usize>()],
            ty: u32, len in 16u32..0x8000_0000, has_fd: bool, peerid: u32, pid: u32,
        ) {
            head[4..8].copy_from_slice(&word.to_ne_bytes());
            let raw = RawHeader::ref_from_bytes(&head[..]).unwrap();
            for d in [Dialect::Legacy, Dialect::Current] {
                proptest::prop_assert_eq!(checked_len(&head, d, max), raw.check(d, max));
                proptest::prop_assert_eq!(wire_len(&head, d), raw.total_len(d));
                let h = Header { ty, len: len.min(d.max_frame_len() as u32), has_fd, peerid, pid };
                let mut bytes = [0u8; 16];
                h.emit(d, &mut bytes).unwrap();
                proptest::prop_assert_eq!(h.wire_bytes_unchecked(d), bytes);
            }
        }
    }

    #[test]
    fn dialect_names() {
        assert_eq!("legacy".parse::<Dialect>(), Ok(Dialect::Legacy));
        assert_eq!("current".parse::<Dialect>(), Ok(Dialect::Current));
        assert!("x".parse::<Dialect>().is_err());
    }
}
