//! Behaviour of a channel over socketpairs: both dialects, blocking and
//! non-blocking, builders, forwarding, descriptor passing, size limits.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use imsg_io::{Channel, Config, Dialect, Error, ReadStatus, WriteStatus};

fn pair(cfg: Config) -> (Channel, Channel) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        Channel::new(a, cfg.clone()).unwrap(),
        Channel::new(b, cfg).unwrap(),
    )
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// Reads until a message is complete (blocking socket).
fn recv_one(rx: &mut Channel) -> imsg_io::OwnedMessage {
    loop {
        if let Some(m) = rx.get_owned().unwrap() {
            return m;
        }
        match rx.read().unwrap() {
            ReadStatus::Read(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn compose_and_get_both_dialects() {
    for d in [Dialect::Legacy, Dialect::Current] {
        let (mut tx, mut rx) = pair(Config::default().with_dialect(d).with_pid(77));
        tx.compose(1, 2, 0, None, b"abc").unwrap();
        tx.compose(3, 4, -1, None, b"").unwrap();
        tx.composev(5, 6, 9, None, &[b"de", b"", b"f"]).unwrap();
        assert_eq!(tx.queue_len(), 3);
        assert_eq!(tx.queued_bytes(), 19 + 16 + 19);
        tx.flush().unwrap();
        assert_eq!(tx.queue_len(), 0);
        let mut got = Vec::new();
        while got.len() < 3 {
            rx.read().unwrap();
            while let Some(m) = rx.get().unwrap() {
                assert!(!m.flagged_fd());
                got.push((m.msg_type(), m.peerid(), m.pid(), m.payload().to_vec()));
            }
        }
        assert_eq!(
            got,
            vec![
                (1, 2, 77, b"abc".to_vec()),
                (3, 4, -1, vec![]),
                (5, 6, 9, b"def".to_vec())
            ]
        );
    }
}

#[test]
fn default_pid_is_ours() {
    let (mut tx, mut rx) = pair(Config::default());
    tx.compose(1, 0, 0, None, &[]).unwrap();
    tx.flush().unwrap();
    assert_eq!(recv_one(&mut rx).pid(), std::process::id() as i32);
}

#[test]
fn builder_queues_on_close_only() {
    let (mut tx, mut rx) = pair(Config::default().with_fdpass(true));
    {
        let mut b = tx.create(10, 1, 0);
        b.add_n32(0xdead_beef).unwrap();
        b.add(b"xy").unwrap();
        b.set_n8(0, 0xaa).unwrap();
        b.close(Some(devnull())).unwrap();
    }
    let mut b = tx.create(11, 1, 0);
    b.add(b"never").unwrap();
    drop(b);
    let b = tx.create(12, 1, 0);
    b.close(None).unwrap();
    assert_eq!(tx.queue_len(), 2);
    tx.flush().unwrap();
    let mut m = recv_one(&mut rx);
    assert_eq!(m.msg_type(), 10);
    assert_eq!(m.payload(), [0xaa, 0xad, 0xbe, 0xef, b'x', b'y']);
    assert!(m.flagged_fd());
    assert!(m.take_fd().is_some());
    let m = recv_one(&mut rx);
    assert_eq!(
        (m.msg_type(), m.payload().len(), m.flagged_fd()),
        (12, 0, false)
    );
}

#[test]
fn builder_is_capped_at_max_frame() {
    let (mut tx, _rx) = pair(Config::default().with_max_frame(20).unwrap());
    let mut b = tx.create(1, 0, 0);
    b.add(&[0; 4]).unwrap();
    assert!(b.add_n8(0).is_err());
    b.close(None).unwrap();
    assert_eq!(tx.queued_bytes(), 20);
}

#[test]
fn builder_refuses_fd_without_fdpass() {
    let (mut tx, _rx) = pair(Config::default());
    let mut b = tx.create(1, 0, 0);
    b.add(b"x").unwrap();
    assert!(matches!(
        b.close(Some(devnull())),
        Err(Error::FdPassingDisabled)
    ));
    assert_eq!((tx.queue_len(), tx.queued_bytes()), (0, 0));
}

#[test]
fn compose_refuses_oversized_and_fd_without_fdpass() {
    let (mut tx, _rx) = pair(Config::default());
    tx.compose(1, 0, 0, None, b"keep").unwrap();
    assert!(matches!(
        tx.compose(1, 0, 0, None, &[0; 16384 - 15]),
        Err(Error::TooLong {
            len: 16385,
            max: 16384
        })
    ));
    tx.compose(1, 0, 0, None, &[0; 16384 - 16]).unwrap();
    assert!(matches!(
        tx.compose(1, 0, 0, Some(devnull()), b"x"),
        Err(Error::FdPassingDisabled)
    ));
    assert_eq!(tx.queue_len(), 2);
    assert_eq!(tx.queued_bytes(), 20 + 16384);
}

#[test]
fn forward_relays_without_fd() {
    let cfg = Config::default().with_fdpass(true);
    let (mut a, mut b) = pair(cfg.clone());
    let (mut c, mut d) = pair(cfg);
    a.compose(7, 8, 9, Some(devnull()), b"relay me").unwrap();
    a.flush().unwrap();
    b.read().unwrap();
    let mut m = b.get().unwrap().unwrap();
    c.forward(&m).unwrap();
    c.forward(&m).unwrap();
    assert!(m.take_fd().is_some());
    drop(m);
    c.flush().unwrap();
    for _ in 0..2 {
        let m = recv_one(&mut d);
        assert_eq!((m.msg_type(), m.peerid(), m.pid()), (7, 8, 9));
        assert_eq!(m.payload(), b"relay me");
        assert!(!m.flagged_fd());
        assert!(m.fd().is_none());
    }
}

#[test]
fn descriptors_arrive_with_their_frames() {
    let (mut tx, mut rx) = pair(Config::default().with_fdpass(true));
    // A pipe: what is written into the passed end comes out of ours.
    for i in 0..20u32 {
        if i % 3 == 0 {
            let (r, w) = rustix::pipe::pipe().unwrap();
            rustix::io::write(&w, &i.to_ne_bytes()).unwrap();
            drop(w);
            tx.compose(i, 0, 0, Some(r), &i.to_ne_bytes()).unwrap();
        } else {
            tx.compose(i, 0, 0, None, &i.to_ne_bytes()).unwrap();
        }
    }
    tx.flush().unwrap();
    for i in 0..20u32 {
        let mut m = recv_one(&mut rx);
        assert_eq!(m.msg_type(), i);
        assert_eq!(m.flagged_fd(), i % 3 == 0);
        match m.take_fd() {
            Some(fd) => {
                assert_eq!(i % 3, 0);
                let mut f = std::fs::File::from(fd);
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).unwrap();
                assert_eq!(buf, i.to_ne_bytes());
                let flags = rustix::io::fcntl_getfd(&f).unwrap();
                assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
            }
            None => assert_ne!(i % 3, 0),
        }
    }
}

#[test]
fn non_blocking_both_ways() {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let mut tx = Channel::new(a, Config::default()).unwrap();
    let mut rx = Channel::new(b, Config::default()).unwrap();
    assert_eq!(rx.read().unwrap(), ReadStatus::WouldBlock);
    assert_eq!(tx.write().unwrap(), WriteStatus::Empty, "empty queue");
    tx.compose(1, 0, 0, None, b"x").unwrap();
    assert_eq!(tx.write().unwrap(), WriteStatus::Wrote(17));
    assert_eq!(rx.read().unwrap(), ReadStatus::Read(17));
    assert_eq!(rx.get().unwrap().unwrap().payload(), b"x");
    assert!(rx.get().unwrap().is_none());
    drop(tx);
    assert_eq!(rx.read().unwrap(), ReadStatus::Eof);
}

#[test]
fn flush_waits_for_a_slow_reader() {
    // Non-blocking writer, more than the socket holds, reader on another thread.
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut tx = Channel::new(a, Config::default()).unwrap();
    let n = 2000u32;
    for i in 0..n {
        tx.compose(i, 0, 0, None, &[i as u8; 1000]).unwrap();
    }
    let reader = std::thread::spawn(move || {
        let mut rx = Channel::new(b, Config::default()).unwrap();
        let mut next = 0u32;
        while next < n {
            while let Some(m) = rx.get().unwrap() {
                assert_eq!(m.msg_type(), next);
                assert_eq!(m.payload(), &[next as u8; 1000][..]);
                next += 1;
            }
            if next < n {
                assert!(matches!(rx.read().unwrap(), ReadStatus::Read(_)));
            }
        }
    });
    tx.flush().unwrap();
    assert_eq!(tx.queue_len(), 0);
    reader.join().unwrap();
}

#[test]
fn plain_descriptors_without_sockets() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    let mut tx = Channel::new(w, Config::default()).unwrap();
    let mut rx = Channel::new(r, Config::default()).unwrap();
    tx.compose(4, 0, 0, None, b"pipe").unwrap();
    tx.flush().unwrap();
    assert_eq!(recv_one(&mut rx).payload(), b"pipe");
    let (r, _w) = rustix::pipe::pipe().unwrap();
    assert!(matches!(
        Channel::new(r, Config::default().with_fdpass(true)),
        Err(Error::Io(_))
    ));
}

#[test]
fn large_frames_with_raised_limit() {
    let cfg = Config::default()
        .with_dialect(Dialect::Current)
        .with_max_frame(1 << 20)
        .unwrap();
    let (mut tx, mut rx) = pair(cfg);
    let payload: Vec<u8> = (0..(1 << 20) - 16).map(|i| i as u8).collect();
    let writer = std::thread::spawn(move || {
        tx.compose(1, 0, 0, None, &payload).unwrap();
        tx.compose(2, 0, 0, None, b"after").unwrap();
        tx.flush().unwrap();
        payload
    });
    let m = recv_one(&mut rx);
    let payload = writer.join().unwrap();
    assert_eq!(m.payload(), &payload[..]);
    assert_eq!(recv_one(&mut rx).payload(), b"after");
}

#[test]
fn oversized_and_mismatched_frames_are_typed_errors() {
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut rx = Channel::new(b, Config::default().with_max_frame(100).unwrap()).unwrap();
    let mut hdr = [0u8; 16];
    hdr[4..6].copy_from_slice(&101u16.to_ne_bytes());
    a.write_all(&hdr).unwrap();
    // read() sees the bad header before growing anything; get() reports it too.
    let first = rx.read();
    assert!(matches!(first, Ok(ReadStatus::Read(16))), "{first:?}");
    assert!(matches!(
        rx.get(),
        Err(Error::Frame(imsg_codec::FrameError::TooLong {
            len: 101,
            max: 100
        }))
    ));
    assert!(matches!(rx.read(), Err(Error::Frame(_))));

    // A current-dialect descriptor frame on a legacy channel.
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut rx = Channel::new(b, Config::default()).unwrap();
    let mut hdr = [0u8; 16];
    hdr[4..8].copy_from_slice(&(16u32 | 0x8000_0000).to_ne_bytes());
    a.write_all(&hdr).unwrap();
    rx.read().unwrap();
    assert!(matches!(
        rx.get(),
        Err(Error::Frame(imsg_codec::FrameError::DialectMismatch {
            expected: Dialect::Legacy,
            peer: Dialect::Current
        }))
    ));
}

#[test]
fn as_fd_is_the_socket() {
    let (a, _b) = UnixStream::pair().unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&a);
    let ch = Channel::new(a, Config::default()).unwrap();
    assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&ch.as_fd()), raw);
}

