//! Instructions per frame, for callgrind: `BATCHES` (first argument, default 100)
//! batches of 1,000 frames with 16-byte payloads queued on a `Channel`
//! (`compose`), flushed, then read and taken (`read`, `get`) on the other end of
//! a socketpair, in one thread. Each step is its own function, so callgrind's
//! inclusive counts split per step; the difference between two runs (200 and 100
//! batches) divided by 100,000 frames cancels start-up out:
//!
//! ```sh
//! cargo build --release -p imsg-benches --example per_frame
//! for n in 100 200; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$n target/release/examples/per_frame $n
//!   callgrind_annotate --inclusive=yes --threshold=100 cg.$n | grep -E 'per_frame::|TOTALS'
//! done
//! ```
//!
//! System calls, which dominate the real cost, are not counted by callgrind.

use std::hint::black_box;
use std::os::unix::net::UnixStream;

use imsg_io::{Channel, Config};

const FRAMES: u32 = 1000;

#[inline(never)]
fn queue(tx: &mut Channel, payload: &[u8; 16]) {
    for i in 0..FRAMES {
        tx.compose(black_box(7), i, 0, None, black_box(payload))
            .unwrap();
    }
}

#[inline(never)]
fn flush(tx: &mut Channel) {
    tx.flush().unwrap();
}

#[inline(never)]
fn drain(rx: &mut Channel) -> u64 {
    let mut n = 0u64;
    while n < u64::from(FRAMES) {
        rx.read().unwrap();
        while let Some(m) = rx.get().unwrap() {
            n += m.payload().len() as u64 / 16;
        }
    }
    n
}

fn main() {
    let batches: u64 = std::env::args().nth(1).map_or(100, |s| s.parse().unwrap());
    let (a, b) = UnixStream::pair().unwrap();
    let mut tx = Channel::new(a, Config::default()).unwrap();
    let mut rx = Channel::new(b, Config::default()).unwrap();
    rx.set_recv_buffer_size(256 * 1024);
    let payload = [5u8; 16];
    let mut total = 0;
    for _ in 0..batches {
        queue(&mut tx, &payload);
        flush(&mut tx);
        total += drain(&mut rx);
    }
    assert_eq!(total, batches * u64::from(FRAMES));
}
