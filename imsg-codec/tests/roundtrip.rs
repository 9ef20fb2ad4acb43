//! Property tests: frames emitted (three ways) in either dialect come back out of
//! the splitter unchanged, however the stream is cut into chunks, and every
//! partial answer says exactly how many bytes are missing.

use imsg_codec::{
    Dialect, EmitError, FrameError, Framing, Header, SliceBuf, Split, Status, HEADER_SIZE,
    MAX_IMSGSIZE,
};

fn framing(d: Dialect, max: usize) -> Framing {
    Framing::new(d, max).unwrap()
}

fn split(bytes: &[u8], d: Dialect, max: usize) -> Result<Split<'_>, FrameError> {
    framing(d, max).split(bytes)
}
use proptest::prelude::*;

/// One frame to send: its header (length left to the encoder) and payload.
#[derive(Clone, Debug, PartialEq)]
struct Msg {
    header: Header,
    payload: Vec<u8>,
    /// How the frame is encoded: 0 `emit`, 1 `emitv`, 2 `FrameBuilder`.
    how: u8,
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::Legacy), Just(Dialect::Current)]
}

fn msg(max_payload: usize) -> impl Strategy<Value = Msg> {
    (
        any::<u32>(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..=max_payload),
        0u8..3,
    )
        .prop_map(|(ty, has_fd, peerid, pid, payload, how)| Msg {
            header: Header::new(ty, peerid, pid).with_fd(has_fd),
            payload,
            how,
        })
}

/// Encodes `m` at the end of `out` the way `m.how` says.
fn encode(out: &mut SliceBuf<'_>, d: Dialect, max: usize, m: &Msg) -> Result<usize, EmitError> {
    let f = framing(d, max);
    match m.how {
        0 => f.emit(out, m.header, &m.payload),
        1 => {
            let third = m.payload.len() / 3;
            let (a, rest) = m.payload.split_at(third);
            let (b, c) = rest.split_at(third);
            f.emitv(out, m.header, &[a, b, &[], c])
        }
        _ => {
            let mut b = f.builder(out, m.header)?;
            for piece in m.payload.chunks(7) {
                b.add(piece)?;
            }
            Ok(b.finish())
        }
    }
}

fn total(m: &Msg) -> usize {
    HEADER_SIZE + m.payload.len()
}

/// Feeds `stream` in chunks cut at `cuts` through an accumulating splitter, as a
/// reader on a stream socket would, checking every partial answer against the
/// frames expected next. Returns the frames that came out.
fn split_in_chunks(
    stream: &[u8],
    cuts: &[usize],
    d: Dialect,
    max: usize,
    expected: &[Msg],
) -> Vec<Msg> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(0);
    bounds.push(stream.len());
    bounds.sort_unstable();
    let mut acc: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        acc.extend_from_slice(&stream[w[0]..w[1]]);
        loop {
            match split(&acc, d, max).expect("emitted frames are valid") {
                Status::Complete((frame, used)) => {
                    assert_eq!(used, frame.total_len());
                    out.push(Msg {
                        header: frame.header().with_len(HEADER_SIZE as u32),
                        payload: frame.payload().to_vec(),
                        how: expected[out.len()].how,
                    });
                    acc.drain(..used);
                }
                Status::Partial { needed } => {
                    // Exactly the bytes missing: the rest of the header, or of the frame.
                    let want = if acc.len() < HEADER_SIZE {
                        HEADER_SIZE - acc.len()
                    } else {
                        total(&expected[out.len()]) - acc.len()
                    };
                    assert_eq!(needed, want, "partial answer with {} bytes", acc.len());
                    break;
                }
            }
        }
    }
    assert!(acc.is_empty(), "{} bytes left over", acc.len());
    out
}

