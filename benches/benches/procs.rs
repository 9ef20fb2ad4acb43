//! Process-based workloads: a forked writer process and a forked reader process
//! over one `AF_UNIX` socketpair, each imsg line next to a raw-socket ceiling
//! measured in the same run (the same bytes moved with plain blocking
//! `write`/`read`, or `sendmsg`/`recvmsg` with one descriptor a frame).
//!
//! Lines (counts are the defaults; `IMSG_BENCH_SCALE=10` divides them by 10):
//!
//! - `small16`: 2 M frames with 16-byte payloads, a flush every 1,000 frames.
//! - `mid256`: 2 M frames with 256-byte payloads, a flush every 1,000 frames.
//! - `large/1`, `large/100`, `large/1000`: 200 k frames with 16,368-byte payloads
//!   (16 KiB frames), a flush every 1, 100 and 1,000 frames (16 MiB queued).
//! - `fd`: 200 k frames with 8-byte payloads, each with a descriptor (a duplicate
//!   of `/dev/null`, duplicated per frame by the writer and closed by the reader,
//!   in the ceiling too), a flush every 100 frames.
//! - `pingpong`: 20 k round trips of a 16-byte-payload frame.
//!
//! The raw writer sends the very bytes imsg would (encoded frames), one `write`
//! per flush (cadence 1: one frame a write); the raw reader reads into a 64 KiB
//! buffer (imsg-io's default receive buffer). Both sides use blocking sockets.
//!
//! Each line gives throughput, imsg/raw, both sides' CPU time, minor page
//! faults and voluntary context switches ("sleeps": how often a side waited for
//! the other; `getrusage` of each child through `wait4`), and the allocations each
//! side made while moving the frames (a counting global allocator), and the load
//! average when it ran. `IMSG_BENCH_ONLY=large` runs only lines whose name
//! contains `large`; `IMSG_BENCH_REPS=3` repeats every line (raw and imsg
//! alternate).
//!
//! Run: `nice cargo bench -p imsg-benches --bench procs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use imsg_codec::{Dialect, Framing, Header};
use imsg_io::{Channel, Config, ReadStatus};
use rustix::io::IoSlice;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::thread::CpuSet;

/// Counts allocations and reallocations.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a
// counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const READ_BUF: usize = 64 * 1024;
const TY: u32 = 7;

#[derive(Clone, Copy)]
enum Kind {
    /// `n` frames of `payload` bytes, a flush every `cadence` frames.
    Stream { payload: usize, cadence: usize },
    /// `n` frames of 8 bytes, each with a descriptor, a flush every `cadence`.
    Fd { cadence: usize },
    /// `n` round trips of a 16-byte-payload frame.
    PingPong,
}

struct Workload {
    name: String,
    n: usize,
    kind: Kind,
}

/// What one child measured, sent to the parent over a pipe.
#[derive(Clone, Copy, Default)]
struct ChildReport {
    /// Allocations while moving the frames.
    allocs: u64,
    /// Frames (or round trips) done.
    frames: u64,
}

