//! [`Framing`]: a dialect and a frame limit, checked once, that every splitter,
//! parser and encoder of a channel uses.

use crate::header::RawHeader;
use crate::MAX_IMSGSIZE;
use crate::{Dialect, FrameError, Header, LimitError, Status, HEADER_SIZE, LEGACY_HASFD};

/// How a channel frames its stream: the wire [`Dialect`] and the limit on a
/// frame's **total** size (header included, as C's `MAX_IMSGSIZE`).
///
/// The limit is checked once, when the value is made: `16 <= max <=
/// dialect.max_frame_len()`. The splitter ([`split`](Framing::split),
/// [`frames`](Framing::frames)), the header parser
/// ([`parse_header`](Framing::parse_header)) and the encoders
/// ([`emit`](Framing::emit), [`emitv`](Framing::emitv),
/// [`builder`](Framing::builder)) are its methods and take no limits of their own.
///
/// ```
/// use imsg_codec::{Dialect, Framing, Header, Status};
/// let framing = Framing::new(Dialect::Current, 1 << 20)?;
/// let mut wire = heapless::Vec::<u8, 64>::new();
/// framing.emit(&mut wire, Header::new(200, 8, u32::MAX), b"hello")?;
/// let Status::Complete((frame, used)) = framing.split(&wire)? else { unreachable!() };
/// assert_eq!((frame.msg_type(), frame.payload(), used), (200, &b"hello"[..], 21));
/// assert!(Framing::new(Dialect::Legacy, 1 << 20).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Framing {
    dialect: Dialect,
    max: usize,
}

impl Default for Framing {
    /// The legacy dialect with C's default limit of 16384 bytes.
    fn default() -> Framing {
        Framing::standard(Dialect::Legacy)
    }
}

impl Framing {
    /// Framing in `dialect` with frames of at most `max` bytes in total;
    /// [`LimitError`] unless `16 <= max <= dialect.max_frame_len()`.
    pub const fn new(dialect: Dialect, max: usize) -> Result<Framing, LimitError> {
        if max < HEADER_SIZE || max > dialect.max_frame_len() {
            return Err(LimitError { max, dialect });
        }
        Ok(Framing { dialect, max })
    }

    /// Framing in `dialect` with C's default limit, 16384 bytes ([`MAX_IMSGSIZE`]).
    pub const fn standard(dialect: Dialect) -> Framing {
        Framing {
            dialect,
            max: MAX_IMSGSIZE,
        }
    }

    /// The same limit in the other dialect, if it fits there.
    pub const fn with_dialect(self, dialect: Dialect) -> Result<Framing, LimitError> {
        Framing::new(dialect, self.max)
    }

    /// The wire dialect.
    #[inline]
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The limit on a frame's total size, header included.
    #[inline]
    pub const fn max_frame(&self) -> usize {
        self.max
    }

