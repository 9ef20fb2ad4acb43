//! Decodes the committed capture of a real tmux 3.3a client
//! (`testdata/tmux-3.3a-client.bin`, written by `tests/tmux_capture.rs` with
//! `IMSG_CODEC_WRITE_CAPTURE`) field by field.
//!
//! The capture holds a little-endian host's header bytes, as C writes them.
#![cfg(target_endian = "little")]

mod tmux_client;

/// The capture, exactly as the client sent it (legacy dialect, little-endian host).
const CAPTURE: &[u8] = include_bytes!("../testdata/tmux-3.3a-client.bin");

#[test]
fn committed_tmux_capture_decodes_field_by_field() {
    // What the capture run had: the client's pid and its temp dir (cwd and $HOME).
    let run = tmux_client::Run {
        client_pid: 9124,
        dir: "/tmp/imsg-codec-tmux-9122-618486912",
    };
    tmux_client::check_display_message_hi(CAPTURE, &run);
}

#[test]
fn committed_tmux_capture_is_rejected_as_current() {
    // The first descriptor-carrying frame (STDIN, the 7th) is where the dialects
    // part; the current reader must say the peer speaks legacy.
    use imsg_codec::{Dialect, FrameError, Framing};
    let current = Framing::standard(Dialect::Current);
    let mut it = current.frames(CAPTURE);
    let ok: Vec<u32> = it
        .by_ref()
        .map_while(Result::ok)
        .map(|f| f.msg_type())
        .collect();
    assert_eq!(ok, [100, 111, 101, 109, 102, 108]);
    let mut it = current.frames(&CAPTURE[it.consumed()..]);
    assert_eq!(
        it.next(),
        Some(Err(FrameError::DialectMismatch {
            expected: Dialect::Current,
            peer: Dialect::Legacy
        }))
    );
}
