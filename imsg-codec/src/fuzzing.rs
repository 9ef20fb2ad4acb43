//! The splitter's fuzz oracle, shared by the cargo-fuzz target `split` and the
//! test that replays the committed seed corpus. Not part of the API.

use core::fmt::{self, Write};

use crate::{Dialect, Frame, Framing, SliceBuf, Status, HEADER_SIZE, LEGACY_HASFD, MAX_IMSGSIZE};

/// Splits `data` in both dialects under a range of limits (fixed ones and two
/// read from the data's first bytes) and panics if any answer is inconsistent:
/// every accepted frame must re-emit byte for byte (through `emit`, `emitv` and
/// the builder), partial answers must count the missing bytes exactly, errors
/// may only come from a complete header that `parse_header` also refuses, and the
/// [`Framing::frames`] iterator must give the same answers as `split`. Limits
/// outside what a dialect allows must be refused by [`Framing::new`] and are
/// clamped into range. `scratch` must be at least `data.len()` bytes.
///
/// Each frame is re-emitted and dumped once per dialect, under the dialect's
/// largest limit. A lower limit must accept a prefix of those same frames and
/// stop, if earlier, only at a frame longer than that limit; so each distinct
/// lower limit is split once more and compared by offset, without re-emitting.
///
/// Legacy flag bits other than `IMSGF_HASFD` are ignored on receipt, as C does,
/// so they are the one part of a frame that does not re-emit.
pub fn check_split(data: &[u8], scratch: &mut [u8]) {
    assert!(scratch.len() >= data.len(), "scratch shorter than data");
    let mut head = [0u8; 4];
    let n = data.len().min(4);
    head[..n].copy_from_slice(&data[..n]);
    let from_data_16 = u16::from_le_bytes([head[0], head[1]]) as usize;
    let from_data_32 = u32::from_le_bytes(head) as usize;
    let limits = [
        0,
        HEADER_SIZE - 1,
        HEADER_SIZE,
        HEADER_SIZE + 1,
        4096,
        MAX_IMSGSIZE,
        u16::MAX as usize,
        u16::MAX as usize + 1,
        usize::MAX,
        from_data_16,
        from_data_32,
    ];
    for dialect in [Dialect::Legacy, Dialect::Current] {
        let top = dialect.max_frame_len();
        let mut clamped = limits;
        for max in &mut clamped {
            let in_range = (HEADER_SIZE..=top).contains(max);
            assert_eq!(Framing::new(dialect, *max).is_ok(), in_range);
            *max = (*max).clamp(HEADER_SIZE, top);
        }
        clamped.sort_unstable();

        let widest = Framing::new(dialect, top).expect("the dialect's own limit");
        let all = check_stream(data, widest, Some(scratch));
        for (i, &max) in clamped.iter().enumerate() {
            if max == top || (i > 0 && clamped[i - 1] == max) {
                continue;
            }
            let framing = match Framing::new(dialect, max) {
                Ok(framing) => framing,
                Err(e) => panic!("clamped limit refused: {e}"),
            };
            let upto = check_stream(data, framing, None);
            assert!(upto <= all, "a lower limit accepted more");
            if upto < all {
                match widest.parse_header(&data[upto..]) {
                    Ok(Status::Complete(h)) => assert!(h.len as usize > max),
                    other => panic!("stopped at {upto} on {other:?}"),
                }
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

/// Splits `data` to its end under `framing`, checking every answer, and the
/// iterator in step with it; with `scratch`, also re-emits and dumps every frame.
/// Returns how many bytes the whole frames took.
fn check_stream(data: &[u8], framing: Framing, mut scratch: Option<&mut [u8]>) -> usize {
    let mut rest = data;
    let mut it = framing.frames(data);
    loop {
        match framing.split(rest) {
            Ok(Status::Complete((frame, used))) => {
                assert!((HEADER_SIZE..=framing.max_frame()).contains(&used));
                // The frame is those very bytes (same address), not a copy.
                assert!(core::ptr::eq(frame.as_bytes(), &rest[..used]));
                assert_eq!(frame.payload().len(), used - HEADER_SIZE);
                match it.next() {
                    Some(Ok(f)) => assert!(core::ptr::eq(f.as_bytes(), frame.as_bytes())),
                    other => panic!("iterator gave {other:?} for a frame"),
                }
                if let Some(scratch) = scratch.as_deref_mut() {
                    check_frame(frame, framing, scratch);
                }
                rest = &rest[used..];
            }
            Ok(Status::Partial { needed }) => {
                let want = match framing.parse_header(rest) {
                    Ok(Status::Complete(h)) => h.len as usize - rest.len(),
                    _ => HEADER_SIZE - rest.len(),
                };
                assert!(needed > 0);
                assert_eq!(needed, want);
                assert_eq!(it.next(), None);
                break;
            }
            Err(e) => {
                assert!(
                    rest.len() >= HEADER_SIZE,
                    "error {e:?} before a whole header"
                );
                assert_eq!(framing.parse_header(rest), Err(e));
                assert_eq!(it.next(), Some(Err(e)));
                assert_eq!(it.next(), None);
                break;
            }
        }
    }
    let used = data.len() - rest.len();
    assert_eq!(it.consumed(), used);
    used
}

fn check_frame(frame: Frame<&[u8]>, framing: Framing, scratch: &mut [u8]) {
    let dialect = frame.dialect();
    let bytes = frame.as_bytes();
    let header = frame.header();
    assert_eq!(Frame::new_checked(bytes, &framing), Ok(frame));
    assert_eq!(framing.parse_header(bytes), Ok(Status::Complete(header)));
    assert_eq!(header.len as usize, bytes.len());
    let mut line = Count(0);
    write!(line, "{}", frame.dump_line()).unwrap();
    assert!(line.0 >= 2 * frame.payload().len());

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
