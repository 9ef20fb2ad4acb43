//! The splitter's fuzz oracle, shared by the cargo-fuzz target `split` and the
//! test that replays the committed seed corpus. Not part of the API.

use core::fmt::{self, Write};

use crate::{Dialect, Frame, Framing, SliceBuf, Status, HEADER_SIZE, LEGACY_HASFD, MAX_IMSGSIZE};

/// Checks [`Framing::new`] against its documented range for a set of fixed limits,
/// then splits `data` in both dialects under three limits each (the standard one,
/// the dialect's largest, and one read from the data's first two bytes, so the
/// fuzzer can steer it to every boundary) and panics if any answer is
/// inconsistent: every accepted frame must re-emit byte for byte (through `emit`,
/// `emitv` and the builder), partial answers must count the missing bytes exactly,
/// and errors may only come from a complete header that `parse_header` also
/// refuses. The first frame's dump line is formatted once per input (formatting
/// every payload under every limit made this oracle several times slower and
/// checks nothing the byte comparisons do not). `scratch` must be at least
/// `data.len()` bytes.
///
/// Legacy flag bits other than `IMSGF_HASFD` are ignored on receipt, as C does,
/// so they are the one part of a frame that does not re-emit.
pub fn check_split(data: &[u8], scratch: &mut [u8]) {
    assert!(scratch.len() >= data.len(), "scratch shorter than data");
    let fixed = [
        0,
        HEADER_SIZE - 1,
        HEADER_SIZE,
        HEADER_SIZE + 1,
        4096,
        MAX_IMSGSIZE,
        u16::MAX as usize,
        u16::MAX as usize + 1,
        usize::MAX,
    ];
    let mut head = [0u8; 2];
    let n = data.len().min(2);
    head[..n].copy_from_slice(&data[..n]);
    let from_data = u16::from_le_bytes(head) as usize;
    let mut dump = true;
    for dialect in [Dialect::Legacy, Dialect::Current] {
        let range = HEADER_SIZE..=dialect.max_frame_len();
        for max in fixed.into_iter().chain([from_data]) {
            assert_eq!(Framing::new(dialect, max).is_ok(), range.contains(&max));
        }
        for max in [MAX_IMSGSIZE, dialect.max_frame_len(), from_data] {
            let max = max.clamp(HEADER_SIZE, dialect.max_frame_len());
            match Framing::new(dialect, max) {
                Ok(framing) => check_stream(data, framing, scratch, &mut dump),
                Err(e) => panic!("clamped limit refused: {e}"),
            }
        }
    }
}

/// A `fmt::Write` that only counts, to format without storage.
struct Count(usize);

impl Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn check_stream(data: &[u8], framing: Framing, scratch: &mut [u8], dump: &mut bool) {
    let mut rest = data;
    let mut count = 0;
    loop {
        match framing.split(rest) {
            Ok(Status::Complete((frame, used))) => {
                assert!((HEADER_SIZE..=framing.max_frame()).contains(&used));
                assert_eq!(frame.as_bytes(), &rest[..used]);
                assert_eq!(frame.payload().len(), used - HEADER_SIZE);
                check_frame(frame, framing, scratch, core::mem::take(dump));
                rest = &rest[used..];
                count += 1;
            }
            Ok(Status::Partial { needed }) => {
                let want = match framing.parse_header(rest) {
                    Ok(Status::Complete(h)) => h.len as usize - rest.len(),
                    _ => HEADER_SIZE - rest.len(),
                };
                assert!(needed > 0);
                assert_eq!(needed, want);
                break;
            }
            Err(e) => {
                assert!(
                    rest.len() >= HEADER_SIZE,
                    "error {e:?} before a whole header"
                );
                assert_eq!(framing.parse_header(rest), Err(e));
                break;
            }
        }
    }
    // The iterator agrees with the loop.
    let mut it = framing.frames(data);
    assert_eq!(it.by_ref().filter(|f| f.is_ok()).count(), count);
    assert_eq!(it.consumed(), data.len() - rest.len());
}

fn check_frame(frame: Frame<&[u8]>, framing: Framing, scratch: &mut [u8], dump: bool) {
    let dialect = frame.dialect();
    let bytes = frame.as_bytes();
    let header = frame.header();
    assert_eq!(Frame::new_checked(bytes, &framing), Ok(frame));
    assert_eq!(framing.parse_header(bytes), Ok(Status::Complete(header)));
    assert_eq!(header.len as usize, bytes.len());
    if dump {
        let mut line = Count(0);
        write!(line, "{}", frame.dump_line()).unwrap();
        assert!(line.0 >= 2 * frame.payload().len());
    }

    // What re-emitting must give: the input, less legacy flag bits C ignores.
    let unknown_flags = match dialect {
        Dialect::Legacy => frame.raw_header().legacy_flags() & !LEGACY_HASFD,
        Dialect::Current => 0,
    };
    let expect_same = |out: &[u8]| {
        assert_eq!(out.len(), bytes.len());
        if unknown_flags == 0 {
            assert_eq!(out, bytes);
        } else {
            assert_eq!(out[..6], bytes[..6]);
            assert_eq!(out[8..], bytes[8..]);
            let flags = u16::from_ne_bytes([out[6], out[7]]);
            assert_eq!(flags, u16::from(frame.has_fd()));
        }
    };
    let payload = frame.payload();
    let scratch = &mut scratch[..bytes.len()];

    let mut out = SliceBuf::new(scratch);
    assert_eq!(framing.emit(&mut out, header, payload), Ok(bytes.len()));
    expect_same(out.filled());

    let mut out = SliceBuf::new(scratch);
    let (a, b) = payload.split_at(payload.len() / 2);
    assert_eq!(framing.emitv(&mut out, header, &[a, b]), Ok(bytes.len()));
    expect_same(out.filled());

    let mut out = SliceBuf::new(scratch);
    let mut builder = framing.builder(&mut out, header).unwrap();
    builder.add(payload).unwrap();
    assert_eq!(builder.finish(), bytes.len());
    expect_same(out.filled());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Header;

    #[test]
    fn oracle_accepts_what_the_codec_does() {
        let mut data = [0u8; 64];
        let mut out = SliceBuf::new(&mut data);
        let h = Header::new(1, 8, u32::MAX);
        let framing = Framing::new(Dialect::Legacy, 64).unwrap();
        framing.emit(&mut out, h, b"abc").unwrap();
        framing.emit(&mut out, h.with_fd(true), b"").unwrap();
        let n = out.filled().len();
        let mut scratch = [0u8; 64];
        for end in 0..=n {
            check_split(&data[..end], &mut scratch);
        }
        // Unknown legacy flag bits: accepted, re-emitted without them.
        data[6..8].copy_from_slice(&0x0102u16.to_ne_bytes());
        check_split(&data[..n], &mut scratch);
        check_split(&[0xff; 40], &mut scratch);
    }
}
