//! Golden frames written by hand from C's `struct imsg_hdr` layouts (host byte
//! order, so one set per endianness), each checked four ways as smoltcp's wire
//! tests do: deconstruct (read every field from the bytes), construct (set every
//! field in a buffer, compare the bytes), parse (bytes to `Header`) and emit
//! (`Header` and payload to bytes).

use imsg_codec::{
    Dialect, EmitError, Frame, FrameError, Framing, Header, RawHeader, SliceBuf, Split, Status,
    MAX_IMSGSIZE,
};

fn framing(d: Dialect, max: usize) -> Framing {
    Framing::new(d, max).unwrap()
}

fn split(bytes: &[u8], d: Dialect, max: usize) -> Result<Split<'_>, FrameError> {
    framing(d, max).split(bytes)
}
use zerocopy::FromBytes;

/// tmux's `MSG_IDENTIFY_STDIN` with a descriptor: type 104, peerid 8, pid -1,
/// payload de ad be ef, total length 20.
mod stdin_fd {
    pub const PAYLOAD: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    #[cfg(target_endian = "little")]
    #[rustfmt::skip]
    pub const LEGACY: [u8; 20] = [
        0x68, 0x00, 0x00, 0x00, // type 104
        0x14, 0x00,             // len 20
        0x01, 0x00,             // flags IMSGF_HASFD
        0x08, 0x00, 0x00, 0x00, // peerid 8
        0xff, 0xff, 0xff, 0xff, // pid -1
        0xde, 0xad, 0xbe, 0xef,
    ];
    #[cfg(target_endian = "little")]
    #[rustfmt::skip]
    pub const CURRENT: [u8; 20] = [
        0x68, 0x00, 0x00, 0x00, // type 104
        0x14, 0x00, 0x00, 0x80, // len 20 | IMSG_FD_MARK
        0x08, 0x00, 0x00, 0x00, // peerid 8
        0xff, 0xff, 0xff, 0xff, // pid -1
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[cfg(target_endian = "big")]
    #[rustfmt::skip]
    pub const LEGACY: [u8; 20] = [
        0x00, 0x00, 0x00, 0x68,
        0x00, 0x14,
        0x00, 0x01,
        0x00, 0x00, 0x00, 0x08,
        0xff, 0xff, 0xff, 0xff,
        0xde, 0xad, 0xbe, 0xef,
    ];
    #[cfg(target_endian = "big")]
    #[rustfmt::skip]
    pub const CURRENT: [u8; 20] = [
        0x00, 0x00, 0x00, 0x68,
        0x80, 0x00, 0x00, 0x14,
        0x00, 0x00, 0x00, 0x08,
        0xff, 0xff, 0xff, 0xff,
        0xde, 0xad, 0xbe, 0xef,
    ];
}

/// A frame without a descriptor: type 200, peerid 0x04030208, pid 1234, payload
/// "hi\0", total length 19. On a little-endian host both dialects write the same
/// bytes for it.
mod command {
    pub const PAYLOAD: &[u8] = b"hi\0";

    #[cfg(target_endian = "little")]
    #[rustfmt::skip]
    pub const LEGACY: [u8; 19] = [
        0xc8, 0x00, 0x00, 0x00, // type 200
        0x13, 0x00,             // len 19
        0x00, 0x00,             // flags 0
        0x08, 0x02, 0x03, 0x04, // peerid 0x04030208
        0xd2, 0x04, 0x00, 0x00, // pid 1234
        b'h', b'i', 0x00,
    ];
    #[cfg(target_endian = "little")]
    pub const CURRENT: [u8; 19] = LEGACY;

