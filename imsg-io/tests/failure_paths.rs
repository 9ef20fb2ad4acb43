//! Failure paths, each ending with the count of open descriptors
//! unchanged. Every test in this binary holds `LOCK`, so no other test thread opens
//! or closes descriptors while one counts them; the descriptor-limit test runs in
//! a child process (this binary again, with an environment variable).

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use imsg_io::{Channel, Config, Dialect, Error, ReadStatus, WriteStatus};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::IoSlice;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

mod child_process;

static LOCK: Mutex<()> = Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs `body` holding the lock, then checks that the descriptor count is back
/// where it was (everything `body` opened is dropped by then).
fn with_fd_check(body: impl FnOnce()) {
    let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = open_fds();
    body();
    assert_eq!(open_fds(), before, "descriptors leaked or lost");
}

/// A socketpair: the sending end, and a channel with descriptor passing on the
/// other.
fn fdpass_receiver() -> (UnixStream, Channel) {
    let (a, b) = UnixStream::pair().unwrap();
    (a, Channel::new(b, fdpass()).unwrap())
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn fdpass() -> Config {
    Config::default().with_fdpass(true)
}

/// A frame's bytes in the legacy dialect.
fn legacy_frame(ty: u32, payload: &[u8], flagged: bool) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&ty.to_ne_bytes());
    f.extend_from_slice(&((16 + payload.len()) as u16).to_ne_bytes());
    f.extend_from_slice(&(flagged as u16).to_ne_bytes());
    f.extend_from_slice(&0u32.to_ne_bytes());
    f.extend_from_slice(&0u32.to_ne_bytes());
    f.extend_from_slice(payload);
    f
}

/// One raw `sendmsg` of `bytes` with `fds` attached.
fn send_raw(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(n, bytes.len());
}

/// One raw `sendmsg` of `bytes` with a descriptor of `/dev/null`, closed here
/// once sent.
fn send_with_devnull(sock: BorrowedFd<'_>, bytes: &[u8]) {
    let null = devnull();
    send_raw(sock, bytes, &[null.as_fd()]);
}

