//! Receive-side dialect detection: which [`Dialect`] a peer speaks, learnt from the
//! frames it sends.
//!
//! A frame without a descriptor has the same bytes in both dialects (on a
//! little-endian host, below 64 KiB), so it says nothing. The first frame that
//! carries a descriptor does: legacy puts its flag in bit 16 of the 32-bit word at
//! bytes 4..8 (a current reader sees a length of at least 65,552), current puts its
//! mark in bit 31 (a legacy reader sees flag bits no legacy writer sets). With a
//! limit below 65,552 bytes every header is therefore either the same in both
//! dialects or valid in exactly one.
//!
//! ```
//! use imsg_codec::detect::{detect, Detection};
//! use imsg_codec::{Dialect, Framing, Header, RawHeader, MAX_IMSGSIZE};
//! use zerocopy::FromBytes;
//! let mut wire = heapless::Vec::<u8, 32>::new();
//! Framing::standard(Dialect::Current).emit(&mut wire, Header::new(1, 0, 0), b"").unwrap();
//! let (raw, _) = RawHeader::ref_from_prefix(&wire).unwrap();
//! assert_eq!(detect(raw, MAX_IMSGSIZE), Detection::Undecided);
//!
//! wire.clear();
//! Framing::standard(Dialect::Current).emit(&mut wire, Header::new(1, 0, 0).with_fd(true), b"").unwrap();
//! let (raw, _) = RawHeader::ref_from_prefix(&wire).unwrap();
//! assert_eq!(detect(raw, MAX_IMSGSIZE), Detection::Dialect(Dialect::Current));
//! ```

use zerocopy::FromBytes;

use crate::header::{Dialect, RawHeader, HEADER_SIZE, LEGACY_HASFD};

/// What one header says about the peer's dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detection {
    /// Both dialects read this header as the same frame (no descriptor): look at
    /// the next one. Its length is the same in both, so the stream can be walked.
    Undecided,
    /// Only this dialect reads the header as a valid frame.
    Dialect(Dialect),
    /// Both dialects read it as valid but different frames: possible only with a
    /// limit of 65,552 bytes or more (a legacy descriptor frame is then also a long
    /// current frame).
    Ambiguous,
    /// Neither dialect reads it as a valid frame under the limit.
    Invalid,
}

/// The frame `header` starts, as each dialect reads it: `(total length, fd flag)`,
/// or `None` if that dialect cannot accept it under `max` (total size, header
/// included; capped at what the dialect can express).
fn reading(header: &RawHeader, dialect: Dialect, max: usize) -> Option<(usize, bool)> {
    let len = header.total_len(dialect);
    let max = max.min(dialect.max_frame_len());
    let clean = match dialect {
        Dialect::Legacy => header.legacy_flags() & !LEGACY_HASFD == 0,
        Dialect::Current => true,
    };
    (clean && (HEADER_SIZE..=max).contains(&len)).then(|| (len, header.has_fd(dialect)))
}

/// Which dialect the frame starting with `header` shows its sender speaks, under a
/// limit of `max` bytes per frame (total size, header included).
///
/// No allocation, no state: a receiver calls it on each new header until it
/// answers [`Detection::Dialect`], and reads the frames before that in either
/// dialect (they are the same).
pub fn detect(header: &RawHeader, max: usize) -> Detection {
    match (
        reading(header, Dialect::Legacy, max),
        reading(header, Dialect::Current, max),
    ) {
        (Some(legacy), Some(current)) if legacy == current => Detection::Undecided,
        (Some(_), Some(_)) => Detection::Ambiguous,
        (Some(_), None) => Detection::Dialect(Dialect::Legacy),
        (None, Some(_)) => Detection::Dialect(Dialect::Current),
        (None, None) => Detection::Invalid,
    }
}