    #[cfg(target_endian = "big")]
    #[rustfmt::skip]
    pub const LEGACY: [u8; 19] = [
        0x00, 0x00, 0x00, 0xc8,
        0x00, 0x13,
        0x00, 0x00,
        0x04, 0x03, 0x02, 0x08,
        0x00, 0x00, 0x04, 0xd2,
        b'h', b'i', 0x00,
    ];
    #[cfg(target_endian = "big")]
    #[rustfmt::skip]
    pub const CURRENT: [u8; 19] = [
        0x00, 0x00, 0x00, 0xc8,
        0x00, 0x00, 0x00, 0x13,
        0x04, 0x03, 0x02, 0x08,
        0x00, 0x00, 0x04, 0xd2,
        b'h', b'i', 0x00,
    ];
}

/// Every field of one golden frame.
struct Golden {
    bytes: &'static [u8],
    dialect: Dialect,
    header: Header,
    payload: &'static [u8],
    /// Bytes 4..8 as the dialect's raw fields: (legacy len, legacy flags) or the
    /// current word.
    len_field: LenField,
}

#[derive(Debug, PartialEq)]
enum LenField {
    Legacy { len: u16, flags: u16 },
    Current(u32),
}

fn goldens() -> [Golden; 4] {
    let stdin = Header {
        ty: 104,
        len: 20,
        has_fd: true,
        peerid: 8,
        pid: u32::MAX,
    };
    let cmd = Header {
        ty: 200,
        len: 19,
        has_fd: false,
        peerid: 0x0403_0208,
        pid: 1234,
    };
    [
        Golden {
            bytes: &stdin_fd::LEGACY,
            dialect: Dialect::Legacy,
            header: stdin,
            payload: &stdin_fd::PAYLOAD,
            len_field: LenField::Legacy { len: 20, flags: 1 },
        },
        Golden {
            bytes: &stdin_fd::CURRENT,
            dialect: Dialect::Current,
            header: stdin,
            payload: &stdin_fd::PAYLOAD,
            len_field: LenField::Current(0x8000_0014),
        },
        Golden {
            bytes: &command::LEGACY,
            dialect: Dialect::Legacy,
            header: cmd,
            payload: command::PAYLOAD,
            len_field: LenField::Legacy { len: 19, flags: 0 },
        },
        Golden {
            bytes: &command::CURRENT,
            dialect: Dialect::Current,
            header: cmd,
            payload: command::PAYLOAD,
            len_field: LenField::Current(19),
        },
    ]
}

#[test]
fn deconstruct() {
    for g in goldens() {
        let frame = Frame::new_checked(g.bytes, &Framing::standard(g.dialect)).unwrap();
        assert_eq!(frame.msg_type(), g.header.ty);
        assert_eq!(frame.total_len(), g.header.len as usize);
        assert_eq!(frame.has_fd(), g.header.has_fd);
        assert_eq!(frame.peerid(), g.header.peerid);
        assert_eq!(frame.pid(), g.header.pid);
        assert_eq!(frame.payload(), g.payload);
        let raw = frame.raw_header();
        let field = match g.dialect {
            Dialect::Legacy => LenField::Legacy {
                len: raw.legacy_len(),
                flags: raw.legacy_flags(),
            },
            Dialect::Current => LenField::Current(raw.current_word()),
        };
        assert_eq!(field, g.len_field);
        // The zero-copy view reads the same bytes.
        let view = RawHeader::ref_from_bytes(&g.bytes[..16]).unwrap();
        assert_eq!(view, raw);
    }
}

#[test]
fn construct() {
    for g in goldens() {
        let mut bytes = vec![0u8; g.bytes.len()];
        let mut frame = Frame::new_unchecked(&mut bytes[..], g.dialect);
        let raw = frame.raw_header_mut();
        raw.set_total_len(g.dialect, g.header.len as usize).unwrap();
        raw.set_msg_type(g.header.ty);
        raw.set_has_fd(g.dialect, g.header.has_fd);
        raw.set_peerid(g.header.peerid);
        raw.set_pid(g.header.pid);
        frame.payload_mut().copy_from_slice(g.payload);
        assert_eq!(bytes, g.bytes, "{:?}", g.header);
    }
}

#[test]
fn parse() {
    for g in goldens() {
        assert_eq!(
            Framing::standard(g.dialect).parse_header(g.bytes),
            Ok(Status::Complete(g.header))
        );
        let Ok(Status::Complete((frame, used))) = split(g.bytes, g.dialect, MAX_IMSGSIZE) else {
            panic!("{:?} does not split", g.header);
        };
        assert_eq!(used, g.bytes.len());
        assert_eq!(frame.header(), g.header);
        assert_eq!(frame.as_bytes(), g.bytes);
        // The exact limit is accepted, one byte less is not.
        let len = g.bytes.len();
        assert!(split(g.bytes, g.dialect, len).is_ok());
        assert_eq!(
            split(g.bytes, g.dialect, len - 1),
            Err(FrameError::TooLong { len, max: len - 1 })
        );
    }
}

#[test]
fn emit_all_ways() {
    for g in goldens() {
        // The encoders fill in the length themselves.
        let hdr = g.header.with_len(0);
        let mut raw = [0u8; 64];
        let mut out = SliceBuf::new(&mut raw);
        let f = Framing::standard(g.dialect);
        assert_eq!(f.emit(&mut out, hdr, g.payload), Ok(g.bytes.len()));
        assert_eq!(out.filled(), g.bytes);

        let mut raw = [0u8; 64];
        let mut out = SliceBuf::new(&mut raw);
        let (a, b) = g.payload.split_at(1);
        f.emitv(&mut out, hdr, &[a, &[], b]).unwrap();
        assert_eq!(out.filled(), g.bytes);

        let mut out = heapless::Vec::<u8, 64>::new();
        let mut builder = f.builder(&mut out, hdr).unwrap();
        for byte in g.payload {
            builder.add_n8(*byte).unwrap();
        }
        assert_eq!(builder.finish(), g.bytes.len());
        assert_eq!(out.as_slice(), g.bytes);

        let mut head = [0u8; 16];
        g.header.emit(g.dialect, &mut head).unwrap();
        assert_eq!(head, g.bytes[..16]);
    }
}

#[test]
#[cfg(target_endian = "little")]
fn goldens_in_the_other_dialect() {
    // Descriptor frames are where the dialects part: each is reported as the other
    // dialect.
    for (bytes, d) in [
        (&stdin_fd::LEGACY, Dialect::Legacy),
        (&stdin_fd::CURRENT, Dialect::Current),
    ] {
        assert_eq!(
            split(bytes, d.other(), MAX_IMSGSIZE),
            Err(FrameError::DialectMismatch {
                expected: d.other(),
                peer: d
            })
        );
    }
    // Without a descriptor, a little-endian host's dialects agree byte for byte.
    assert_eq!(command::LEGACY, command::CURRENT);
}

/// A current-dialect frame of `len` bytes, no descriptor, type 1, zero payload.
fn big_current(len: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    bytes[0..4].copy_from_slice(&1u32.to_ne_bytes());
    bytes[4..8].copy_from_slice(&len.to_ne_bytes());
    bytes
}

#[test]
fn current_frame_beyond_legacy_range() {
    // 140000 bytes: only the current dialect can say it.
    let bytes = big_current(140_000);
    let frame = Frame::new_checked(&bytes[..], &framing(Dialect::Current, 140_000)).unwrap();
    assert_eq!((frame.total_len(), frame.has_fd()), (140_000, false));
    for max in [139_999, MAX_IMSGSIZE] {
        assert_eq!(
            split(&bytes, Dialect::Current, max),
            Err(FrameError::TooLong { len: 140_000, max })
        );
    }
    let mut out = vec![0u8; 140_000];
    let mut buf = SliceBuf::new(&mut out);
    let hdr = Header::new(1, 0, 0);
    assert_eq!(
        framing(Dialect::Legacy, 65535).emit(&mut buf, hdr, &bytes[16..]),
        Err(EmitError::TooLong {
            len: 140_000,
            max: 65535
        })
    );
    framing(Dialect::Current, 0x7fff_ffff)
        .emit(&mut buf, hdr, &bytes[16..])
        .unwrap();
    assert_eq!(buf.filled(), &bytes[..]);
}

#[test]
#[cfg(target_endian = "little")]
fn current_frame_that_reads_as_legacy_descriptor_frame() {
    // 70000 = 0x0001_1170: a legacy reader sees len 0x1170 with flags 0x0001, a
    // well-formed descriptor frame. No reader can tell these apart; only the
    // channel's agreed dialect can.
    let bytes = big_current(70_000);
    let h = Framing::standard(Dialect::Legacy)
        .parse_header(&bytes)
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!((h.len, h.has_fd), (0x1170, true));
    assert!(split(&bytes, Dialect::Current, 70_000).is_ok());
    // Over the limit, where the frame is invalid anyway, the current reader blames
    // the likelier cause: a legacy peer's descriptor frame (which reads as 65552
    // bytes or more).
    assert_eq!(
        split(&bytes, Dialect::Current, 69_999),
        Err(FrameError::DialectMismatch {
            expected: Dialect::Current,
            peer: Dialect::Legacy
        })
    );
}