fn read_all_frames(rx: &mut Channel) -> Vec<imsg_io::OwnedMessage> {
    let mut out = Vec::new();
    loop {
        while let Some(m) = rx.get_owned().unwrap() {
            out.push(m);
        }
        match rx.read() {
            Ok(ReadStatus::Read(_)) => {}
            Ok(ReadStatus::Eof) => return out,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn short_writes_resume_exactly() {
    with_fd_check(|| {
        let (a, b) = UnixStream::pair().unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        a.set_nonblocking(true).unwrap();
        let mut tx = Channel::new(a, fdpass()).unwrap();
        const N: u32 = 3000;
        for i in 0..N {
            let len = (i as usize * 37) % 3000;
            let payload: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8).collect();
            if i % 50 == 0 {
                let (r, w) = rustix::pipe::pipe().unwrap();
                rustix::io::write(&w, &i.to_ne_bytes()).unwrap();
                tx.compose(i, i, 0, Some(r), &payload).unwrap();
            } else {
                tx.compose(i, i, 0, None, &payload).unwrap();
            }
        }
        let reader = std::thread::spawn(move || {
            let mut rx = Channel::new(b, fdpass()).unwrap();
            rx.set_recv_buffer_size(3000); // small reads as well
            let frames = read_all_frames(&mut rx);
            assert_eq!(frames.len(), N as usize);
            for (i, mut m) in frames.into_iter().enumerate() {
                let i = i as u32;
                let len = (i as usize * 37) % 3000;
                assert_eq!((m.msg_type(), m.peerid()), (i, i));
                let want: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8).collect();
                assert_eq!(m.payload(), &want[..], "frame {i} intact");
                assert_eq!(m.flagged_fd(), i.is_multiple_of(50));
                if let Some(fd) = m.take_fd() {
                    let mut got = [0u8; 4];
                    std::fs::File::from(fd).read_exact(&mut got).unwrap();
                    assert_eq!(u32::from_ne_bytes(got), i, "descriptor of frame {i}");
                } else {
                    assert_ne!(i % 50, 0, "frame {i} lost its descriptor");
                }
            }
        });
        // Write by hand to see partial writes, waiting for POLLOUT as an event
        // loop would. (Queueing already sent what the 4 KiB socket buffer took.)
        let mut partial = 0;
        let mut would_block = 0;
        while tx.queue_len() > 0 {
            let before = tx.queued_bytes();
            let n = match tx.write().unwrap() {
                WriteStatus::Wrote(n) => n,
                _ => 0,
            };
            if n == 0 {
                would_block += 1;
                let mut fds = [PollFd::new(&tx, PollFlags::OUT)];
                poll(&mut fds, None).unwrap();
            } else if n < before {
                partial += 1;
            }
        }
        drop(tx);
        reader.join().unwrap();
        assert!(partial > 0 && would_block > 0, "{partial} {would_block}");
    });
}

#[test]
fn peer_dies_mid_frame() {
    with_fd_check(|| {
        let (a, mut rx) = fdpass_receiver();
        let whole = legacy_frame(1, b"complete", false);
        let cut = legacy_frame(2, &[7; 84], true);
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&cut[..66]);
        send_with_devnull(a.as_fd(), &bytes);
        drop(a);
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(bytes.len()));
        assert_eq!(
            rx.pending_fds(),
            1,
            "kept for the frame that started in this read"
        );
        let m = rx.get().unwrap().unwrap();
        assert_eq!((m.msg_type(), m.payload()), (1, &b"complete"[..]));
        assert!(m.fd().is_none());
        drop(m);
        assert!(rx.get().unwrap().is_none());
        assert!(matches!(
            rx.read(),
            Err(Error::UnexpectedEof { buffered: 66 })
        ));
        // EOF at a frame boundary is a plain Eof.
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut rx2 = Channel::new(b, Config::default()).unwrap();
        a.write_all(&whole).unwrap();
        drop(a);
        assert_eq!(read_all_frames(&mut rx2).len(), 1);
        assert_eq!(rx2.read().unwrap(), ReadStatus::Eof);
    });
}

#[test]
fn flagged_frame_without_descriptor() {
    with_fd_check(|| {
        let (a, mut rx) = fdpass_receiver();
        // A peer without descriptor passing marks the frame but sends no fd.
        send_raw(a.as_fd(), &legacy_frame(1, b"no fd", true), &[]);
        // The next flagged frame's descriptor must not slide onto the first.
        send_with_devnull(a.as_fd(), &legacy_frame(2, b"fd", true));
        drop(a);
        let mut frames = read_all_frames(&mut rx).into_iter();
        let mut m = frames.next().unwrap();
        assert_eq!(m.msg_type(), 1);
        assert!(m.flagged_fd());
        assert!(m.take_fd().is_none());
        let mut m = frames.next().unwrap();
        assert_eq!(m.msg_type(), 2);
        assert!(m.flagged_fd());
        assert!(m.take_fd().is_some());
    });
}

#[test]
fn descriptor_without_flagged_frame() {
    with_fd_check(|| {
        let (a, mut rx) = fdpass_receiver();
        // 1. An fd with an unflagged frame: closed, the frame delivered.
        send_with_devnull(a.as_fd(), &legacy_frame(1, b"stray", false));
        assert!(matches!(rx.read().unwrap(), ReadStatus::Read(21)));
        let m = rx.get().unwrap().unwrap();
        assert!(!m.flagged_fd() && m.fd().is_none());
        drop(m);
        assert_eq!(rx.pending_fds(), 0, "closed once its frame was taken");
        // 2. An fd arriving in the middle of a frame (no frame starts in its read):
        // closed at once, not kept for a later frame.
        let f = legacy_frame(2, &[1; 40], true);
        send_raw(a.as_fd(), &f[..30], &[]);
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(30));
        send_with_devnull(a.as_fd(), &f[30..]);
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(26));
        assert_eq!(rx.pending_fds(), 0);
        let m = rx.get().unwrap().unwrap();
        assert!(m.flagged_fd() && m.fd().is_none());
        drop(m);
        // 3. Then a proper frame still gets its descriptor.
        send_with_devnull(a.as_fd(), &legacy_frame(3, b"ok", true));
        rx.read().unwrap();
        let mut m = rx.get().unwrap().unwrap();
        assert_eq!(m.msg_type(), 3);
        assert!(m.take_fd().is_some());
    });
}