/// The parent's figures for one run.
struct RunResult {
    secs: f64,
    bytes: u64,
    frames: u64,
    /// Each side: CPU seconds, minor faults, allocations, voluntary context
    /// switches (how often it slept waiting for the other side).
    w: (f64, i64, u64, i64),
    r: (f64, i64, u64, i64),
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Pins the calling process to the `i`-th allowed CPU (when there are two or
/// more): the writer on one, the reader on the other.
fn pin(i: usize) {
    let Ok(set) = rustix::thread::sched_getaffinity(None) else {
        return;
    };
    let allowed: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
    if allowed.len() >= 2 {
        let mut one = CpuSet::new();
        one.set(allowed[i % allowed.len()]);
        let _ = rustix::thread::sched_setaffinity(None, &one);
    }
}

fn frame_bytes(payload: &[u8], fd: bool) -> Vec<u8> {
    let framing = Framing::standard(Dialect::Current);
    let mut out = Vec::new();
    framing
        .emitv(&mut out, Header::new(TY, 0, 0).with_fd(fd), &[payload])
        .expect("frame fits");
    out
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).unwrap()
}

fn fd_config() -> Config {
    Config::default().with_fdpass(true)
}

// ---- imsg sides ----

fn imsg_writer(sock: UnixStream, w: &Workload) -> ChildReport {
    let fdpass = matches!(w.kind, Kind::Fd { .. });
    let mut ch = Channel::new(sock, fd_config().with_fdpass(fdpass)).unwrap();
    match w.kind {
        Kind::Stream { payload, cadence } => {
            let data = vec![0x5a; payload];
            let a0 = ALLOCS.load(Ordering::Relaxed);
            // Batches counted down, not `i % cadence` per frame: that division
            // cost 0.8 ns of the 5.9 ns a 16-byte frame took to queue (one
            // thread, best of 20), a cost of the harness the ceiling does not pay.
            let mut left = w.n;
            while left > 0 {
                let k = left.min(cadence);
                for _ in 0..k {
                    ch.compose(TY, 0, 0, None, &data).unwrap();
                }
                ch.flush().unwrap();
                left -= k;
            }
            ChildReport {
                allocs: ALLOCS.load(Ordering::Relaxed) - a0,
                frames: w.n as u64,
            }
        }
        Kind::Fd { cadence } => {
            let null = devnull();
            let a0 = ALLOCS.load(Ordering::Relaxed);
            let mut left = w.n;
            while left > 0 {
                let k = left.min(cadence);
                for _ in 0..k {
                    ch.compose(TY, 0, 0, Some(dup(null.as_fd())), &[1; 8])
                        .unwrap();
                }
                ch.flush().unwrap();
                left -= k;
            }
            ChildReport {
                allocs: ALLOCS.load(Ordering::Relaxed) - a0,
                frames: w.n as u64,
            }
        }
        Kind::PingPong => {
            let a0 = ALLOCS.load(Ordering::Relaxed);
            for _ in 0..w.n {
                ch.compose(TY, 0, 0, None, &[3; 16]).unwrap();
                ch.flush().unwrap();
                let mut got = false;
                while !got {
                    match ch.read().unwrap() {
                        ReadStatus::Read(_) => {}
                        s => panic!("ping: {s:?}"),
                    }
                    while let Some(m) = ch.get().unwrap() {
                        assert_eq!(m.payload().len(), 16);
                        got = true;
                    }
                }
            }
            ChildReport {
                allocs: ALLOCS.load(Ordering::Relaxed) - a0,
                frames: w.n as u64,
            }
        }
    }
}

fn imsg_reader(sock: UnixStream, w: &Workload) -> ChildReport {
    let fdpass = matches!(w.kind, Kind::Fd { .. });
    let mut ch = Channel::new(sock, fd_config().with_fdpass(fdpass)).unwrap();
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let mut frames = 0u64;
    if let Kind::PingPong = w.kind {
        for _ in 0..w.n {
            let mut got = false;
            while !got {
                match ch.read().unwrap() {
                    ReadStatus::Read(_) => {}
                    s => panic!("pong: {s:?}"),
                }
                while let Some(m) = ch.get().unwrap() {
                    assert_eq!(m.payload().len(), 16);
                    got = true;
                }
            }
            ch.compose(TY, 0, 0, None, &[4; 16]).unwrap();
            ch.flush().unwrap();
            frames += 1;
        }
    } else {
        loop {
            match ch.read().unwrap() {
                ReadStatus::Read(_) => {}
                ReadStatus::Eof => break,
                ReadStatus::FdGuard => std::thread::sleep(imsg_io::FD_GUARD_RETRY),
                s => panic!("read: {s:?}"),
            }
            while let Some(mut m) = ch.get().unwrap() {
                frames += 1;
                if fdpass {
                    assert!(m.take_fd().is_some(), "descriptor missing");
                }
            }
        }
        assert_eq!(frames, w.n as u64, "frames lost");
    }
    ChildReport {
        allocs: ALLOCS.load(Ordering::Relaxed) - a0,
        frames,
    }
}

// ---- raw sides ----

fn send_with_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) {
    let fds = [fd];
    let mut space = [MaybeUninit::<u8>::uninit(); 64];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(n, bytes.len(), "short sendmsg");
}