    /// Checks a header as C's reader does and returns the frame's total length.
    ///
    /// The length must lie in `16..=max` ([`FrameError::TooShort`],
    /// [`FrameError::TooLong`]). A header invalid in this dialect (or, for legacy,
    /// with flag bits other than `IMSGF_HASFD`) that the other dialect reads as a
    /// well-formed frame carrying a descriptor is [`FrameError::DialectMismatch`].
    /// Legacy flag bits other than bit 0 are otherwise ignored, as C does.
    ///
    /// Limitation: a legacy descriptor frame read as current has a length of at
    /// least 65552, so a *current* framing whose limit is 65552 or more cannot tell
    /// it from a long current frame: no mismatch is reported and the frame is read
    /// (wrongly) as a long current one. Keep current limits below 65552 where a
    /// legacy peer is possible.
    ///
    /// ```
    /// use imsg_codec::{Dialect, FrameError, Framing, RawHeader, LEGACY_HASFD};
    /// let mut b = [0u8; 16];
    /// b[4..6].copy_from_slice(&20u16.to_ne_bytes());
    /// b[6..8].copy_from_slice(&LEGACY_HASFD.to_ne_bytes());
    /// let raw = RawHeader::from_array(&b);
    /// let current = Framing::standard(Dialect::Current);
    /// assert!(matches!(current.check_header(raw), Err(FrameError::DialectMismatch { .. })));
    /// if cfg!(target_endian = "little") {
    ///     let wide = Framing::new(Dialect::Current, 1 << 20).unwrap();
    ///     assert_eq!(wide.check_header(raw), Ok(65556)); // undetectable
    /// }
    /// ```
    #[inline(always)]
    pub fn check_header(&self, raw: &RawHeader) -> Result<usize, FrameError> {
        // The common case (a valid length and, for legacy, no flag bit but
        // IMSGF_HASFD) is decided inline from the one length field.
        let len = raw.total_len(self.dialect);
        let plain = match self.dialect {
            Dialect::Legacy => raw.legacy_flags() & !LEGACY_HASFD == 0,
            Dialect::Current => true,
        };
        if plain && len >= HEADER_SIZE && len <= self.max {
            Ok(len)
        } else {
            self.check_unusual(raw)
        }
    }

    #[cold]
    #[inline(never)]
    fn check_unusual(&self, raw: &RawHeader) -> Result<usize, FrameError> {
        let (dialect, max) = (self.dialect, self.max);
        let len = raw.total_len(dialect);
        let suspicious = match dialect {
            Dialect::Legacy => raw.legacy_flags() & !LEGACY_HASFD != 0,
            Dialect::Current => false,
        };
        let valid = (HEADER_SIZE..=max).contains(&len);
        if (!valid || suspicious) && looks_like(raw, dialect.other(), max) {
            return Err(FrameError::DialectMismatch {
                expected: dialect,
                peer: dialect.other(),
            });
        }
        if len < HEADER_SIZE {
            Err(FrameError::TooShort { len })
        } else if len > max {
            Err(FrameError::TooLong { len, max })
        } else {
            Ok(len)
        }
    }

    /// Reads and checks the header at the start of `bytes` (see
    /// [`check_header`](Framing::check_header)); [`Status::Partial`] if fewer than
    /// 16 bytes are given.
    pub fn parse_header(&self, bytes: &[u8]) -> Result<Status<Header>, FrameError> {
        let Some(head) = bytes.first_chunk::<HEADER_SIZE>() else {
            return Ok(Status::Partial {
                needed: HEADER_SIZE - bytes.len(),
            });
        };
        let raw = RawHeader::from_array(head);
        self.check_header(raw)?;
        Ok(Status::Complete(Header::from_raw(raw, self.dialect)))
    }
}