#[test]
fn descriptor_kept_when_read_ends_inside_its_header() {
    with_fd_check(|| {
        let (a, mut rx) = fdpass_receiver();
        let first = legacy_frame(1, &[0; 84], false); // 100 bytes, no fd
        let second = legacy_frame(2, b"mine", true);
        send_raw(a.as_fd(), &first, &[]);
        send_with_devnull(a.as_fd(), &second);
        // The read takes the first frame and only 8 bytes of the second's header;
        // Linux delivers the second frame's descriptor with those 8 bytes.
        rx.set_recv_buffer_size(108);
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(108));
        assert_eq!(rx.pending_fds(), 1);
        let m = rx.get().unwrap().unwrap();
        assert_eq!(m.msg_type(), 1);
        assert!(m.fd().is_none());
        drop(m);
        assert!(rx.get().unwrap().is_none());
        assert_eq!(rx.pending_fds(), 1, "kept while the header is incomplete");
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(12));
        let mut m = rx.get().unwrap().unwrap();
        assert_eq!((m.msg_type(), m.payload()), (2, &b"mine"[..]));
        let fd = m.take_fd().expect("descriptor attached to its frame");
        assert_eq!(
            rustix::fs::fstat(&fd).unwrap().st_rdev,
            rustix::fs::stat("/dev/null").unwrap().st_rdev
        );
    });
}

#[test]
fn flagged_frame_without_descriptor_then_split_header() {
    with_fd_check(|| {
        // A flagged frame without fd, then the 8 first bytes of a flagged frame
        // with its fd, in one read: the fd is the second frame's, so the first
        // frame is held back until the second header is complete.
        let (a, mut rx) = fdpass_receiver();
        let first = legacy_frame(1, &[0; 84], true);
        let second = legacy_frame(2, b"mine", true);
        send_raw(a.as_fd(), &first, &[]);
        send_with_devnull(a.as_fd(), &second);
        rx.set_recv_buffer_size(108);
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(108));
        assert!(rx.get().unwrap().is_none(), "held back");
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(12));
        let mut m = rx.get().unwrap().unwrap();
        assert_eq!(m.msg_type(), 1);
        assert!(m.flagged_fd() && m.take_fd().is_none());
        let mut m = rx.get().unwrap().unwrap();
        assert_eq!(m.msg_type(), 2);
        assert!(m.take_fd().is_some());
        // At end of file nothing is held back: the same read cut, then EOF.
        let (a, mut rx) = fdpass_receiver();
        send_raw(a.as_fd(), &first, &[]);
        send_with_devnull(a.as_fd(), &second[..8]);
        drop(a);
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(108));
        assert!(rx.get().unwrap().is_none());
        assert!(matches!(
            rx.read(),
            Err(Error::UnexpectedEof { buffered: 8 })
        ));
        let mut m = rx.get().unwrap().unwrap();
        assert_eq!(m.msg_type(), 1);
        // Its header was never complete: the fd went to the only flagged frame seen.
        assert!(m.take_fd().is_some());
    });
}