/// Walks the complete headers at the start of `stream` until one decides the
/// dialect: the answer of the first header that is not
/// [`Undecided`](Detection::Undecided), or `Undecided` when the bytes run out first.
///
/// ```
/// use imsg_codec::detect::{detect_stream, Detection};
/// use imsg_codec::{Dialect, Framing, Header, MAX_IMSGSIZE};
/// let mut wire = heapless::Vec::<u8, 64>::new();
/// let legacy = Framing::standard(Dialect::Legacy);
/// legacy.emit(&mut wire, Header::new(1, 0, 0), b"abc").unwrap();
/// legacy.emit(&mut wire, Header::new(2, 0, 0).with_fd(true), b"").unwrap();
/// assert_eq!(detect_stream(&wire[..19], MAX_IMSGSIZE), Detection::Undecided);
/// assert_eq!(detect_stream(&wire, MAX_IMSGSIZE), Detection::Dialect(Dialect::Legacy));
/// ```
pub fn detect_stream(stream: &[u8], max: usize) -> Detection {
    let mut pos = 0;
    while let Some(bytes) = stream.get(pos..pos + HEADER_SIZE) {
        let Ok(header) = RawHeader::ref_from_bytes(bytes) else {
            break;
        };
        match detect(header, max) {
            Detection::Undecided => pos += header.total_len(Dialect::Legacy),
            decided => return decided,
        }
    }
    Detection::Undecided
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Framing, Header, SliceBuf, CURRENT_FD_MARK, MAX_IMSGSIZE};

    fn header_of(d: Dialect, hdr: Header, payload_len: usize, max: usize) -> [u8; 16] {
        let mut raw = [0u8; 70_000];
        let mut out = SliceBuf::new(&mut raw);
        Framing::new(d, max.min(d.max_frame_len()))
            .unwrap()
            .emit(&mut out, hdr, &[0u8; 70_000][..payload_len])
            .unwrap();
        out.filled()[..16].try_into().unwrap()
    }

    fn detect_bytes(b: &[u8; 16], max: usize) -> Detection {
        detect(RawHeader::ref_from_bytes(&b[..]).unwrap(), max)
    }

    #[test]
    fn frames_without_descriptor_decide_nothing() {
        for d in [Dialect::Legacy, Dialect::Current] {
            for len in [0, 1, 100, MAX_IMSGSIZE - 16] {
                let h = header_of(d, Header::new(7, 1, 2), len, MAX_IMSGSIZE);
                assert_eq!(detect_bytes(&h, MAX_IMSGSIZE), Detection::Undecided);
            }
        }
    }

    #[test]
    fn descriptor_frames_decide_below_65552() {
        for d in [Dialect::Legacy, Dialect::Current] {
            for (len, max) in [
                (0, 16),
                (5, MAX_IMSGSIZE),
                (65_000, 65_535),
                (65_519, 65_551),
            ] {
                let h = header_of(
                    d,
                    Header::new(7, 1, 2).with_fd(true),
                    len,
                    max.max(len + 16),
                );
                assert_eq!(
                    detect_bytes(&h, max.max(len + 16)),
                    Detection::Dialect(d),
                    "{d} {len}"
                );
            }
        }
    }

    #[test]
    fn legacy_descriptor_frame_is_ambiguous_with_a_large_limit() {
        let h = header_of(Dialect::Legacy, Header::new(7, 1, 2).with_fd(true), 0, 64);
        if cfg!(target_endian = "little") {
            assert_eq!(detect_bytes(&h, 65_552), Detection::Ambiguous);
            assert_eq!(
                detect_bytes(&h, 65_551),
                Detection::Dialect(Dialect::Legacy)
            );
        }
    }

    #[test]
    fn garbage_is_invalid() {
        let mut h = [0u8; 16];
        h[4..8].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(detect_bytes(&h, MAX_IMSGSIZE), Detection::Invalid);
        h[4..8].copy_from_slice(&(CURRENT_FD_MARK | 3).to_ne_bytes());
        assert_eq!(detect_bytes(&h, MAX_IMSGSIZE), Detection::Invalid);
    }

    #[test]
    fn stream_walk_skips_undecided_frames() {
        let mut raw = [0u8; 128];
        let mut out = SliceBuf::new(&mut raw);
        let d = Dialect::Current;
        Framing::new(d, 128)
            .unwrap()
            .emit(&mut out, Header::new(1, 0, 0), b"12345")
            .unwrap();
        Framing::new(d, 128)
            .unwrap()
            .emit(&mut out, Header::new(2, 0, 0), b"")
            .unwrap();
        Framing::new(d, 128)
            .unwrap()
            .emit(&mut out, Header::new(3, 0, 0).with_fd(true), b"x")
            .unwrap();
        let wire = out.filled();
        assert_eq!(detect_stream(&wire[..37], 128), Detection::Undecided);
        assert_eq!(detect_stream(&wire[..37 + 16], 128), Detection::Dialect(d));
        assert_eq!(detect_stream(&[], 128), Detection::Undecided);
    }
}