/// Queueing past `WRITE_AHEAD` sends what the socket takes without waiting, on a
/// blocking socket with nobody reading: compose never blocks, the bytes arrive
/// whole and in order, and at most one send is tried per `WRITE_AHEAD` bytes.
#[test]
fn queueing_sends_ahead_without_blocking() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut tx = Channel::new(a, Config::default()).unwrap();
    // 4 MiB of 16 KiB frames: far more than the socket buffer holds. A compose
    // that waited for the reader (not started yet) would hang here.
    let n = 256u32;
    for i in 0..n {
        tx.compose(i, 0, 0, None, &[i as u8; 16368]).unwrap();
    }
    let total = n as usize * 16384;
    let sent = total - tx.queued_bytes();
    assert!(
        sent > 0 && sent < total,
        "{sent} of {total} sent while queueing"
    );
    // Below the mark nothing is sent by queueing.
    let (c, _d) = UnixStream::pair().unwrap();
    let mut small = Channel::new(c, Config::default()).unwrap();
    for _ in 0..(imsg_io::WRITE_AHEAD / 1024 - 1) {
        small.compose(1, 0, 0, None, &[0; 1008]).unwrap();
    }
    assert_eq!(small.queued_bytes(), imsg_io::WRITE_AHEAD - 1024);

    let reader = std::thread::spawn(move || {
        let mut rx = Channel::new(b, Config::default()).unwrap();
        for i in 0..n {
            let m = recv_one(&mut rx);
            assert_eq!(m.msg_type(), i);
            assert_eq!(m.payload(), &[i as u8; 16368][..], "frame {i} intact");
        }
        assert_eq!(rx.read().unwrap(), ReadStatus::Eof);
    });
    tx.flush().unwrap();
    drop(tx);
    reader.join().unwrap();
}