#[test]
fn oversized_frame() {
    with_fd_check(|| {
        for d in [Dialect::Legacy, Dialect::Current] {
            let (a, b) = UnixStream::pair().unwrap();
            let cfg = fdpass().with_dialect(d).with_max_frame(1000).unwrap();
            let mut rx = Channel::new(b, cfg).unwrap();
            let mut hdr = [0u8; 16];
            hdr[4..8].copy_from_slice(
                &match d {
                    Dialect::Legacy => 1001u32 | (1 << 16), // len 1001, HASFD
                    Dialect::Current => 1001u32 | 0x8000_0000,
                }
                .to_ne_bytes(),
            );
            send_with_devnull(a.as_fd(), &hdr);
            assert_eq!(rx.read().unwrap(), ReadStatus::Read(16));
            for _ in 0..2 {
                assert!(matches!(
                    rx.get(),
                    Err(Error::Frame(imsg_codec::FrameError::TooLong {
                        len: 1001,
                        max: 1000
                    }))
                ));
            }
            assert!(matches!(rx.read(), Err(Error::Frame(_))));
        }
    });
}

#[test]
fn closed_peer_on_write() {
    with_fd_check(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a, fdpass()).unwrap();
        drop(b);
        for i in 0..10 {
            tx.compose(i, 0, 0, Some(devnull()), &[0; 100]).unwrap();
        }
        assert_eq!(tx.queue_len(), 10);
        // No SIGPIPE (the test would die), a typed error, nothing left queued.
        assert!(matches!(tx.flush(), Err(Error::PeerClosed)));
        assert_eq!((tx.queue_len(), tx.queued_bytes()), (0, 0));
        assert!(matches!(tx.write(), Ok(WriteStatus::Empty)));
    });
}

#[test]
fn fd_refused_without_fdpass() {
    with_fd_check(|| {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a, Config::default()).unwrap();
        tx.compose(1, 0, 0, None, b"queued").unwrap();
        assert!(matches!(
            tx.compose(2, 0, 0, Some(devnull()), b"x"),
            Err(Error::FdPassingDisabled)
        ));
        assert_eq!(tx.queue_len(), 1);
    });
}

#[test]
fn truncated_control_data() {
    with_fd_check(|| {
        let (a, mut rx) = fdpass_receiver();
        let (n1, n2, n3) = (devnull(), devnull(), devnull());
        // More descriptors than one receive takes: the kernel truncates.
        send_raw(
            a.as_fd(),
            &legacy_frame(1, b"three", true),
            &[n1.as_fd(), n2.as_fd(), n3.as_fd()],
        );
        drop((n1, n2, n3));
        send_raw(a.as_fd(), &legacy_frame(2, b"next", false), &[]);
        assert!(matches!(rx.read(), Err(Error::DescriptorsLost)));
        assert_eq!(
            rx.pending_fds(),
            0,
            "the descriptors that arrived were closed"
        );
        let mut m = rx.get().unwrap().unwrap();
        assert_eq!((m.msg_type(), m.payload()), (1, &b"three"[..]));
        assert!(m.flagged_fd() && m.take_fd().is_none());
        drop(m);
        drop(a);
        let rest = read_all_frames(&mut rx);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].payload(), b"next");
    });
}

#[test]
fn write_batches_and_splits_at_descriptors() {
    with_fd_check(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a, fdpass()).unwrap();
        // 1000 small frames go out in one system call.
        for i in 0..1000 {
            tx.compose(i, 0, 0, None, &[0; 4]).unwrap();
        }
        assert_eq!(tx.write().unwrap(), WriteStatus::Wrote(20_000));
        assert_eq!(tx.queue_len(), 0);
        // Each descriptor-carrying frame starts a new sendmsg.
        tx.compose(1, 0, 0, None, &[0; 4]).unwrap(); // 20
        tx.compose(2, 0, 0, Some(devnull()), &[0; 4]).unwrap(); // 20
        tx.compose(3, 0, 0, None, &[0; 14]).unwrap(); // 30
        tx.compose(4, 0, 0, Some(devnull()), &[]).unwrap(); // 16
        tx.compose(5, 0, 0, Some(devnull()), &[]).unwrap(); // 16
        let sizes: Vec<WriteStatus> = (0..4).map(|_| tx.write().unwrap()).collect();
        use WriteStatus::Wrote;
        assert_eq!(sizes, [Wrote(20), Wrote(50), Wrote(16), Wrote(16)]);
        assert_eq!(tx.write().unwrap(), WriteStatus::Empty);
        let mut rx = Channel::new(b, fdpass()).unwrap();
        drop(tx);
        let frames = read_all_frames(&mut rx);
        assert_eq!(frames.len(), 1005);
        let fds: Vec<bool> = frames[1000..].iter().map(|m| m.fd().is_some()).collect();
        assert_eq!(fds, [false, true, false, true, true]);
    });
}

