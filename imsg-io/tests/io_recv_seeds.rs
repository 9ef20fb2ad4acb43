//! Replays the `io_recv` fuzz seeds, random inputs and random streams of valid
//! frames through the receive-path driver the `io_recv` and `io_socket` fuzz
//! targets use, both ways: a `ChannelCore` fed from the in-memory socket model and
//! a `Channel` over a real socketpair, which must agree (one test: it counts open
//! descriptors).

mod recv_driver;

use std::os::fd::OwnedFd;

use imsg_io::{ChannelCore, Config, Dialect};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use recv_driver::{Outcome, Via};

/// Runs `data` both ways. On Linux, whose stream sockets the model follows, the
/// model must give what the real socket gives, unless the input filled the socket
/// buffer on either way: how much a socket holds is the kernel's own accounting,
/// which differs between versions and settings (the model's is this kernel's).
/// Returns the outcome and whether the two were compared.
fn both(data: &[u8]) -> (Outcome, bool) {
    let core = recv_driver::run(data, Via::Core);
    let socket = recv_driver::run(data, Via::Socket);
    let compared = cfg!(target_os = "linux") && !core.full && !socket.full;
    if compared {
        assert_eq!(core, socket, "core and socket disagree on {data:02x?}");
    }
    (core, compared)
}

#[test]
fn seeds_and_random_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds/io_recv");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .expect("seed directory")
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "seeds missing in {}", dir.display());
    let mut total = Outcome::default();
    let mut compared = 0;
    for path in &seeds {
        let (o, c) = both(&std::fs::read(path).unwrap());
        compared += usize::from(c);
        total.frames += o.frames;
        total.fds += o.fds;
        total.lost += o.lost;
    }
    assert!(total.frames > 0, "the seeds deliver frames");
    assert!(total.fds > 0, "the seeds deliver descriptors");
    assert!(total.lost > 0, "the seeds lose descriptors (MSG_CTRUNC)");

    let runner = || {
        TestRunner::new(PtConfig {
            cases: 256,
            failure_persistence: None,
            ..PtConfig::default()
        })
    };
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..600), |data| {
            both(&data);
            Ok(())
        })
        .unwrap();

    // Valid frames, some with descriptors, cut into chunks of 1 to 4,080 bytes:
    // these deliver many frames and descriptors, so the model's reads and
    // descriptor arrivals must match the kernel's over long streams.
    let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let delivered = std::cell::Cell::new((0, 0, 0));
    runner()
        .run(&any::<u64>(), |seed| {
            let (o, c) = both(&framed_input(seed, &null));
            let (frames, fds, same) = delivered.get();
            delivered.set((frames + o.frames, fds + o.fds, same + usize::from(c)));
            Ok(())
        })
        .unwrap();
    let (frames, fds, same) = delivered.get();
    assert!(
        frames > 1000 && fds > 100,
        "{frames} frames, {fds} descriptors"
    );
    if cfg!(target_os = "linux") {
        assert!(
            compared >= seeds.len() / 2 && same > 128,
            "compared {compared} of {} seeds, {same} of 256 framed inputs",
            seeds.len()
        );
    }
}

/// A driver input made from `seed`: up to 600 frames of up to 300 payload bytes,
/// one in three with a descriptor, in chunks with random descriptor counts and
/// read points.
fn framed_input(seed: u64, fd: &OwnedFd) -> Vec<u8> {
    let mut state = seed | 1;
    let mut rnd = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    // Descriptor passing on, the receive buffer random, the largest frame limit.
    let settings = (rnd(256) as u8 & 0x61) | 0x1c;
    let dialect = [Dialect::Legacy, Dialect::Current][usize::from(settings & 1)];
    let mut tx = ChannelCore::new(Config::default().with_dialect(dialect).with_fdpass(true));
    for _ in 0..rnd(600) {
        let fd = (rnd(3) == 0).then(|| fd.try_clone().unwrap());
        let payload = vec![0xa5; rnd(300) as usize];
        tx.compose(rnd(10) as u32, 0, 0, fd, &payload).unwrap();
    }
    let mut stream = Vec::new();
    while let Some(t) = tx.transmit() {
        let n = t.bytes.len();
        stream.extend_from_slice(t.bytes);
        tx.written(n);
    }
    let mut input = vec![settings];
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let mut ctl = rnd(16) as u8;
        let len = if rnd(2) == 0 && rest.len() >= 16 {
            ctl |= 0x40;
            (rnd(255) as usize + 1).min(rest.len() / 16)
        } else {
            (rnd(200) as usize + 1).min(rest.len())
        };
        let n = if ctl & 0x40 != 0 { len * 16 } else { len };
        input.extend_from_slice(&[ctl, len as u8]);
        input.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    input
}