fn raw_writer(mut sock: UnixStream, w: &Workload) -> ChildReport {
    let a0;
    match w.kind {
        Kind::Stream { payload, cadence } => {
            let one = frame_bytes(&vec![0x5a; payload], false);
            let batch = one.repeat(cadence.min(w.n));
            a0 = ALLOCS.load(Ordering::Relaxed);
            let mut left = w.n;
            while left > 0 {
                let k = left.min(cadence);
                sock.write_all(&batch[..k * one.len()]).unwrap();
                left -= k;
            }
        }
        Kind::Fd { .. } => {
            let one = frame_bytes(&[1; 8], true);
            let null = devnull();
            a0 = ALLOCS.load(Ordering::Relaxed);
            for _ in 0..w.n {
                // The same work as a sender that hands the descriptor over: a
                // duplicate, sent, then closed.
                let d = dup(null.as_fd());
                send_with_fd(sock.as_fd(), &one, d.as_fd());
                drop(d);
            }
        }
        Kind::PingPong => {
            let one = frame_bytes(&[3; 16], false);
            let mut back = vec![0; one.len()];
            a0 = ALLOCS.load(Ordering::Relaxed);
            for _ in 0..w.n {
                sock.write_all(&one).unwrap();
                sock.read_exact(&mut back).unwrap();
            }
        }
    }
    ChildReport {
        allocs: ALLOCS.load(Ordering::Relaxed) - a0,
        frames: w.n as u64,
    }
}

fn raw_reader(mut sock: UnixStream, w: &Workload) -> ChildReport {
    let mut buf = vec![0u8; READ_BUF];
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let mut frames = 0u64;
    match w.kind {
        Kind::Stream { payload, .. } => {
            let total = (w.n * (payload + 16)) as u64;
            let mut got = 0u64;
            loop {
                let n = sock.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            assert_eq!(got, total);
            frames = w.n as u64;
        }
        Kind::Fd { .. } => loop {
            let mut space = [MaybeUninit::<u8>::uninit(); 64];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = rustix::net::recvmsg(
                sock.as_fd(),
                &mut [rustix::io::IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .unwrap();
            if msg.bytes == 0 {
                break;
            }
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = m {
                    for f in fds {
                        frames += 1;
                        drop(f);
                    }
                }
            }
        },
        Kind::PingPong => {
            let mut one = vec![0; 32];
            let back = frame_bytes(&[4; 16], false);
            for _ in 0..w.n {
                sock.read_exact(&mut one).unwrap();
                sock.write_all(&back).unwrap();
                frames += 1;
            }
        }
    }
    assert_eq!(frames, w.n as u64, "frames lost");
    ChildReport {
        allocs: ALLOCS.load(Ordering::Relaxed) - a0,
        frames,
    }
}

// ---- running ----

type Side = fn(UnixStream, &Workload) -> ChildReport;

/// Forks a child that runs `side` on `sock`, pinned to CPU slot `cpu`, and writes
/// its report into `report`. Returns its pid.
fn spawn(side: Side, sock: UnixStream, w: &Workload, cpu: usize, report: OwnedFd) -> i32 {
    // SAFETY: the process is single-threaded here (the bench starts no thread),
    // so the child may run any code; it leaves with `_exit` and never returns
    // into the parent's frames.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        pin(cpu);
        let r = side(sock, w);
        let mut out = std::fs::File::from(report);
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&r.allocs.to_ne_bytes());
        msg[8..].copy_from_slice(&r.frames.to_ne_bytes());
        out.write_all(&msg).unwrap();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Waits for `pid`: (CPU seconds, minor faults).
fn reap(pid: i32) -> (f64, i64, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by wait4 before it is read.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and ru are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {pid} failed: status {status}"
    );
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime) + t(ru.ru_stime), ru.ru_minflt, ru.ru_nvcsw)
}