const CHILD_ENV: &str = "IMSG_IO_DESCRIPTOR_LIMIT_CHILD";

/// Entry point of the child process of `descriptor_limit_reached`; does nothing
/// unless that test started it (it lowers this process's descriptor limit).
#[test]
fn descriptor_limit_child_entry() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    with_fd_check(|| {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a, fdpass()).unwrap();
        let mut rx = Channel::new(b, fdpass()).unwrap();
        tx.compose(1, 0, 0, Some(devnull()), b"fd").unwrap();
        tx.flush().unwrap();
        let spare = devnull();
        let old = getrlimit(Resource::Nofile);
        // One free slot left below the limit: too few for the guard.
        setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(limit_leaving_free(1)),
                maximum: old.maximum,
            },
        )
        .unwrap();
        // A blocking socket: the guard answers at once, and says why.
        assert_eq!(rx.read().unwrap(), ReadStatus::FdGuard);
        assert_eq!(rx.buffered(), 0, "nothing was read");
        assert_eq!(rx.read().unwrap(), ReadStatus::FdGuard);
        drop(spare); // now two free slots
        assert_eq!(rx.read().unwrap(), ReadStatus::Read(18));
        let mut m = rx.get().unwrap().unwrap();
        assert!(m.take_fd().is_some());
        drop(m);
        setrlimit(Resource::Nofile, old).unwrap();
        println!("descriptor-limit child: guard held and released");
    });
}

#[test]
fn descriptor_limit_reached() {
    let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (status, out) = child_process::run_test_in_child("descriptor_limit_child_entry", CHILD_ENV);
    assert!(status.success(), "child failed: {out}");
    assert!(
        out.contains("descriptor-limit child: guard held and released"),
        "child did not run the scenario: {out}"
    );
}

/// The descriptor limit below which exactly `free` slots are unused, counted
/// from this process's open descriptors (whatever the test runner left open,
/// wherever they sit).
fn limit_leaving_free(free: u64) -> u64 {
    let listed: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor is closed by now.
    let open: Vec<u64> = listed
        .into_iter()
        .filter(|n| std::fs::read_link(format!("/proc/self/fd/{n}")).is_ok())
        .collect();
    let mut limit = free;
    while limit - (open.iter().filter(|&&n| n < limit).count() as u64) < free {
        limit += 1;
    }
    limit
}

const APPROACH_CHILD_ENV: &str = "IMSG_IO_DESCRIPTOR_APPROACH_CHILD";