/// True if `other` would read `raw` as a well-formed frame that carries a
/// descriptor: the only frames whose dialects disagree on a little-endian host.
fn looks_like(raw: &RawHeader, other: Dialect, max: usize) -> bool {
    let len = raw.total_len(other);
    let fd_only = match other {
        Dialect::Legacy => raw.legacy_flags() == LEGACY_HASFD,
        Dialect::Current => raw.has_fd(Dialect::Current),
    };
    fd_only && (HEADER_SIZE..=max.max(MAX_IMSGSIZE)).contains(&len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CURRENT_FD_MARK;

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

    fn parse(b: &[u8; 16], f: Framing) -> Result<Header, FrameError> {
        f.parse_header(b).map(|s| s.complete().unwrap())
    }

    #[test]
    fn limits_are_checked_once_at_construction() {
        assert!(Framing::new(Dialect::Legacy, 15).is_err());
        assert!(Framing::new(Dialect::Legacy, 16).is_ok());
        assert!(Framing::new(Dialect::Legacy, 65535).is_ok());
        assert_eq!(
            Framing::new(Dialect::Legacy, 65536),
            Err(LimitError {
                max: 65536,
                dialect: Dialect::Legacy
            })
        );
        assert!(Framing::new(Dialect::Current, 0x7fff_ffff).is_ok());
        assert!(Framing::new(Dialect::Current, 0x8000_0000).is_err());
        let wide = Framing::new(Dialect::Current, 100_000).unwrap();
        assert!(wide.with_dialect(Dialect::Legacy).is_err());
        assert_eq!(Framing::default().max_frame(), MAX_IMSGSIZE);
    }

    #[test]
    fn length_bounds() {
        for d in [Dialect::Legacy, Dialect::Current] {
            let f = Framing::new(d, 100).unwrap();
            let h = |len: u32| parse(&raw(1, len, 0, 0), f);
            assert_eq!(h(15), Err(FrameError::TooShort { len: 15 }));
            assert_eq!(h(0), Err(FrameError::TooShort { len: 0 }));
            assert_eq!(h(16).unwrap().payload_len(), 0);
            assert_eq!(h(100).unwrap().len, 100);
            assert_eq!(h(101), Err(FrameError::TooLong { len: 101, max: 100 }));
        }
    }

    #[test]
    fn legacy_ignores_unknown_flags_like_c() {
        let b = legacy(3, 20, 0x0002 | LEGACY_HASFD, 0, 0);
        let h = parse(&b, Framing::standard(Dialect::Legacy)).unwrap();
        assert!(h.has_fd);
        assert_eq!(h.len, 20);
    }

    #[test]
    fn current_masks_mark_before_range_check() {
        let b = raw(3, 16 | CURRENT_FD_MARK, 0, 0);
        let h = parse(&b, Framing::standard(Dialect::Current)).unwrap();
        assert!(h.has_fd);
        assert_eq!(h.len, 16);
    }

    #[test]
    fn detects_a_legacy_peer() {
        // A legacy frame with HASFD read as current.
        let b = legacy(104, 16, LEGACY_HASFD, 8, u32::MAX);
        assert_eq!(
            parse(&b, Framing::standard(Dialect::Current)),
            Err(FrameError::DialectMismatch {
                expected: Dialect::Current,
                peer: Dialect::Legacy
            })
        );
        if cfg!(target_endian = "little") {
            assert!(RawHeader::from_array(&b).total_len(Dialect::Current) >= 65552);
        }
    }

    #[test]
    fn detects_a_current_peer() {
        let b = raw(104, 16 | CURRENT_FD_MARK, 8, 1);
        assert_eq!(
            parse(&b, Framing::standard(Dialect::Legacy)),
            Err(FrameError::DialectMismatch {
                expected: Dialect::Legacy,
                peer: Dialect::Current
            })
        );
        if cfg!(target_endian = "little") {
            assert_eq!(RawHeader::from_array(&b).legacy_flags(), 0x8000);
        }
    }

    #[test]
    fn short_input_is_partial() {
        assert_eq!(
            Framing::default().parse_header(&[0u8; 10]),
            Ok(Status::Partial { needed: 6 })
        );
    }

    proptest::proptest! {
        /// The inline check answers exactly as the unusual-case check does, for
        /// any 16 bytes and any limit.
        #[test]
        fn inline_check_agrees_with_the_full_one(
            mut head: [u8; 16],
            word in proptest::prelude::any::<u32>(),
            small in 0u32..70000,
            pick in 0u8..3,
            max in 16usize..0x8000_0000,
        ) {
            let word = match pick { 0 => word, 1 => small, _ => small | CURRENT_FD_MARK };
            head[4..8].copy_from_slice(&word.to_ne_bytes());
            let raw = RawHeader::from_array(&head);
            for d in [Dialect::Legacy, Dialect::Current] {
                let f = Framing::new(d, max.min(d.max_frame_len())).unwrap();
                proptest::prop_assert_eq!(f.check_header(raw), f.check_unusual(raw));
            }
        }
    }
}
