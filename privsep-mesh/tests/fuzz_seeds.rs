//! Replays the committed seeds of the `mesh_dispatch` fuzz target
//! (`tests/seeds/mesh_dispatch/`) through the oracle the fuzzer uses, checks the
//! outcome each seed was written for, and that no descriptor leaks across them.
//! One test in this file, so the descriptor count is not disturbed by other tests.

use std::path::Path;

use privsep_mesh::internal::check_dispatch;
use privsep_mesh::internal::Flow;
use privsep_mesh::{Error, ProtocolError};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

fn outcome(r: &Result<Flow, Error>) -> String {
    match r {
        Ok(Flow::Continue) => "continue".into(),
        Ok(Flow::Closed(_)) => "closed".into(),
        Ok(Flow::Shutdown) => "shutdown".into(),
        Err(Error::Protocol { error, .. }) => match error {
            ProtocolError::Unhandled { .. } => "unhandled",
            ProtocolError::UnknownControl { .. } => "unknown-control",
            ProtocolError::Payload(_) => "payload",
            ProtocolError::MissingFd => "missing-fd",
            ProtocolError::WrongSender { .. } => "wrong-sender",
            ProtocolError::BeforeReady { .. } => "before-ready",
            ProtocolError::LayoutMismatch { .. } => "layout",
            ProtocolError::MeshIncomplete { .. } => "incomplete",
            ProtocolError::Ack(_) => "ack",
            ProtocolError::Repeated { .. } => "repeated",
            _ => "protocol-other",
        }
        .into(),
        Err(Error::Channel { .. }) => "channel".into(),
        Err(Error::App(_)) => "app".into(),
        Err(e) => format!("other: {e}"),
    }
}

#[test]
fn seeds_replay_with_their_expected_outcomes() {
    let expected = [
        ("child-handshake-then-app.bin", "shutdown"),
        ("child-procfd-without-fd.bin", "missing-fd"),
        // No descriptor either: the missing descriptor is caught first.
        ("child-procfd-unexpected-peer.bin", "missing-fd"),
        ("child-ready-before-procready.bin", "repeated"),
        ("child-layout-mismatch.bin", "layout"),
        ("child-app-before-ready.bin", "before-ready"),
        ("child-app-error.bin", "app"),
        ("child-unhandled-type.bin", "unhandled"),
        ("child-double-ready.bin", "repeated"),
        ("parent-ack-then-app.bin", "closed"),
        ("parent-double-ack.bin", "ack"),
        ("parent-procfd-from-child.bin", "wrong-sender"),
        ("verbose-good-and-short.bin", "payload"),
        ("truncated-frame.bin", "closed"),
        ("length-15.bin", "channel"),
        ("unknown-control.bin", "unknown-control"),
        ("empty.bin", "closed"),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds/mesh_dispatch");
    let before = open_fds();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let got = outcome(&check_dispatch(&data));
        if let Some((_, want)) = expected.iter().find(|(n, _)| *n == name) {
            assert_eq!(got, *want, "seed {name}");
        }
        seen += 1;
    }
    assert!(
        seen >= expected.len(),
        "only {seen} seeds in {}",
        dir.display()
    );
    assert_eq!(open_fds(), before, "descriptors leaked");
}
