//! `AsyncChannel` over tokio (feature `tokio`).
#![cfg(feature = "tokio")]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use imsg_io::{AsyncChannel, Channel, Config, Error};

fn pair(cfg: Config) -> (AsyncChannel, AsyncChannel) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        AsyncChannel::new(Channel::new(a, cfg.clone()).unwrap()).unwrap(),
        AsyncChannel::new(Channel::new(b, cfg).unwrap()).unwrap(),
    )
}

async fn deadline<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test deadline")
}

#[tokio::test(flavor = "current_thread")]
async fn ping_pong_with_descriptors() {
    deadline(async {
        let (mut a, mut b) = pair(Config::default().with_fdpass(true));
        for round in 0..50u32 {
            let (r, w) = rustix::pipe::pipe().unwrap();
            rustix::io::write(&w, &round.to_ne_bytes()).unwrap();
            drop(w);
            a.send(1, round, 0, Some(r), b"ping").await.unwrap();
            let mut m = b.recv().await.unwrap().unwrap();
            assert_eq!(
                (m.msg_type(), m.peerid(), m.payload()),
                (1, round, &b"ping"[..])
            );
            let mut got = [0u8; 4];
            std::fs::File::from(m.take_fd().unwrap())
                .read_exact(&mut got)
                .unwrap();
            assert_eq!(u32::from_ne_bytes(got), round);
            b.send(2, round, 0, None, b"pong").await.unwrap();
            let m = a.recv().await.unwrap().unwrap();
            assert_eq!(
                (m.msg_type(), m.peerid(), m.fd().is_none()),
                (2, round, true)
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn big_queue_flushes_while_the_peer_reads() {
    deadline(async {
        let (mut a, mut b) = pair(Config::default().with_fdpass(true));
        const N: u32 = 5000;
        for i in 0..N {
            let fd: Option<OwnedFd> =
                (i % 100 == 0).then(|| std::fs::File::open("/dev/null").unwrap().into());
            a.channel_mut()
                .compose(i, 0, 0, fd, &[i as u8; 700])
                .unwrap();
        }
        let writer = async move {
            a.flush().await.unwrap();
            assert_eq!(a.channel().queue_len(), 0);
            // a is dropped here: end of file for b.
        };
        let reader = async {
            let mut n = 0u32;
            while let Some(m) = b.recv().await.unwrap() {
                assert_eq!(m.msg_type(), n);
                assert_eq!(m.payload(), &[n as u8; 700][..]);
                assert_eq!(m.fd().is_some(), n.is_multiple_of(100));
                n += 1;
            }
            n
        };
        let ((), n) = tokio::join!(writer, reader);
        assert_eq!(n, N);
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn eof_mid_frame_and_closed_peer() {
    deadline(async {
        let (a, b) = UnixStream::pair().unwrap();
        let mut rx = AsyncChannel::new(Channel::new(b, Config::default()).unwrap()).unwrap();
        let mut hdr = vec![0u8; 16];
        hdr[4..6].copy_from_slice(&40u16.to_ne_bytes());
        hdr.extend_from_slice(&[0; 10]);
        std::io::Write::write_all(&mut &a, &hdr).unwrap();
        drop(a);
        assert!(matches!(
            rx.recv().await,
            Err(Error::UnexpectedEof { buffered: 26 })
        ));

        let (mut tx, rx) = pair(Config::default());
        drop(rx);
        tx.channel_mut().compose(1, 0, 0, None, b"lost").unwrap();
        assert!(matches!(tx.flush().await, Err(Error::PeerClosed)));
        assert_eq!(tx.channel().queue_len(), 0);
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn works_across_tasks() {
    deadline(async {
        let (mut a, mut b) = pair(Config::default());
        let echo = tokio::spawn(async move {
            while let Some(m) = b.recv().await.unwrap() {
                let ch = b.channel_mut();
                ch.compose(m.msg_type() + 1, m.peerid(), m.pid(), None, m.payload())
                    .unwrap();
                b.flush().await.unwrap();
            }
        });
        for i in 0..200u32 {
            a.send(i * 2, 0, 0, None, &i.to_ne_bytes()).await.unwrap();
            let m = a.recv().await.unwrap().unwrap();
            assert_eq!(
                (m.msg_type(), m.payload()),
                (i * 2 + 1, &i.to_ne_bytes()[..])
            );
        }
        drop(a);
        echo.await.unwrap();
    })
    .await;
}

mod child_process;

const GUARD_CHILD_ENV: &str = "IMSG_IO_ASYNC_GUARD_CHILD";

/// Sets the soft descriptor limit so that exactly `free` descriptors can still be
/// opened; returns the limit as it was.
fn leave_free_descriptors(free: u64) -> rustix::process::Rlimit {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let probe = std::fs::File::open("/dev/null").unwrap();
    // Lowest free number after `probe`: everything below it is in use.
    let lowest = rustix::io::fcntl_dupfd_cloexec(&probe, 0).unwrap();
    let n = std::os::fd::AsRawFd::as_raw_fd(&lowest) as u64;
    drop((lowest, probe));
    // `probe`'s number (n - 1) is free again too.
    let old = getrlimit(Resource::Nofile);
    let new = Rlimit {
        current: Some(n - 1 + free),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, new).unwrap();
    old
}

/// Entry point of the child process of `guard_refusal_does_not_stall_recv`; does
/// nothing unless that test started it (it changes this process's descriptor
/// limit).
#[test]
fn guard_refusal_child_entry() {
    if std::env::var_os(GUARD_CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let cfg = Config::default().with_fdpass(true);
        let mut tx = Channel::new(a, cfg.clone()).unwrap();
        let mut rx = AsyncChannel::new(Channel::new(b, cfg).unwrap()).unwrap();
        tx.compose(
            7,
            0,
            0,
            Some(std::fs::File::open("/dev/null").unwrap().into()),
            b"fd",
        )
        .unwrap();
        tx.flush().unwrap();
        // One free slot: the guard (which wants two) refuses to read.
        let old = leave_free_descriptors(1);
        let refused = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(refused.is_err(), "read past the guard: {refused:?}");
        // Room again: the message must come without the peer sending anything more.
        rustix::process::setrlimit(rustix::process::Resource::Nofile, old).unwrap();
        let start = std::time::Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        let mut m = got
            .expect("the message did not arrive within 1 s of the limit being raised")
            .unwrap()
            .expect("a message");
        assert_eq!((m.msg_type(), m.payload()), (7, &b"fd"[..]));
        assert!(m.take_fd().is_some());
        println!(
            "guard child: message {} ms after the limit was raised",
            start.elapsed().as_millis()
        );
        drop(tx);
    });
}

/// A receiver at its descriptor limit gets a descriptor message once the limit is
/// raised, without the peer sending again: a refused read must not count as a
/// drained socket.
#[test]
fn guard_refusal_does_not_stall_recv() {
    let (status, out) =
        child_process::run_test_in_child("guard_refusal_child_entry", GUARD_CHILD_ENV);
    assert!(status.success(), "child failed: {out}");
    assert!(out.contains("guard child: message"), "{out}");
}
