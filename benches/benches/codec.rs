//! Benchmarks of the codec layer: splitting and emitting 1 MiB of frames with
//! 16-byte payloads (32 bytes a frame, 32768 frames), beside the ceiling measured
//! in the same run: a plain copy of the same 1 MiB buffer.
//!
//! Criterion reports bytes/s (`Throughput::Bytes`); frames/s is that divided by
//! 32. Run: `cargo bench -p imsg-benches --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imsg_codec::{Dialect, Framing, Header, SliceBuf, Status, HEADER_SIZE};

const BUFFER_SIZE: usize = 1 << 20;
const PAYLOAD_SIZE: usize = 16;
const FRAME_SIZE: usize = HEADER_SIZE + PAYLOAD_SIZE;
const FRAMES: usize = BUFFER_SIZE / FRAME_SIZE;

/// The header and payload of frame `i`: varied enough that nothing is constant.
fn frame(i: usize) -> (Header, [u8; PAYLOAD_SIZE]) {
    let header = Header::new(100 + (i % 13) as u32, 8, u32::MAX).with_fd(i.is_multiple_of(7));
    let mut payload = [0u8; PAYLOAD_SIZE];
    for (j, b) in payload.iter_mut().enumerate() {
        *b = (i + j) as u8;
    }
    (header, payload)
}

/// 1 MiB of back-to-back frames in `dialect`.
fn stream(dialect: Dialect) -> Vec<u8> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut out = SliceBuf::new(&mut buf);
    let framing = Framing::standard(dialect);
    for i in 0..FRAMES {
        let (header, payload) = frame(i);
        framing.emit(&mut out, header, &payload).unwrap();
    }
    assert_eq!(out.filled().len(), BUFFER_SIZE);
    buf
}

/// Splits every frame out of `input`; returns a sum over the frames so that the
/// work cannot be optimized away.
fn split_all(input: &[u8], dialect: Dialect) -> u64 {
    let mut rest = input;
    let mut sum = 0u64;
    let framing = Framing::standard(dialect);
    while let Ok(Status::Complete((frame, used))) = framing.split(rest) {
        sum += u64::from(frame.msg_type()) + frame.payload().len() as u64;
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    sum
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(BUFFER_SIZE as u64));

    let legacy = stream(Dialect::Legacy);
    let mut dst = vec![0u8; BUFFER_SIZE];
    group.bench_function("copy_1MiB_ceiling", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&legacy));
            black_box(&mut dst);
        })
    });

    for dialect in [Dialect::Legacy, Dialect::Current] {
        let input = stream(dialect);
        let expected = split_all(&input, dialect);
        group.bench_function(format!("split_{dialect}"), |b| {
            b.iter(|| assert_eq!(split_all(black_box(&input), dialect), expected))
        });

        // The same frames, emitted into a reused 1 MiB buffer.
        let frames: Vec<(Header, [u8; PAYLOAD_SIZE])> = (0..FRAMES).map(frame).collect();
        let mut out_buf = vec![0u8; BUFFER_SIZE];
        group.bench_function(format!("emit_{dialect}"), |b| {
            b.iter(|| {
                let mut out = SliceBuf::new(&mut out_buf);
                let framing = Framing::standard(dialect);
                for (header, payload) in black_box(&frames) {
                    framing.emit(&mut out, *header, payload).unwrap();
                }
                black_box(out.filled().len())
            })
        });
        assert_eq!(out_buf, input, "emit wrote the same stream");
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