fn with_encoder_len(msgs: &[Msg]) -> Vec<Msg> {
    msgs.iter()
        .map(|m| Msg {
            header: m.header.with_len(HEADER_SIZE as u32),
            ..m.clone()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn emit_then_split_in_chunks(
        d in dialect(),
        msgs in prop::collection::vec(msg(300), 0..12),
        extra in 0usize..64,
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        // The tightest limit that lets every frame through, plus some slack.
        let max = msgs.iter().map(total).max().unwrap_or(HEADER_SIZE) + extra;
        let mut storage = vec![0u8; msgs.iter().map(total).sum()];
        let mut out = SliceBuf::new(&mut storage);
        for m in &msgs {
            prop_assert_eq!(encode(&mut out, d, max, m), Ok(total(m)));
        }
        let stream = out.filled().to_vec();
        prop_assert_eq!(stream.len(), storage_len(&msgs));

        let expected = with_encoder_len(&msgs);
        let got = split_in_chunks(&stream, &cuts, d, max, &msgs);
        prop_assert_eq!(&got, &expected);

        // The whole stream at once through the iterator, too.
        let f = framing(d, max);
        let mut it = f.frames(&stream);
        let whole: Vec<(Header, Vec<u8>)> = it
            .by_ref()
            .map(|f| {
                let f = f.unwrap();
                (f.header().with_len(HEADER_SIZE as u32), f.payload().to_vec())
            })
            .collect();
        let want: Vec<(Header, Vec<u8>)> =
            expected.iter().map(|m| (m.header, m.payload.clone())).collect();
        prop_assert_eq!(whole, want);
        prop_assert_eq!(it.consumed(), stream.len());
    }

    #[test]
    fn encoders_refuse_a_frame_over_the_limit(
        d in dialect(),
        m in msg(64),
        below in 1usize..16,
    ) {
        let max = total(&m).saturating_sub(below).max(HEADER_SIZE);
        prop_assume!(max < total(&m));
        let mut storage = [0u8; 128];
        let mut out = SliceBuf::new(&mut storage);
        let err = encode(&mut out, d, max, &m).unwrap_err();
        // FrameBuilder finds out piece by piece; the others up front.
        match m.how {
            2 => prop_assert!(matches!(err, EmitError::NoSpace(_)), "{:?}", err),
            _ => prop_assert_eq!(err, EmitError::TooLong { len: total(&m), max }),
        }
        prop_assert_eq!(out.filled().len(), 0, "nothing half-written");
    }

    #[test]
    fn one_frame_at_every_cut(d in dialect(), m in msg(40)) {
        let mut storage = [0u8; 64];
        let mut out = SliceBuf::new(&mut storage);
        encode(&mut out, d, MAX_IMSGSIZE, &m).unwrap();
        let bytes = out.filled();
        for cut in 0..bytes.len() {
            let got = split_in_chunks(bytes, &[cut], d, MAX_IMSGSIZE, std::slice::from_ref(&m));
            prop_assert_eq!(&got, &with_encoder_len(std::slice::from_ref(&m)));
        }
    }

    /// On a little-endian host, a descriptor frame (up to tmux's
    /// limit) read in the other dialect is reported as the other dialect; a frame
    /// without one reads the same in both.
    #[test]
    #[cfg(target_endian = "little")]
    fn other_dialect_is_detected(d in dialect(), m in msg(MAX_IMSGSIZE - HEADER_SIZE)) {
        let mut storage = vec![0u8; total(&m)];
        let mut out = SliceBuf::new(&mut storage);
        Framing::standard(d).emit(&mut out, m.header, &m.payload).unwrap();
        let bytes = out.filled();
        let read = split(bytes, d.other(), MAX_IMSGSIZE);
        if m.header.has_fd {
            prop_assert_eq!(read, Err(FrameError::DialectMismatch { expected: d.other(), peer: d }));
        } else {
            let (frame, used) = read.unwrap().complete().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame.header(), m.header.with_len(used as u32));
        }
    }
}

fn storage_len(msgs: &[Msg]) -> usize {
    msgs.iter().map(total).sum()
}
