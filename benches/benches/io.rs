//! Benchmarks of the io layer: an `imsg_io::Channel` pair over a socketpair, writer
//! and reader on two threads, each beside a ceiling measured in the same run.
//!
//! - `io_stream_16B`: frames with 16-byte payloads (32 bytes a frame) streamed one
//!   way. `imsg` (no descriptor passing: `send`/`recv`), `imsg_fdpass` (the same
//!   on channels that allow descriptors: `sendmsg`/`recvmsg` and the descriptor
//!   guard), and the ceiling `raw`: the same bytes moved with
//!   plain blocking `write`/`read` in 256 KiB chunks. Bytes/s; frames/s = bytes/s / 32.
//!   The imsg writer works as an event loop does: its socket is non-blocking, it
//!   composes frames and tries one `write()` each time another `WRITE_BATCH` bytes
//!   are queued (256 KiB, the ceiling's write size; after a write that would
//!   block it does not retry before another batch is queued, as a loop waits for
//!   the next writable event), and waits (`flush`) only when 1 MiB is queued
//!   (the channel itself also sends ahead while queueing, once `WRITE_AHEAD` more
//!   bytes wait); the reader reads into a 256 KiB buffer, the ceiling's read size.
//!   `imsg_batch32k`: the same with a write tried every 32 KiB.
//! - `io_stream_16KiB`: frames of 16384 bytes **in total** (the default
//!   `max_frame`; payload 16368), same three lines. Bytes/s.
//! - `io_fd_frames`: frames with 16-byte payloads each carrying a descriptor (a
//!   duplicate of `/dev/null`, duplicated per frame and closed by the reader),
//!   frames/s; beside it `raw_sendmsg`: one raw `sendmsg` per 32-byte chunk with a
//!   descriptor and a raw `recvmsg` per chunk on the other side.
//! - `io_ping_pong`: round trip of a 16-byte-payload frame; ceiling `raw`: a 32-byte
//!   `write`/`read` ping-pong. Round trips/s.
//!
//! Every pair of threads (imsg and ceiling alike) runs with the writer (or the
//! ping-pong initiator) pinned to one CPU and the reader (or echo) to another,
//! when the process may use at least two: left to itself the scheduler sometimes
//! puts both on one CPU, which changes a line's figure several-fold from run to
//! run (the ceiling more than imsg).
//!
//! Run: `cargo bench -p imsg-benches --bench io`.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use imsg_io::{Channel, Config, ReadStatus};
use rustix::thread::CpuSet;

/// Frames per iteration of the streaming benchmarks.
const STREAM_FRAMES_SMALL: u64 = 32 * 1024;
const STREAM_FRAMES_LARGE: u64 = 256;
const FD_FRAMES: u64 = 2048;
/// The writer (non-blocking) tries a write each time this much more is queued
/// (the ceiling's write size)...
const WRITE_BATCH: usize = RAW_WRITE_CHUNK;
/// ... or this much, in the `imsg_batch32k` line...
const SMALL_WRITE_BATCH: usize = 32 * 1024;
/// ... and waits for the socket (flush) once this much is.
const MAX_BACKLOG: usize = 1024 * 1024;
/// Frames with descriptors: a write after every frame (each goes alone in its
/// `sendmsg`, as in the ceiling), a flush at 512 KiB (16384 descriptors held at
/// most, as before).
const FD_POLICY: (usize, usize) = (32, 512 * 1024);
/// Ceiling chunk sizes.
const RAW_WRITE_CHUNK: usize = 256 * 1024;
const RAW_READ_CHUNK: usize = READ_BUFFER;
/// Receive buffer of the imsg reader (`Channel::set_recv_buffer_size`).
const READ_BUFFER: usize = 256 * 1024;

/// The CPUs of the writer and of the reader: the first two the process may run
/// on (read once, before any thread is pinned), or None if it may use only one.
fn cpus() -> Option<(usize, usize)> {
    static CPUS: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *CPUS.get_or_init(|| {
        let set = rustix::thread::sched_getaffinity(None).ok()?;
        let mut allowed = (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c));
        Some((allowed.next()?, allowed.next()?))
    })
}

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).unwrap();
}

/// Pins the calling thread to the writer's CPU (call it in the timing thread
/// before each measurement).
fn pin_writer() {
    if let Some((w, _)) = cpus() {
        pin(w);
    }
}

/// Pins the calling thread to the reader's CPU.
fn pin_reader() {
    if let Some((_, r)) = cpus() {
        pin(r);
    }
}

