//! The cases of ../shared/IMSG-FACTS.md §6.3 that concern a codec (A, B, D, G),
//! checked on whole frames through the public API. (D is also a property test in
//! `roundtrip.rs`; G's string and truncate cases are unit tests in `writer.rs`
//! and `reader.rs`.)

use imsg_codec::{
    emit, exact, split, Dialect, Error, Frame, FrameBuilder, Header, Reader, SliceBuf, Status,
    Writer, CURRENT_FD_MARK, HEADER_SIZE, LEGACY_HASFD, MAX_IMSGSIZE,
};

/// A frame of `total` bytes whose bytes 4..8 are `len_flags` (host order).
fn frame_with(len_flags: [u8; 4], total: usize) -> Vec<u8> {
    let mut b = vec![0u8; total.max(HEADER_SIZE)];
    b[0..4].copy_from_slice(&7u32.to_ne_bytes());
    b[4..8].copy_from_slice(&len_flags);
    b
}

fn legacy(len: u16, flags: u16) -> [u8; 4] {
    let mut w = [0u8; 4];
    w[..2].copy_from_slice(&len.to_ne_bytes());
    w[2..].copy_from_slice(&flags.to_ne_bytes());
    w
}

fn complete(input: &[u8], d: Dialect, max: usize) -> Frame<&[u8]> {
    match split(input, d, max) {
        Ok(Status::Complete((frame, used))) => {
            assert_eq!(used, input.len());
            frame
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn case_a_length_bounds() {
    for d in [Dialect::Legacy, Dialect::Current] {
        let word = |len: u32| len.to_ne_bytes();
        // 15: never valid, whatever follows.
        assert_eq!(
            split(&frame_with(word(15), 64), d, MAX_IMSGSIZE),
            Err(Error::TooShort { len: 15 })
        );
        // 16: an empty payload; any read of it fails (imsg_get_ibuf's EBADMSG).
        let bytes = frame_with(word(16), 16);
        let f = complete(&bytes, d, MAX_IMSGSIZE);
        assert_eq!(f.payload(), b"");
        assert_eq!(f.header().payload_len(), 0);
        assert_eq!(
            Reader::new(f.payload()).get_n8(),
            Err(Error::ShortRead { wanted: 1, left: 0 })
        );
        assert_eq!(
            exact::<u32>(f.payload()),
            Err(Error::SizeMismatch {
                expected: 4,
                actual: 0
            })
        );
        // The limit itself is accepted, one more byte is not.
        let bytes = frame_with(word(MAX_IMSGSIZE as u32), MAX_IMSGSIZE);
        assert_eq!(complete(&bytes, d, MAX_IMSGSIZE).total_len(), MAX_IMSGSIZE);
        assert_eq!(
            split(&frame_with(word(16385), 16), d, MAX_IMSGSIZE),
            Err(Error::TooLong {
                len: 16385,
                max: MAX_IMSGSIZE
            })
        );
    }
}

#[test]
fn case_a_legacy_ignores_all_flags_but_bit_0() {
    // Every flag pattern without the bit the current mark lands on (0x8000 on a
    // little-endian host, where a current frame would read as legacy flags).
    let mark = CURRENT_FD_MARK.to_ne_bytes();
    let mark_in_flags = u16::from_ne_bytes([mark[2], mark[3]]);
    for flags in [0x0002u16, 0x00f0, 0x4000, 0x7ffe, 0xfffe] {
        if flags & mark_in_flags != 0 {
            continue;
        }
        for hasfd in [0, LEGACY_HASFD] {
            let bytes = frame_with(legacy(20, flags | hasfd), 20);
            let f = complete(&bytes, Dialect::Legacy, MAX_IMSGSIZE);
            assert_eq!(
                (f.total_len(), f.has_fd()),
                (20, hasfd != 0),
                "flags {flags:#x}"
            );
        }
    }
}

#[test]
fn case_a_current_masks_the_mark_before_the_range_check() {
    let d = Dialect::Current;
    let marked = |len: u32| (len | CURRENT_FD_MARK).to_ne_bytes();
    let bytes = frame_with(marked(MAX_IMSGSIZE as u32), MAX_IMSGSIZE);
    let f = complete(&bytes, d, MAX_IMSGSIZE);
    assert_eq!((f.total_len(), f.has_fd()), (MAX_IMSGSIZE, true));
    assert_eq!(
        split(&frame_with(marked(16385), 16), d, MAX_IMSGSIZE),
        Err(Error::TooLong {
            len: 16385,
            max: MAX_IMSGSIZE
        })
    );
    assert_eq!(
        split(&frame_with(marked(15), 16), d, MAX_IMSGSIZE),
        Err(Error::TooShort { len: 15 })
    );
    // The mark alone: length 0.
    assert_eq!(
        split(&frame_with(marked(0), 16), d, MAX_IMSGSIZE),
        Err(Error::TooShort { len: 0 })
    );
}

#[test]
fn case_b_limits() {
    // The codec has no channel to set a maximum on (imsgbuf_set_maxsize is
    // imsg-io's); a limit beyond what the dialect can express is capped to it,
    // on both sides.
    let hdr = Header::new(1, 0, 0);
    let payload = vec![0u8; 65535 - HEADER_SIZE + 1];
    let mut storage = vec![0u8; 70000];
    let mut out = SliceBuf::new(&mut storage);
    assert_eq!(
        emit(&mut out, Dialect::Legacy, usize::MAX, hdr, &payload[1..]),
        Ok(65535)
    );
    let mut out = SliceBuf::new(&mut storage);
    assert_eq!(
        emit(&mut out, Dialect::Legacy, usize::MAX, hdr, &payload),
        Err(Error::TooLong {
            len: 65536,
            max: 65535
        })
    );
    // The largest current header is only partial, not an overflow or a panic.
    let top = frame_with((CURRENT_FD_MARK - 1).to_ne_bytes(), 16);
    assert_eq!(
        split(&top, Dialect::Current, usize::MAX),
        Ok(Status::Partial {
            needed: 0x7fff_ffff - 16
        })
    );
    // imsg_create: datalen + 16 > maxsize is ERANGE, checked before any byte.
    let mut out = heapless::Vec::<u8, 64>::new();
    assert_eq!(
        FrameBuilder::with_len(&mut out, Dialect::Current, 32, hdr, 17).unwrap_err(),
        Error::TooLong { len: 33, max: 32 }
    );
    assert!(out.is_empty());
    // imsg_set_maxsize can only lower: a builder never writes past its limit,
    // whatever storage is left.
    let mut b = FrameBuilder::with_len(&mut out, Dialect::Current, 32, hdr, 16).unwrap();
    b.add(&[1; 16]).unwrap();
    assert_eq!(
        b.add_n8(1),
        Err(Error::NoSpace {
            needed: 1,
            available: 0
        })
    );
    assert_eq!(b.finish(), Ok(32));
}

#[test]
fn case_g_payload_access() {
    // ibuf_get_n32 on 3 bytes: EBADMSG, nothing consumed.
    let bytes = frame_with(19u32.to_ne_bytes(), 19);
    let f = complete(&bytes, Dialect::Current, MAX_IMSGSIZE);
    let mut r = Reader::new(f.payload());
    assert_eq!(r.get_n32(), Err(Error::ShortRead { wanted: 4, left: 3 }));
    assert_eq!(r.left(), 3);
    // A fixed buffer cannot grow (stack ibuf: EINVAL), and a failed add changes
    // nothing.
    let mut raw = [0u8; 3];
    let mut out = SliceBuf::new(&mut raw);
    let mut w = Writer::new(&mut out);
    w.add_n16(0x0102).unwrap();
    assert_eq!(
        w.add_n16(0x0304),
        Err(Error::NoSpace {
            needed: 2,
            available: 1
        })
    );
    assert_eq!(out.filled(), [1, 2]);
}
