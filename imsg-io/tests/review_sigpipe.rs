//! "SIGPIPE never kills the process", checked with SIGPIPE at
//! its DEFAULT disposition.
//!
//! A Rust test binary starts with SIGPIPE ignored (the runtime does that before
//! `main`), so a test that simply writes to a closed peer cannot notice a missing
//! `MSG_NOSIGNAL`. Here a child process (this binary again) puts SIGPIPE back to
//! `SIG_DFL` and then writes to a dead peer on both socket transports a `Channel`
//! has: with descriptor passing (`sendmsg`) and without (`send`). The parent checks
//! that the child exited normally (not killed by signal 13) and ran every case.
//!
//! A third case writes to a pipe whose read end is closed (the `Plain` transport,
//! `write(2)`, where no `MSG_NOSIGNAL` exists): before `SIGPIPE` was blocked around
//! that write, the child died of signal 13 here.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;

use imsg_io::{Channel, Config, Error};

mod child_process;

const CHILD_ENV: &str = "IMSG_IO_REVIEW_SIGPIPE_CHILD";
const SIGPIPE: i32 = 13; // Linux, every architecture this crate builds for
const SIG_DFL: usize = 0;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
}

fn write_to_dead_peer(tx: OwnedFd, cfg: Config, what: &str) {
    let mut ch = Channel::new(tx, cfg).unwrap();
    ch.compose(1, 0, 0, None, &[0; 64]).unwrap();
    let r = ch.flush();
    assert!(matches!(r, Err(Error::PeerClosed)), "{what}: {r:?}");
    println!("case ok: {what}");
}

/// The child's side; does nothing unless `sigpipe_default_disposition` started it.
#[test]
fn sigpipe_child_entry() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // SAFETY: signal(2) with SIG_DFL for SIGPIPE; no handler code is installed.
    unsafe { signal(SIGPIPE, SIG_DFL) };

    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    write_to_dead_peer(
        a.into(),
        Config::default().with_fdpass(true),
        "socket, fdpass",
    );

    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    write_to_dead_peer(a.into(), Config::default(), "socket, no fdpass");

    let (r, w) = rustix::pipe::pipe().unwrap();
    drop(r);
    write_to_dead_peer(w, Config::default(), "pipe");
}

#[test]
fn sigpipe_default_disposition() {
    let (status, out) = child_process::run_test_in_child("sigpipe_child_entry", CHILD_ENV);
    assert_ne!(
        status.signal(),
        Some(SIGPIPE),
        "the child was killed by SIGPIPE; cases that passed before:\n{out}"
    );
    assert!(status.success(), "child failed: {status:?}\n{out}");
    assert_eq!(out.matches("case ok:").count(), 3, "{out}");
}