/// Entry point of the child process of `descriptor_limit_approached`; does
/// nothing unless that test started it (it lowers this process's descriptor
/// limit).
#[test]
fn descriptor_approach_child_entry() {
    if std::env::var_os(APPROACH_CHILD_ENV).is_none() {
        return;
    }
    with_fd_check(|| {
        use rustix::process::{getrlimit, setrlimit, Resource};
        const FREE: u64 = 40;
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a, fdpass()).unwrap();
        let mut rx = Channel::new(b, fdpass()).unwrap();
        for i in 0..FREE as u32 {
            tx.compose(i, 0, 0, Some(devnull()), b"fd").unwrap();
        }
        tx.flush().unwrap();
        let old = getrlimit(Resource::Nofile);
        // Exactly FREE slots free; every frame brings a descriptor that is kept.
        setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(limit_leaving_free(FREE)),
                maximum: old.maximum,
            },
        )
        .unwrap();
        let mut held = Vec::new();
        loop {
            match rx.read() {
                Ok(ReadStatus::Read(_)) => {
                    while let Some(mut m) = rx.get().unwrap() {
                        held.push(m.take_fd().expect("descriptor delivered"));
                    }
                }
                Ok(ReadStatus::FdGuard) => break,
                other => panic!("read: {other:?}"),
            }
        }
        // Unchecked reads far from the limit, every read checked close to it:
        // reads go on while the headroom is free, nothing lost.
        assert_eq!(held.len() as u64, FREE - imsg_io::FD_HEADROOM as u64 + 1);
        drop(held);
        assert!(matches!(rx.read().unwrap(), ReadStatus::Read(_)));
        setrlimit(Resource::Nofile, old).unwrap();
        println!("descriptor-approach child: guard held at the headroom");
    });
}

#[test]
fn descriptor_limit_approached() {
    let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (status, out) =
        child_process::run_test_in_child("descriptor_approach_child_entry", APPROACH_CHILD_ENV);
    assert!(status.success(), "child failed: {out}");
    assert!(
        out.contains("descriptor-approach child: guard held at the headroom"),
        "child did not run the scenario: {out}"
    );
}

const BIG_HEADER_CHILD_ENV: &str = "IMSG_IO_BIG_HEADER_CHILD";

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Entry point of the child process of `header_alone_does_not_commit_memory`;
/// does nothing unless that test started it (it measures its own memory).
#[test]
fn big_header_child_entry() {
    if std::env::var_os(BIG_HEADER_CHILD_ENV).is_none() {
        return;
    }
    let (mut a, b) = UnixStream::pair().unwrap();
    let cfg = Config::default()
        .with_dialect(Dialect::Current)
        .with_max_frame(0x7fff_ffff)
        .unwrap();
    let mut rx = Channel::new(b, cfg).unwrap();
    let before = rss_kib();
    // A header announcing a 2 GiB frame, and one byte of it.
    let mut hdr = [0u8; 17];
    hdr[4..8].copy_from_slice(&0x7fff_ffffu32.to_ne_bytes());
    a.write_all(&hdr).unwrap();
    let mut got = 0;
    while got < 17 {
        match rx.read().unwrap() {
            ReadStatus::Read(n) => got += n,
            other => panic!("{other:?}"),
        }
    }
    // One more read, which must not commit the announced length either.
    a.write_all(&[0; 100]).unwrap();
    assert_eq!(rx.read().unwrap(), ReadStatus::Read(100));
    assert!(rx.get().unwrap().is_none());
    let grown = rss_kib().saturating_sub(before);
    println!("big-header child: resident memory grew by {grown} KiB");
    assert!(
        grown < 16 * 1024,
        "117 bytes received, {grown} KiB resident"
    );
}

/// A peer that sends a header announcing the largest frame, and almost nothing of
/// it, does not make the receiver commit memory for the announced length.
#[test]
fn header_alone_does_not_commit_memory() {
    let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (status, out) =
        child_process::run_test_in_child("big_header_child_entry", BIG_HEADER_CHILD_ENV);
    assert!(status.success(), "child failed: {out}");
    assert!(
        out.contains("big-header child: resident memory grew by"),
        "{out}"
    );
}

