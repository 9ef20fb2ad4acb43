//! Runs the `imsg-dump` binary on good, truncated, invalid and wrong-dialect input
//! and checks its stdout, stderr and exit status.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use imsg_codec::{Dialect, Framing, Header, MAX_IMSGSIZE};

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// Runs imsg-dump with `args`, `stdin` as its input, and a deadline.
fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imsg-dump"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imsg-dump");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // imsg-dump may stop reading early (an invalid frame): ignore EPIPE.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imsg-dump {args:?} did not finish in time");
        }
        thread::sleep(Duration::from_millis(10));
    };
    writer.join().unwrap();
    Run {
        stdout: out_reader.join().unwrap().unwrap(),
        stderr: err_reader.join().unwrap().unwrap(),
        code: status.code().expect("exited, not killed"),
    }
}

fn frame(d: Dialect, hdr: Header, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    Framing::standard(d).emit(&mut v, hdr, payload).unwrap();
    v
}

/// Two frames, the second carrying the descriptor flag.
fn two_frames(d: Dialect) -> Vec<u8> {
    let mut v = frame(d, Header::new(101, 8, u32::MAX), b"dumb\0");
    v.extend(frame(
        d,
        Header::new(104, 0x0102_0304, 7).with_fd(true),
        b"",
    ));
    v
}

const TWO_FRAMES: &str = "type=101 len=21 peerid=8 pid=-1 fd=0 payload=64756d6200\n\
                          type=104 len=16 peerid=16909060 pid=7 fd=1 payload=\n";

#[test]
fn good_stream_from_stdin_in_both_dialects() {
    let r = run(&[], &two_frames(Dialect::Legacy));
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.code),
        (TWO_FRAMES, "", 0)
    );
    let r = run(
        &["--dialect", "current", "-"],
        &two_frames(Dialect::Current),
    );
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.code),
        (TWO_FRAMES, "", 0)
    );
    let r = run(
        &["--dialect=legacy", "--max=21"],
        &two_frames(Dialect::Legacy),
    );
    assert_eq!((r.stdout.as_str(), r.code), (TWO_FRAMES, 0));
}

#[test]
fn good_stream_from_a_file() {
    let dir = std::env::temp_dir().join(format!("imsg-dump-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("two.bin");
    std::fs::write(&path, two_frames(Dialect::Current)).unwrap();
    let r = run(
        &["--dialect", "current", path.to_str().unwrap()],
        b"ignored",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.code),
        (TWO_FRAMES, "", 0)
    );
}

#[test]
fn empty_stream_prints_nothing() {
    let r = run(&[], b"");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str(), r.code), ("", "", 0));
}

#[test]
fn payload_longer_than_one_read() {
    // A frame near the limit, larger than the tool's 64 KiB read chunk in total.
    let payload: Vec<u8> = (0..MAX_IMSGSIZE - 16).map(|i| i as u8).collect();
    let mut stream = Vec::new();
    for _ in 0..6 {
        stream.extend(frame(Dialect::Legacy, Header::new(1, 2, 3), &payload));
    }
    let r = run(&[], &stream);
    assert_eq!((r.stderr.as_str(), r.code), ("", 0));
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 6);
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    for line in lines {
        assert_eq!(
            line,
            format!("type=1 len=16384 peerid=2 pid=3 fd=0 payload={hex}")
        );
    }
}