fn read_report(fd: OwnedFd) -> ChildReport {
    let mut f = std::fs::File::from(fd);
    let mut msg = [0u8; 16];
    f.read_exact(&mut msg).unwrap();
    ChildReport {
        allocs: u64::from_ne_bytes(msg[..8].try_into().unwrap()),
        frames: u64::from_ne_bytes(msg[8..].try_into().unwrap()),
    }
}

fn run(w: &Workload, writer: Side, reader: Side) -> RunResult {
    let (a, b) = UnixStream::pair().unwrap();
    let (wr_r, wr_w) = rustix::pipe::pipe().unwrap();
    let (rd_r, rd_w) = rustix::pipe::pipe().unwrap();
    let start = Instant::now();
    let wpid = spawn(writer, a, w, 0, wr_w);
    let rpid = spawn(reader, b, w, 1, rd_w);
    let wres = reap(wpid);
    let rres = reap(rpid);
    let secs = start.elapsed().as_secs_f64();
    let wrep = read_report(wr_r);
    let rrep = read_report(rd_r);
    let bytes = match w.kind {
        Kind::Stream { payload, .. } => (w.n * (payload + 16)) as u64,
        Kind::Fd { .. } => (w.n * 24) as u64,
        Kind::PingPong => (w.n * 64) as u64,
    };
    RunResult {
        secs,
        bytes,
        frames: rrep.frames,
        w: (wres.0, wres.1, wrep.allocs, wres.2),
        r: (rres.0, rres.1, rrep.allocs, rres.2),
    }
}

fn show(label: &str, r: &RunResult, kind: Kind) -> f64 {
    let rate = match kind {
        Kind::Stream { .. } => r.bytes as f64 / r.secs / (1 << 20) as f64,
        Kind::Fd { .. } | Kind::PingPong => r.frames as f64 / r.secs / 1e3,
    };
    let unit = match kind {
        Kind::Stream { .. } => "MiB/s",
        Kind::Fd { .. } => "k frames/s",
        Kind::PingPong => "k round trips/s",
    };
    print!(
        "  {label:<5} {rate:>9.1} {unit:<15} {:.3} s  cpu w/r {:.2}/{:.2} s  minflt w/r {}/{}  allocs w/r {}/{}  sleeps w/r {}/{}",
        r.secs, r.w.0, r.r.0, r.w.1, r.r.1, r.w.2, r.r.2, r.w.3, r.r.3
    );
    rate
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the arguments.
    let scale = env_usize("IMSG_BENCH_SCALE", 1).max(1);
    let reps = env_usize("IMSG_BENCH_REPS", 1).max(1);
    let only = std::env::var("IMSG_BENCH_ONLY").unwrap_or_default();
    let big = 200_000 / scale;
    let mut list = vec![
        Workload {
            name: "small16".into(),
            n: 2_000_000 / scale,
            kind: Kind::Stream {
                payload: 16,
                cadence: 1000,
            },
        },
        Workload {
            name: "mid256".into(),
            n: 2_000_000 / scale,
            kind: Kind::Stream {
                payload: 256,
                cadence: 1000,
            },
        },
    ];
    for cadence in [1, 100, 1000] {
        list.push(Workload {
            name: format!("large/{cadence}"),
            n: big,
            kind: Kind::Stream {
                payload: 16368,
                cadence,
            },
        });
    }
    list.push(Workload {
        name: "fd".into(),
        n: big,
        kind: Kind::Fd { cadence: 100 },
    });
    list.push(Workload {
        name: "pingpong".into(),
        n: 20_000 / scale,
        kind: Kind::PingPong,
    });
    list.retain(|w| w.name.contains(&only));
    for w in &list {
        for rep in 0..reps {
            println!(
                "{} (n = {}, rep {}, load {})",
                w.name,
                w.n,
                rep + 1,
                loadavg()
            );
            let raw = run(w, raw_writer, raw_reader);
            let c = show("raw", &raw, w.kind);
            println!();
            let imsg = run(w, imsg_writer, imsg_reader);
            let i = show("imsg", &imsg, w.kind);
            println!("  imsg/raw {:.2}", i / c);
        }
    }
}
