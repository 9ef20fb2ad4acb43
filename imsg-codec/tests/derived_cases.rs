//! C's behaviour on length bounds, header flags, limits and payload access,
//! checked on whole frames through the public API. (Dialect detection is a
//! property test in `roundtrip.rs`; the string and truncate cases of the payload
//! writers and readers are unit tests in `writer.rs` and `reader.rs`.)

use imsg_codec::{
    exact, Dialect, EmitError, Frame, FrameError, Framing, Header, NoSpace, Reader, ShortRead,
    SizeMismatch, SliceBuf, Status, Writer, CURRENT_FD_MARK, HEADER_SIZE, LEGACY_HASFD,
    MAX_IMSGSIZE,
};

fn split(input: &[u8], d: Dialect, max: usize) -> Result<imsg_codec::Split<'_>, FrameError> {
    Framing::new(d, max).unwrap().split(input)
}

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
fn length_bounds() {
    for d in [Dialect::Legacy, Dialect::Current] {
        let word = |len: u32| len.to_ne_bytes();
        // 15: never valid, whatever follows.
        assert_eq!(
            split(&frame_with(word(15), 64), d, MAX_IMSGSIZE),
            Err(FrameError::TooShort { len: 15 })
        );
        // 16: an empty payload; any read of it fails (imsg_get_ibuf's EBADMSG).
        let bytes = frame_with(word(16), 16);
        let f = complete(&bytes, d, MAX_IMSGSIZE);
        assert_eq!(f.payload(), b"");
        assert_eq!(f.header().payload_len(), 0);
        assert_eq!(
            Reader::new(f.payload()).get_n8(),
            Err(ShortRead { wanted: 1, left: 0 })
        );
        assert_eq!(
            exact::<u32>(f.payload()),
            Err(SizeMismatch {
                expected: 4,
                actual: 0
            })
        );
        // The limit itself is accepted, one more byte is not.
        let bytes = frame_with(word(MAX_IMSGSIZE as u32), MAX_IMSGSIZE);
        assert_eq!(complete(&bytes, d, MAX_IMSGSIZE).total_len(), MAX_IMSGSIZE);
        assert_eq!(
            split(&frame_with(word(16385), 16), d, MAX_IMSGSIZE),
            Err(FrameError::TooLong {
                len: 16385,
                max: MAX_IMSGSIZE
            })
        );
    }
}

#[test]
fn legacy_ignores_all_flags_but_bit_0() {
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
fn current_masks_the_mark_before_the_range_check() {
    let d = Dialect::Current;
    let marked = |len: u32| (len | CURRENT_FD_MARK).to_ne_bytes();
    let bytes = frame_with(marked(MAX_IMSGSIZE as u32), MAX_IMSGSIZE);
    let f = complete(&bytes, d, MAX_IMSGSIZE);
    assert_eq!((f.total_len(), f.has_fd()), (MAX_IMSGSIZE, true));
    assert_eq!(
        split(&frame_with(marked(16385), 16), d, MAX_IMSGSIZE),
        Err(FrameError::TooLong {
            len: 16385,
            max: MAX_IMSGSIZE
        })
    );
    assert_eq!(
        split(&frame_with(marked(15), 16), d, MAX_IMSGSIZE),
        Err(FrameError::TooShort { len: 15 })
    );
    // The mark alone: length 0.
    assert_eq!(
        split(&frame_with(marked(0), 16), d, MAX_IMSGSIZE),
        Err(FrameError::TooShort { len: 0 })
    );
}

#[test]
fn limits() {
    // A limit beyond what the dialect can express cannot be set; the largest one
    // holds on both sides.
    assert!(Framing::new(Dialect::Legacy, 65536).is_err());
    let widest = Framing::new(Dialect::Legacy, 65535).unwrap();
    let hdr = Header::new(1, 0, 0);
    let payload = vec![0u8; 65535 - HEADER_SIZE + 1];
    let mut storage = vec![0u8; 70000];
    let mut out = SliceBuf::new(&mut storage);
    assert_eq!(widest.emit(&mut out, hdr, &payload[1..]), Ok(65535));
    let mut out = SliceBuf::new(&mut storage);
    assert_eq!(
        widest.emit(&mut out, hdr, &payload),
        Err(EmitError::TooLong {
            len: 65536,
            max: 65535
        })
    );
    // The largest current header is only partial, not an overflow or a panic.
    let top = frame_with((CURRENT_FD_MARK - 1).to_ne_bytes(), 16);
    assert_eq!(
        split(&top, Dialect::Current, 0x7fff_ffff),
        Ok(Status::Partial {
            needed: 0x7fff_ffff - 16
        })
    );
    // imsg_create: datalen + 16 > maxsize is ERANGE, checked before any byte.
    let mut out = heapless::Vec::<u8, 64>::new();
    let small = Framing::new(Dialect::Current, 32).unwrap();
    assert_eq!(
        small.builder_with_len(&mut out, hdr, 17).unwrap_err(),
        EmitError::TooLong { len: 33, max: 32 }
    );
    assert!(out.is_empty());
    // imsg_set_maxsize can only lower: a builder never writes past its limit,
    // whatever storage is left.
    let mut b = small.builder_with_len(&mut out, hdr, 16).unwrap();
    b.add(&[1; 16]).unwrap();
    assert_eq!(
        b.add_n8(1),
        Err(NoSpace {
            needed: 1,
            available: 0
        })
    );
    assert_eq!(b.finish(), 32);
}

#[test]
fn payload_access() {
    // ibuf_get_n32 on 3 bytes: EBADMSG, nothing consumed.
    let bytes = frame_with(19u32.to_ne_bytes(), 19);
    let f = complete(&bytes, Dialect::Current, MAX_IMSGSIZE);
    let mut r = Reader::new(f.payload());
    assert_eq!(r.get_n32(), Err(ShortRead { wanted: 4, left: 3 }));
    assert_eq!(r.left(), 3);
    // A fixed buffer cannot grow (stack ibuf: EINVAL), and a failed add changes
    // nothing.
    let mut raw = [0u8; 3];
    let mut out = SliceBuf::new(&mut raw);
    let mut w = Writer::new(&mut out);
    w.add_n16(0x0102).unwrap();
    assert_eq!(
        w.add_n16(0x0304),
        Err(NoSpace {
            needed: 2,
            available: 1
        })
    );
    assert_eq!(out.filled(), [1, 2]);
}