/// A send ahead that fails loses nothing and reports nothing: the next flush
/// meets the same failure and reports it.
#[test]
fn failed_send_ahead_is_reported_by_flush() {
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    let mut tx = Channel::new(a, Config::default()).unwrap();
    for i in 0..64u32 {
        tx.compose(i, 0, 0, None, &[0; 16368]).unwrap();
    }
    assert_eq!(tx.queue_len(), 64, "nothing dropped by the failed sends");
    assert!(matches!(tx.flush(), Err(Error::PeerClosed)));
}

/// A large frame queued right after a flush is sent at once from the caller's
/// buffer (compose alone delivers it); the next ones of a batch are queued; when
/// the socket takes only part of a frame, the rest is queued and follows, and
/// frames after it keep their order.
#[test]
fn large_frames_after_a_flush_are_sent_at_once() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut tx = Channel::new(a, Config::default()).unwrap();
    let mut rx = Channel::new(b, Config::default()).unwrap();
    let big = imsg_io::WRITE_DIRECT;
    tx.compose(1, 0, 0, None, &[1; 16368]).unwrap();
    assert_eq!(
        (tx.queue_len(), tx.queued_bytes()),
        (0, 0),
        "sent by compose"
    );
    tx.compose(2, 0, 0, None, &[2; 16368]).unwrap();
    assert_eq!(tx.queue_len(), 1, "the second of a batch is queued");
    tx.flush().unwrap();
    tx.composev(3, 0, 0, None, &[&[3; 10], &vec![3; big]])
        .unwrap();
    assert_eq!(tx.queue_len(), 0, "composev too");
    tx.flush().unwrap();
    // Below the size, or with a descriptor: queued as before.
    tx.compose(4, 0, 0, None, &vec![4; big - 1]).unwrap();
    assert_eq!(tx.queue_len(), 1);
    tx.flush().unwrap();
    for (ty, len) in [(1, 16368), (2, 16368), (3, big + 10), (4, big - 1)] {
        let m = recv_one(&mut rx);
        assert_eq!((m.msg_type(), m.payload().len()), (ty, len));
        assert!(m.payload().iter().all(|&x| x == ty as u8));
    }

    // A socket with room for part of a frame only: the rest waits in the queue.
    let (a, b) = UnixStream::pair().unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
    let mut tx = Channel::new(a, Config::default()).unwrap();
    let mut rx = Channel::new(b, Config::default()).unwrap();
    tx.compose(4, 0, 0, None, &[4; 16368]).unwrap();
    let left = tx.queued_bytes();
    assert!(left > 0 && left < 16384, "{left} bytes left of 16384");
    assert_eq!(tx.queue_len(), 1);
    tx.compose(5, 0, 0, None, &[5; 16368]).unwrap();
    assert_eq!(tx.queue_len(), 2, "queued behind the unfinished frame");
    let reader = std::thread::spawn(move || {
        for ty in [4u32, 5] {
            let m = recv_one(&mut rx);
            assert_eq!((m.msg_type(), m.payload()), (ty, &[ty as u8; 16368][..]));
        }
    });
    tx.flush().unwrap();
    reader.join().unwrap();
}
