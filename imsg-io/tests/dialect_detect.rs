//! A channel that learns its peer's dialect, and the hint a channel gives when a
//! peer hangs up right after a descriptor frame (what a peer of the other dialect
//! does).

use std::os::unix::net::UnixStream;

use imsg_io::{Channel, Config, Dialect, DialectHint, ReadStatus};

fn devnull() -> std::os::fd::OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// Every message `chan` can take now, after one read: type and whether a
/// descriptor came.
fn take_all(chan: &mut Channel) -> Vec<(u32, bool)> {
    assert!(matches!(chan.read().unwrap(), ReadStatus::Read(_)));
    let mut got = Vec::new();
    while let Some(mut m) = chan.get_owned().unwrap() {
        got.push((m.msg_type(), m.take_fd().is_some()));
    }
    got
}

#[test]
fn a_detecting_channel_learns_the_dialect_and_answers_in_it() {
    for peer_dialect in [Dialect::Legacy, Dialect::Current] {
        for start in [Dialect::Legacy, Dialect::Current] {
            let (a, b) = UnixStream::pair().unwrap();
            let cfg = Config::default().with_fdpass(true);
            let mut peer = Channel::new(a, cfg.clone().with_dialect(peer_dialect)).unwrap();
            let mut me = Channel::new(b, cfg.with_dialect(start)).unwrap();
            me.set_detect_dialect(true);

            // Frames without descriptors decide nothing.
            peer.compose(1, 0, 0, None, b"abc").unwrap();
            peer.flush().unwrap();
            assert_eq!(take_all(&mut me), [(1, false)]);
            assert_eq!(me.dialect(), start);

            peer.compose(2, 0, 0, Some(devnull()), b"").unwrap();
            peer.compose(3, 0, 0, None, b"").unwrap();
            peer.flush().unwrap();
            let mut got = Vec::new();
            while got.len() < 2 {
                got.extend(take_all(&mut me));
            }
            assert_eq!(got, [(2, true), (3, false)], "{peer_dialect} from {start}");
            assert_eq!(me.dialect(), peer_dialect);

            // And it answers in the peer's dialect, descriptor included.
            me.compose(4, 0, 0, Some(devnull()), b"x").unwrap();
            me.flush().unwrap();
            assert_eq!(take_all(&mut peer), [(4, true)]);
            assert_eq!(me.peer_may_speak(), None);
        }
    }
}

#[test]
fn hang_up_right_after_a_descriptor_frame_hints_at_the_other_dialect() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut me = Channel::new(a, Config::default().with_fdpass(true)).unwrap();
    me.compose(100, 8, 0, None, b"").unwrap();
    me.compose(104, 8, 0, Some(devnull()), b"").unwrap();
    me.flush().unwrap();
    // The peer reads what came and hangs up without a word.
    drop(b);
    assert!(matches!(me.read().unwrap(), ReadStatus::Eof));
    assert_eq!(me.peer_may_speak(), Some(Dialect::Current));
    assert!(DialectHint(Dialect::Current)
        .to_string()
        .contains("may speak the current imsg dialect"));

    // A peer that answered after the descriptor frame gets no hint.
    let (a, b) = UnixStream::pair().unwrap();
    let mut me = Channel::new(a, Config::default().with_fdpass(true)).unwrap();
    let mut peer = Channel::new(b, Config::default().with_fdpass(true)).unwrap();
    me.compose(104, 8, 0, Some(devnull()), b"").unwrap();
    me.flush().unwrap();
    peer.compose(1, 0, 0, None, b"").unwrap();
    peer.flush().unwrap();
    drop(peer);
    assert!(matches!(me.read().unwrap(), ReadStatus::Read(16)));
    assert!(matches!(me.read().unwrap(), ReadStatus::Eof));
    assert_eq!(me.peer_may_speak(), None);
}