#[test]
fn truncated_stream_names_the_offset() {
    let whole = two_frames(Dialect::Legacy);
    // Inside the second header.
    let r = run(&[], &whole[..21 + 5]);
    assert_eq!(
        r.stdout,
        TWO_FRAMES.lines().next().unwrap().to_owned() + "\n"
    );
    assert_eq!(
        r.stderr,
        "imsg-dump: offset 21: stream ends inside a frame (11 more bytes needed)\n"
    );
    assert_eq!(r.code, 1);
    // Inside the first payload.
    let r = run(&[], &whole[..18]);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "imsg-dump: offset 0: stream ends inside a frame (3 more bytes needed)\n"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn invalid_frame_names_the_offset_and_error() {
    let mut stream = two_frames(Dialect::Current);
    let mut bad = frame(Dialect::Current, Header::new(9, 0, 0), b"");
    bad[4..8].copy_from_slice(&3u32.to_ne_bytes());
    stream.extend(&bad);
    stream.extend(frame(
        Dialect::Current,
        Header::new(10, 0, 0),
        b"never shown",
    ));
    let r = run(&["--dialect", "current"], &stream);
    assert_eq!(r.stdout, TWO_FRAMES);
    assert_eq!(
        r.stderr,
        "imsg-dump: offset 37: invalid frame: frame length 3 is below the 16-byte header\n"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn frame_over_max_is_invalid() {
    let stream = two_frames(Dialect::Legacy);
    let r = run(&["--max", "20"], &stream);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "imsg-dump: offset 0: invalid frame: frame length 21 is above the limit of 20 bytes\n"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn wrong_dialect_says_which_one_the_peer_speaks() {
    // Legacy frames read as current: the first frame has no descriptor, so both
    // dialects agree on it; the HASFD frame is where they part.
    let r = run(&["--dialect", "current"], &two_frames(Dialect::Legacy));
    assert_eq!(
        r.stdout,
        TWO_FRAMES.lines().next().unwrap().to_owned() + "\n"
    );
    assert_eq!(
        r.stderr,
        "imsg-dump: offset 21: invalid frame: the peer seems to speak the legacy imsg \
         dialect, not the current one (OpenBSD <= 7.6, tmux <= 3.5a)\n"
    );
    assert_eq!(r.code, 1);
    let r = run(&[], &two_frames(Dialect::Current));
    assert_eq!(
        r.stderr,
        "imsg-dump: offset 21: invalid frame: the peer seems to speak the current imsg \
         dialect, not the legacy one (OpenBSD >= 7.7, tmux >= 3.6)\n"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--dialect"][..],
        &["--dialect", "modern"],
        &["--max", "15"],
        &["--max", "lots"],
        // Above what the dialect can express (C's imsgbuf_set_maxsize refuses it
        // too), whichever order the options come in.
        &["--max", "65536"],
        &["--max", "65536", "--dialect", "legacy"],
        &["--dialect", "current", "--max", "2147483648"],
        &["--frobnicate"],
        &["a.bin", "b.bin"],
        &["/nonexistent/imsg-dump-input"],
    ] {
        let r = run(args, b"");
        assert_eq!((r.stdout.as_str(), r.code), ("", 2), "{args:?}");
        assert!(
            r.stderr.starts_with("imsg-dump: "),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = run(&["--help"], b"");
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("usage: imsg-dump"));
}

#[test]
fn names_from_a_builtin_table_and_a_file() {
    let r = run(&["--names", "tmux"], &two_frames(Dialect::Legacy));
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.code),
        (
            "type=101(MSG_IDENTIFY_TERM) len=21 peerid=8 pid=-1 fd=0 payload=64756d6200\n\
             type=104(MSG_IDENTIFY_STDIN) len=16 peerid=16909060 pid=7 fd=1 payload=\n",
            "",
            0
        )
    );
    let dir = std::env::temp_dir().join(format!("imsg-dump-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("mine.names");
    std::fs::write(&table, "# my daemon\n104 PASS_FD\n").unwrap();
    let r = run(
        &["--names", table.to_str().unwrap()],
        &two_frames(Dialect::Legacy),
    );
    let bad = dir.join("bad.names");
    std::fs::write(&bad, "104\n").unwrap();
    let r_bad = run(&["--names", bad.to_str().unwrap()], b"");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        r.stdout,
        "type=101 len=21 peerid=8 pid=-1 fd=0 payload=64756d6200\n\
         type=104(PASS_FD) len=16 peerid=16909060 pid=7 fd=1 payload=\n"
    );
    assert_eq!(r_bad.code, 2);
    assert!(r_bad.stderr.contains("line 1"), "{}", r_bad.stderr);
    let r = run(&["--names", "nosuchdaemon"], b"");
    assert_eq!(r.code, 2);
}

#[test]
fn json_is_one_object_per_frame() {
    let r = run(&["--json", "--names", "tmux"], &two_frames(Dialect::Legacy));
    assert_eq!(
        (r.stdout.as_str(), r.code),
        (
            "{\"type\":101,\"name\":\"MSG_IDENTIFY_TERM\",\"len\":21,\"peerid\":8,\"pid\":-1,\"fd\":0,\"payload\":\"64756d6200\"}\n\
             {\"type\":104,\"name\":\"MSG_IDENTIFY_STDIN\",\"len\":16,\"peerid\":16909060,\"pid\":7,\"fd\":1,\"payload\":\"\"}\n",
            0
        )
    );
}

#[test]
fn auto_dialect_learns_from_the_first_descriptor_frame() {
    for d in [Dialect::Legacy, Dialect::Current] {
        let mut stream = two_frames(d);
        // After the dialect is known, a frame with a descriptor of that dialect again.
        stream.extend(frame(d, Header::new(9, 0, 0).with_fd(true), b"z"));
        let r = run(&["--dialect", "auto"], &stream);
        assert_eq!(
            (r.stdout.as_str(), r.stderr.as_str(), r.code),
            (
                &*format!("{TWO_FRAMES}type=9 len=17 peerid=0 pid=0 fd=1 payload=7a\n"),
                "",
                0
            ),
            "{d}"
        );
    }
}