/// Frames arriving in small pieces still come out whole when the receive buffer
/// starts small and must grow to hold a large frame.
#[test]
fn large_frame_arrives_in_pieces_into_a_small_buffer() {
    with_fd_check(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = Config::default()
            .with_dialect(Dialect::Current)
            .with_max_frame(1 << 20)
            .unwrap();
        let mut tx = Channel::new(a, cfg.clone()).unwrap();
        let mut rx = Channel::new(b, cfg).unwrap();
        rx.set_recv_buffer_size(16);
        let payload: Vec<u8> = (0..(1 << 20) - 16).map(|i| i as u8).collect();
        tx.compose(5, 0, 0, None, &payload).unwrap();
        tx.compose(6, 0, 0, None, b"after").unwrap();
        let writer = std::thread::spawn(move || tx.flush().unwrap());
        let mut got = Vec::new();
        while got.len() < 2 {
            assert!(matches!(rx.read().unwrap(), ReadStatus::Read(_)));
            while let Some(m) = rx.get_owned().unwrap() {
                got.push(m);
            }
        }
        writer.join().unwrap();
        assert_eq!(got[0].payload(), &payload[..]);
        assert_eq!(got[1].payload(), b"after");
    });
}

/// No receive buffer size a caller can ask for makes a later read panic.
#[test]
fn any_recv_buffer_size_is_safe() {
    with_fd_check(|| {
        for size in [0, 1, usize::MAX, usize::MAX / 2, 1 << 40] {
            let (mut a, b) = UnixStream::pair().unwrap();
            let mut rx = Channel::new(b, Config::default()).unwrap();
            let applied = rx.set_recv_buffer_size(size);
            assert!(
                (16..=imsg_io::MAX_RECV_BUFFER).contains(&applied),
                "{size}: {applied}"
            );
            let mut hdr = [0u8; 16];
            hdr[4..6].copy_from_slice(&16u16.to_ne_bytes());
            a.write_all(&hdr).unwrap();
            assert!(matches!(
                rx.read(),
                Ok(ReadStatus::Read(_)) | Err(Error::Frame(_))
            ));
        }
    });
}

/// With a high-water mark, a frame that would take the queue past it is refused
/// with a typed error: nothing is queued and the descriptor comes back.
#[test]
fn queue_limit_refuses_and_hands_the_descriptor_back() {
    with_fd_check(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = fdpass().with_queue_limit(Some(100));
        let mut tx = Channel::new(a, cfg).unwrap();
        // An empty queue takes one frame whatever its size.
        tx.compose(1, 0, 0, Some(devnull()), &[1; 200]).unwrap();
        assert_eq!(tx.queued_bytes(), 216);
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        match tx.compose(2, 0, 0, Some(pipe_w), b"x") {
            Err(Error::QueueFull { fd, queued, limit }) => {
                assert_eq!((queued, limit), (216, 100));
                // The very descriptor given: writing to it reaches the pipe.
                let fd = fd.expect("the descriptor handed back");
                rustix::io::write(&fd, b"!").unwrap();
                let mut byte = [0u8; 1];
                rustix::io::read(&pipe_r, &mut byte).unwrap();
                assert_eq!(&byte, b"!");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((tx.queue_len(), tx.queued_bytes()), (1, 216));
        // The builder is refused the same way, at close, and leaves nothing.
        let mut m = tx.create(3, 0, 0);
        m.add(b"abc").unwrap();
        assert!(matches!(
            m.close(Some(devnull())),
            Err(Error::QueueFull { fd: Some(_), .. })
        ));
        assert_eq!((tx.queue_len(), tx.queued_bytes()), (1, 216));
        // Once the peer read, there is room again.
        let mut rx = Channel::new(b, fdpass()).unwrap();
        tx.flush().unwrap();
        assert!(matches!(rx.read().unwrap(), ReadStatus::Read(216)));
        drop(rx.get().unwrap());
        tx.compose(4, 0, 0, None, &[0; 50]).unwrap();
        tx.compose(5, 0, 0, None, &[0; 10]).unwrap();
        assert!(matches!(
            tx.compose(6, 0, 0, None, &[0; 10]),
            Err(Error::QueueFull {
                fd: None,
                queued: 92,
                limit: 100
            })
        ));
    });
}
