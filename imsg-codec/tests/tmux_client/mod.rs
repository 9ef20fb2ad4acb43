//! What a real tmux 3.3a client sends to run `display-message -p hi`, checked
//! field by field (shared by the live capture test and the committed-file test).

use std::ffi::CStr;

use imsg_codec::{exact, Dialect, Frame, Framing, Reader, SliceBuf, Status};

// tmux 3.3a's message types (tmux.h).
pub const MSG_IDENTIFY_FLAGS: u32 = 100;
pub const MSG_IDENTIFY_TERM: u32 = 101;
pub const MSG_IDENTIFY_TTYNAME: u32 = 102;
pub const MSG_IDENTIFY_STDIN: u32 = 104;
pub const MSG_IDENTIFY_ENVIRON: u32 = 105;
pub const MSG_IDENTIFY_DONE: u32 = 106;
pub const MSG_IDENTIFY_CLIENTPID: u32 = 107;
pub const MSG_IDENTIFY_CWD: u32 = 108;
pub const MSG_IDENTIFY_FEATURES: u32 = 109;
pub const MSG_IDENTIFY_STDOUT: u32 = 110;
pub const MSG_IDENTIFY_LONGFLAGS: u32 = 111;
pub const MSG_COMMAND: u32 = 200;

/// tmux's PROTOCOL_VERSION, carried in the low byte of every peerid.
pub const PROTOCOL_VERSION: u32 = 8;

/// What depends on the run: the client's pid and its directory (its cwd and $HOME).
pub struct Run<'a> {
    pub client_pid: i32,
    pub dir: &'a str,
}

/// The frames at the start of `stream` (legacy dialect, tmux's 16384-byte limit),
/// up to and including the first `MSG_COMMAND`; `None` while that has not arrived.
/// Panics on an invalid frame.
pub fn frames_until_command(stream: &[u8]) -> Option<Vec<Frame<&[u8]>>> {
    let mut out = Vec::new();
    let mut rest = stream;
    loop {
        match Framing::standard(Dialect::Legacy)
            .split(rest)
            .expect("tmux sent an invalid frame")
        {
            Status::Complete((frame, used)) => {
                rest = &rest[used..];
                let ty = frame.msg_type();
                out.push(frame);
                if ty == MSG_COMMAND {
                    return Some(out);
                }
            }
            Status::Partial { .. } => return None,
        }
    }
}

fn int(frame: &Frame<&[u8]>) -> i32 {
    exact::<i32>(frame.payload()).expect("an int payload")
}

/// The payload as exactly one NUL-terminated string.
fn string<'a>(frame: &Frame<&'a [u8]>) -> &'a str {
    let mut r = Reader::new(frame.payload_ref());
    let s = r.get_cstr().expect("a NUL-terminated string");
    assert!(r.is_empty(), "bytes after the string's NUL in {frame:?}");
    s.to_str().unwrap()
}

/// Decodes the client's whole identify sequence and command field by field.
/// `stream` must hold exactly those frames and nothing else.
pub fn check_display_message_hi(stream: &[u8], run: &Run) {
    let frames = frames_until_command(stream).expect("the stream holds a MSG_COMMAND");
    let used: usize = frames.iter().map(|f| f.total_len()).sum();
    assert_eq!(used, stream.len(), "bytes after MSG_COMMAND");

    for f in &frames {
        assert_eq!(f.peerid() & 0xff, PROTOCOL_VERSION, "{f:?}");
        assert_eq!(f.pid() as i32, -1, "{f:?}");
        // Each frame re-emits byte for byte from its meaning.
        let mut again = vec![0u8; f.total_len()];
        let mut out = SliceBuf::new(&mut again);
        let hdr = f.header();
        Framing::standard(Dialect::Legacy)
            .emit(&mut out, hdr, f.payload())
            .unwrap();
        assert_eq!(out.filled(), f.as_bytes());
    }

    let types: Vec<u32> = frames.iter().map(|f| f.msg_type()).collect();
    let environ = [
        "PATH=/usr/bin:/bin".to_owned(),
        "TERM=dumb".to_owned(),
        format!("HOME={}", run.dir),
    ];
    let mut expected_types = vec![
        MSG_IDENTIFY_FLAGS,
        MSG_IDENTIFY_LONGFLAGS,
        MSG_IDENTIFY_TERM,
        MSG_IDENTIFY_FEATURES,
        MSG_IDENTIFY_TTYNAME,
        MSG_IDENTIFY_CWD,
        MSG_IDENTIFY_STDIN,
        MSG_IDENTIFY_STDOUT,
        MSG_IDENTIFY_CLIENTPID,
    ];
    expected_types.extend([MSG_IDENTIFY_ENVIRON; 3]);
    expected_types.extend([MSG_IDENTIFY_DONE, MSG_COMMAND]);
    assert_eq!(types, expected_types);

    // Only STDIN and STDOUT say a descriptor travels with them.
    for f in &frames {
        let with_fd = matches!(f.msg_type(), MSG_IDENTIFY_STDIN | MSG_IDENTIFY_STDOUT);
        assert_eq!(f.has_fd(), with_fd, "{f:?}");
        assert_eq!(f.raw_header().legacy_flags(), u16::from(with_fd), "{f:?}");
    }

    let [flags, longflags, term, features, ttyname, cwd, stdin, stdout, clientpid, env0, env1, env2, done, command] =
        &frames[..]
    else {
        unreachable!("checked above");
    };
    assert_eq!((flags.total_len(), int(flags)), (20, 0));
    assert_eq!(longflags.total_len(), 24);
    assert_eq!(exact::<u64>(longflags.payload()), Ok(0));
    assert_eq!(string(term), "dumb");
    assert_eq!((features.total_len(), int(features)), (20, 0));
    // stdin is not a terminal: an empty name.
    assert_eq!(string(ttyname), "");
    assert_eq!(string(cwd), run.dir);
    assert_eq!((stdin.total_len(), stdout.total_len()), (16, 16));
    assert_eq!(int(clientpid), run.client_pid);
    for (f, want) in [env0, env1, env2].into_iter().zip(&environ) {
        assert_eq!(string(f), want);
    }
    assert_eq!(done.total_len(), 16);

    // MSG_COMMAND: int argc, then argc NUL-terminated arguments, nothing else.
    let mut r = Reader::new(command.payload_ref());
    assert_eq!(r.get_h32().unwrap() as i32, 3);
    let args: Vec<&CStr> = (0..3).map(|_| r.get_cstr().unwrap()).collect();
    assert_eq!(args, [c"display-message", c"-p", c"hi"]);
    assert!(r.is_empty());
    assert_eq!(
        command.total_len(),
        16 + 4 + "display-message\0-p\0hi\0".len()
    );
}