/// Spawns the reader (or echo) thread, pinned to the reader's CPU, and pins the
/// calling thread to the writer's.
fn spawn_reader<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    pin_writer();
    thread::spawn(move || {
        pin_reader();
        f()
    })
}

/// A socketpair with the system's default buffer sizes.
fn socketpair() -> (UnixStream, UnixStream) {
    UnixStream::pair().unwrap()
}

fn pair(cfg: &Config) -> (Channel, Channel) {
    let (a, b) = socketpair();
    a.set_nonblocking(true).unwrap();
    let mut rx = Channel::new(b, cfg.clone()).unwrap();
    rx.set_recv_buffer_size(READ_BUFFER);
    (Channel::new(a, cfg.clone()).unwrap(), rx)
}

/// Reads `n` frames, checking their length; returns the channel.
fn read_frames(mut rx: Channel, n: u64, payload: usize, take_fds: bool) -> Channel {
    let mut got = 0;
    while got < n {
        while let Some(mut m) = rx.get().unwrap() {
            assert_eq!(m.payload().len(), payload);
            if take_fds {
                drop(m.take_fd().expect("descriptor"));
            }
            got += 1;
        }
        if got < n {
            match rx.read().unwrap() {
                ReadStatus::Read(_) => {}
                other => panic!("reader: {other:?}"),
            }
        }
    }
    rx
}

/// Streams `iters * frames` frames with `payload`-byte payloads from tx to rx.
fn stream_imsg(
    tx: &mut Channel,
    rx: &mut Option<Channel>,
    iters: u64,
    frames: u64,
    payload: usize,
    with_fd: Option<&OwnedFd>,
    (batch, backlog): (usize, usize),
) -> Duration {
    let n = iters * frames;
    let data = vec![0x5au8; payload];
    let r = rx.take().unwrap();
    let take_fds = with_fd.is_some();
    let reader = spawn_reader(move || read_frames(r, n, payload, take_fds));
    let start = Instant::now();
    let mut next_try = batch;
    for i in 0..n {
        let fd = with_fd.map(|f| rustix::io::fcntl_dupfd_cloexec(f, 0).unwrap());
        tx.compose(100, i as u32, 0, fd, &data).unwrap();
        // An event loop's pattern: write what the socket takes now, as queued
        // frames pile up; wait only when the backlog is large. A write that
        // would block is retried once more frames are queued, not at every frame
        // (a loop would wait for the socket to become writable).
        if tx.queued_bytes() >= next_try {
            tx.write().unwrap();
            if tx.queued_bytes() >= backlog {
                tx.flush().unwrap();
            }
            next_try = tx.queued_bytes() + batch;
        }
    }
    tx.flush().unwrap();
    *rx = Some(reader.join().unwrap());
    start.elapsed()
}

/// Moves `total` bytes with plain write/read in large chunks.
fn stream_raw(a: &UnixStream, b: &mut Option<UnixStream>, total: usize) -> Duration {
    let mut r = b.take().unwrap();
    let reader = spawn_reader(move || {
        let mut buf = vec![0u8; RAW_READ_CHUNK];
        let mut left = total;
        while left > 0 {
            let n = rustix::io::read(&r, &mut buf[..]).unwrap();
            assert!(n > 0);
            left -= n;
        }
        std::hint::black_box(&mut r);
        r
    });
    let chunk = vec![0x5au8; RAW_WRITE_CHUNK];
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = rustix::io::write(a, &chunk[..left.min(RAW_WRITE_CHUNK)]).unwrap();
        left -= n;
    }
    *b = Some(reader.join().unwrap());
    start.elapsed()
}

fn stream_group(g: &mut BenchmarkGroup<'_, WallTime>, frames: u64, payload: usize) {
    let frame = (payload + 16) as u64;
    g.throughput(Throughput::Bytes(frames * frame));
    let mut lines = vec![
        ("imsg", Config::default(), (WRITE_BATCH, MAX_BACKLOG)),
        (
            "imsg_fdpass",
            Config::default().with_fdpass(true),
            (WRITE_BATCH, MAX_BACKLOG),
        ),
    ];
    if payload == 16 {
        lines.push((
            "imsg_batch32k",
            Config::default(),
            (SMALL_WRITE_BATCH, MAX_BACKLOG),
        ));
    }
    for (name, cfg, policy) in lines {
        let (mut tx, rx) = pair(&cfg);
        let mut rx = Some(rx);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                stream_imsg(&mut tx, &mut rx, iters, frames, payload, None, policy)
            })
        });
    }
    let (a, b) = socketpair();
    let mut b = Some(b);
    g.bench_function("raw", |bn| {
        bn.iter_custom(|iters| stream_raw(&a, &mut b, (iters * frames * frame) as usize))
    });
}

fn stream_small(c: &mut Criterion) {
    let mut g = c.benchmark_group("io_stream_16B");
    stream_group(&mut g, STREAM_FRAMES_SMALL, 16);
    g.finish();
}

fn stream_large(c: &mut Criterion) {
    let mut g = c.benchmark_group("io_stream_16KiB");
    stream_group(&mut g, STREAM_FRAMES_LARGE, imsg_io::MAX_IMSGSIZE - 16);
    g.finish();
}

fn fd_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("io_fd_frames");
    g.throughput(Throughput::Elements(FD_FRAMES));
    let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let (mut tx, rx) = pair(&Config::default().with_fdpass(true));
    let mut rx = Some(rx);
    g.bench_function("imsg", |b| {
        b.iter_custom(|iters| {
            stream_imsg(
                &mut tx,
                &mut rx,
                iters,
                FD_FRAMES,
                16,
                Some(&null),
                FD_POLICY,
            )
        })
    });
    let (a, b) = socketpair();
    let mut b = Some(b);
    g.bench_function("raw_sendmsg", |bn| {
        bn.iter_custom(|iters| {
            let n = iters * FD_FRAMES;
            let r = b.take().unwrap();
            let reader = spawn_reader(move || {
                let mut buf = [0u8; 32];
                for _ in 0..n {
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
                    let m = rustix::net::recvmsg(
                        &r,
                        &mut [rustix::io::IoSliceMut::new(&mut buf)],
                        &mut control,
                        rustix::net::RecvFlags::CMSG_CLOEXEC,
                    )
                    .unwrap();
                    assert_eq!(m.bytes, 32);
                    drop(control); // closes the received descriptor
                }
                r
            });
            let frame = [0u8; 32];
            let start = Instant::now();
            for _ in 0..n {
                let fd = rustix::io::fcntl_dupfd_cloexec(&null, 0).unwrap();
                imsg_io::raw::sendmsg(a.as_fd(), &frame, &[fd.as_fd()]).unwrap();
            }
            b = Some(reader.join().unwrap());
            start.elapsed()
        })
    });
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    const ROUNDS: u64 = 1000;
    let mut g = c.benchmark_group("io_ping_pong");
    g.throughput(Throughput::Elements(ROUNDS));
    // Blocking sockets on both sides, as the raw ping-pong.
    let (x, y) = socketpair();
    let mut a = Channel::new(x, Config::default()).unwrap();
    let b = Channel::new(y, Config::default()).unwrap();
    let mut b = Some(b);
    g.bench_function("imsg", |bn| {
        bn.iter_custom(|iters| {
            let n = iters * ROUNDS;
            let mut peer = b.take().unwrap();
            let echo = spawn_reader(move || {
                for _ in 0..n {
                    let m = loop {
                        if let Some(m) = peer.get_owned().unwrap() {
                            break m;
                        }
                        peer.read().unwrap();
                    };
                    peer.forward(&m.as_message()).unwrap();
                    peer.flush().unwrap();
                }
                peer
            });
            let start = Instant::now();
            for i in 0..n {
                a.compose(1, i as u32, 0, None, &[7; 16]).unwrap();
                a.flush().unwrap();
                loop {
                    if let Some(m) = a.get().unwrap() {
                        assert_eq!(m.peerid(), i as u32);
                        break;
                    }
                    a.read().unwrap();
                }
            }
            b = Some(echo.join().unwrap());
            start.elapsed()
        })
    });
    let (x, y) = socketpair();
    let mut y = Some(y);
    g.bench_function("raw", |bn| {
        bn.iter_custom(|iters| {
            let n = iters * ROUNDS;
            let peer = y.take().unwrap();
            let echo = spawn_reader(move || {
                let mut buf = [0u8; 32];
                for _ in 0..n {
                    let mut got = 0;
                    while got < 32 {
                        got += rustix::io::read(&peer, &mut buf[got..]).unwrap();
                    }
                    rustix::io::write(&peer, &buf).unwrap();
                }
                peer
            });
            let mut buf = [7u8; 32];
            let start = Instant::now();
            for _ in 0..n {
                rustix::io::write(&x, &buf).unwrap();
                let mut got = 0;
                while got < 32 {
                    got += rustix::io::read(&x, &mut buf[got..]).unwrap();
                }
            }
            y = Some(echo.join().unwrap());
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, stream_small, stream_large, fd_frames, ping_pong);
criterion_main!(benches);
