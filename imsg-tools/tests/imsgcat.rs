//! The `imsgcat` binary: two of them talking to each other, descriptors that
//! really travel (checked with an imsg-io channel on the other end), both
//! dialects, end of file, timeouts, protocol and usage errors.

mod harness;
mod socket_wait;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::{deadline, read_all_in_background, wait_child, Output, TempDir};
use imsg_io::{Channel, Config, Dialect, ReadStatus};
use rustix::process::{kill_process, Pid, Signal};

fn imsgcat(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsgcat"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running imsgcat with its output collected in the background.
struct Running {
    child: Child,
    out: thread::JoinHandle<std::io::Result<Vec<u8>>>,
    err: thread::JoinHandle<std::io::Result<Vec<u8>>>,
}

fn spawn(args: &[&str]) -> Running {
    let mut child = imsgcat(args).spawn().expect("spawn imsgcat");
    let out = read_all_in_background(child.stdout.take().unwrap());
    let err = read_all_in_background(child.stderr.take().unwrap());
    Running { child, out, err }
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn finish(mut self) -> Output {
        let status = wait_child(&mut self.child, deadline(), "imsgcat");
        Output {
            status,
            stdout: self.out.join().unwrap().unwrap(),
            stderr: self.err.join().unwrap().unwrap(),
        }
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf-8 output")
}

fn wait_for_socket(path: &Path) {
    socket_wait::wait_listening(path, deadline(), "imsgcat");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Accepts one connection on `listener` within the step deadline.
fn accept(listener: &UnixListener) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).unwrap();
    let until = deadline();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < until, "nobody connected");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Keeps process `pid` stopped (`SIGSTOP`) until dropped (`SIGCONT`), so a peer
/// can connect, write and close before `imsgcat --listen` accepts.
struct Stopped(Pid);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        let p = Pid::from_raw(pid as i32).expect("a child pid");
        kill_process(p, Signal::STOP).expect("SIGSTOP");
        let until = deadline();
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            if state == Some("T") {
                return Stopped(p);
            }
            assert!(Instant::now() < until, "imsgcat never stopped");
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill_process(self.0, Signal::CONT);
    }
}

/// Every frame `chan` receives until end of file: type, payload, and whether a
/// descriptor came with it.
fn receive_all(chan: &mut Channel) -> Vec<(u32, Vec<u8>, bool)> {
    let mut got = Vec::new();
    loop {
        while let Some(mut m) = chan.get_owned().unwrap() {
            let fd = m.take_fd().is_some();
            got.push((m.msg_type(), m.payload().to_vec(), fd));
        }
        if matches!(chan.read().unwrap(), ReadStatus::Eof) {
            return got;
        }
    }
}

#[test]
fn listen_and_connect_talk_to_each_other() {
    let dir = TempDir::new("cat");
    let sock = dir.path().join("sock");
    let passed = dir.path().join("passed");
    std::fs::write(&passed, b"x").unwrap();

    let listener = spawn(&[
        "--listen",
        path_str(&sock),
        "--after",
        "1",
        "--send",
        "7:1:0:aabb",
        "--count",
        "2",
        "--timeout",
        "20",
    ]);
    wait_for_socket(&sock);
    let fd_spec = format!("200:8:-1:00ab:fd={}", path_str(&passed));
    let connector = spawn(&[
        "--connect",
        path_str(&sock),
        "--send",
        &fd_spec,
        "--send",
        "201:0:0:",
        "--count",
        "1",
        "--timeout",
        "20",
    ]);
    let (lpid, cpid) = (listener.pid(), connector.pid());
    let c = connector.finish();
    let l = listener.finish();

    assert_eq!(text(&l.stderr), "");
    assert_eq!(
        text(&l.stdout),
        format!(
            "type=200 len=18 peerid=8 pid=-1 fd=1 payload=00ab\n\
             type=201 len=16 peerid=0 pid={cpid} fd=0 payload=\n"
        )
    );
    assert_eq!(l.status.code(), Some(0));
    assert_eq!(text(&c.stderr), "");
    assert_eq!(
        text(&c.stdout),
        format!("type=7 len=18 peerid=1 pid={lpid} fd=0 payload=aabb\n")
    );
    assert_eq!(c.status.code(), Some(0));
    assert!(!sock.exists(), "--listen left its socket file");
}

#[test]
fn descriptors_really_travel_both_ways() {
    for dialect in [Dialect::Legacy, Dialect::Current] {
        let dir = TempDir::new("catfd");
        let sock = dir.path().join("sock");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"the secret").unwrap();
        let listener = UnixListener::bind(&sock).unwrap();
        let spec = format!("300:0:0::fd={}", path_str(&secret));
        let cat = spawn(&[
            "--dialect",
            &dialect.to_string(),
            "--connect",
            path_str(&sock),
            "--send",
            &spec,
            "--count",
            "1",
            "--timeout",
            "20",
        ]);
        let stream = accept(&listener);
        let config = Config::default().with_dialect(dialect).with_fdpass(true);
        let mut chan = Channel::new(stream, config).unwrap();

        let m = loop {
            if let Some(m) = chan.get_owned().unwrap() {
                break m;
            }
            assert!(!matches!(chan.read().unwrap(), imsg_io::ReadStatus::Eof));
        };
        let mut m = m;
        assert_eq!(
            (m.msg_type(), m.peerid(), m.pid()),
            (300, 0, cat.pid() as i32)
        );
        assert!(m.flagged_fd());
        let mut file = std::fs::File::from(m.take_fd().expect("the descriptor"));
        let mut content = String::new();
        file.read_to_string(&mut content).unwrap();
        assert_eq!(content, "the secret");

        let devnull = std::fs::File::open("/dev/null").unwrap();
        chan.compose(9, 5, 77, Some(devnull.into()), &[1, 2])
            .unwrap();
        chan.flush().unwrap();
        let out = cat.finish();
        assert_eq!(text(&out.stderr), "");
        assert_eq!(
            text(&out.stdout),
            "type=9 len=18 peerid=5 pid=77 fd=1 payload=0102\n"
        );
        assert_eq!(out.status.code(), Some(0), "{dialect}");
    }
}

#[test]
fn end_of_file_ends_with_status_0() {
    let dir = TempDir::new("cateof");
    let sock = dir.path().join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&["--connect", path_str(&sock), "--timeout", "20"]);
    let mut chan = Channel::new(accept(&listener), Config::default()).unwrap();
    chan.compose(1, 2, 3, None, b"").unwrap();
    chan.compose(4, 5, -6, None, b"\xff").unwrap();
    chan.flush().unwrap();
    drop(chan);
    let out = cat.finish();
    assert_eq!(
        text(&out.stdout),
        "type=1 len=16 peerid=2 pid=3 fd=0 payload=\ntype=4 len=17 peerid=5 pid=-6 fd=0 payload=ff\n"
    );
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), ""));
}

#[test]
fn timeouts_fail_with_status_1() {
    // Nobody connects.
    let dir = TempDir::new("catto");
    let sock = dir.path().join("sock");
    let out = spawn(&["--listen", path_str(&sock), "--timeout", "0.2"]).finish();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("imsgcat: timeout"), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert_eq!(text(&out.stdout), "");
    assert!(!sock.exists(), "--listen left its socket file");

    // Connected, one frame of the two expected, then silence.
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&[
        "--connect",
        path_str(&sock),
        "--count",
        "2",
        "--timeout",
        "0.3",
    ]);
    let mut chan = Channel::new(accept(&listener), Config::default()).unwrap();
    chan.compose(1, 0, 1, None, b"").unwrap();
    chan.flush().unwrap();
    let out = cat.finish();
    drop(chan);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "imsgcat: timeout after 300ms (1 frames received)\n"
    );
    assert_eq!(
        text(&out.stdout),
        "type=1 len=16 peerid=0 pid=1 fd=0 payload=\n"
    );
}

#[test]
fn protocol_errors_fail_with_status_1() {
    let dir = TempDir::new("catproto");
    let sock = dir.path().join("sock");
    let sock_s = path_str(&sock);

    // A frame over --max (total size, header included).
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&["--connect", sock_s, "--max", "32", "--timeout", "20"]);
    let mut chan = Channel::new(accept(&listener), Config::default()).unwrap();
    chan.compose(1, 0, 1, None, &[0; 16]).unwrap();
    chan.compose(2, 0, 1, None, &[0; 17]).unwrap();
    chan.flush().unwrap();
    let out = cat.finish();
    drop(chan);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "the 32-byte frame is accepted"
    );
    let err = text(&out.stderr);
    assert!(err.starts_with("imsgcat: protocol error"), "{err:?}");
    assert_eq!(err.lines().count(), 1);

    // A legacy peer with a descriptor, read as the current dialect.
    let cat = spawn(&[
        "--connect",
        sock_s,
        "--dialect",
        "current",
        "--timeout",
        "20",
    ]);
    let mut chan = Channel::new(accept(&listener), Config::default().with_fdpass(true)).unwrap();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    chan.compose(104, 8, -1, Some(devnull.into()), b"").unwrap();
    chan.flush().unwrap();
    let out = cat.finish();
    drop(chan);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("legacy"),
        "the error names the peer's dialect: {err:?}"
    );
    assert_eq!(text(&out.stdout), "");

    // The peer hangs up in the middle of a frame, after a whole one.
    let cat = spawn(&["--connect", sock_s, "--timeout", "20"]);
    let mut stream = accept(&listener);
    let mut wire = Vec::new();
    for (ty, len) in [(1u32, 16u16), (2, 20)] {
        wire.extend(ty.to_ne_bytes());
        wire.extend(len.to_ne_bytes());
        wire.extend(0u16.to_ne_bytes());
        wire.extend(0u32.to_ne_bytes());
        wire.extend(9u32.to_ne_bytes());
    }
    wire.extend([0xaa, 0xbb]);
    std::io::Write::write_all(&mut stream, &wire).unwrap();
    drop(stream);
    let out = cat.finish();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "type=1 len=16 peerid=0 pid=9 fd=0 payload=\n"
    );
    let err = text(&out.stderr);
    assert!(err.starts_with("imsgcat: protocol error"), "{err:?}");
    assert_eq!(err.lines().count(), 1);

    // --max outside 16..=65535 for the legacy dialect.
    let out = spawn(&["--connect", sock_s, "--max", "15"]).finish();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--connect", "a", "--listen", "b"],
        &["--connect", "a", "--send", "1:2:3:xyz"],
        &["--connect", "a", "--dialect", "newest"],
        &["--listen"],
        &["--bogus"],
    ] {
        let out = spawn(args).finish();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stdout), "");
        let err = text(&out.stderr);
        assert!(err.starts_with("imsgcat: "), "{err:?}");
        assert!(err.contains("usage: imsgcat"), "{err:?}");
    }
    let out = spawn(&["--help"]).finish();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("usage: imsgcat"));
}

/// `imsgcat --listen SOCK ARGS…`, stopped once it listens, and a channel
/// connected to it (descriptor passing on): what the test writes and closes now
/// is all there before imsgcat accepts, once the [`Stopped`] guard is dropped.
fn listening_imsgcat_stopped(sock: &Path, args: &[&str]) -> (Running, Stopped, Channel) {
    let mut all = vec!["--listen", path_str(sock), "--timeout", "20"];
    all.extend(args);
    let cat = spawn(&all);
    wait_for_socket(sock);
    let stopped = Stopped::new(cat.pid());
    let stream = UnixStream::connect(sock).unwrap();
    let chan = Channel::new(stream, Config::default().with_fdpass(true)).unwrap();
    (cat, stopped, chan)
}

/// Status 1 and one line on stderr: a write failure with `unsent` frames not sent.
fn assert_write_failure(out: &Output, unsent: usize) {
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("imsgcat: write: "), "{err:?}");
    assert!(
        err.contains(&format!("{unsent} frames not sent")),
        "{err:?}"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

/// Frames that carry descriptors go out one `sendmsg` each; those still queued when
/// the peer half-closes are flushed before imsgcat exits 0.
#[test]
fn end_of_file_flushes_the_queue() {
    let dir = TempDir::new("cateofq");
    let sock = dir.path().join("sock");
    let passed = dir.path().join("passed");
    std::fs::write(&passed, b"x").unwrap();
    let specs: Vec<String> = ["9:0:0:aabb", "10:0:0:cc", "11:0:0:dd"]
        .iter()
        .map(|s| format!("{s}:fd={}", path_str(&passed)))
        .collect();
    let mut args = vec!["--after", "1"];
    for s in &specs {
        args.extend(["--send", s.as_str()]);
    }
    let (cat, stopped, mut chan) = listening_imsgcat_stopped(&sock, &args);
    chan.compose(7, 0, 1, None, b"").unwrap();
    chan.flush().unwrap();
    rustix::net::shutdown(&chan, rustix::net::Shutdown::Write).unwrap();
    drop(stopped);

    let got = receive_all(&mut chan);
    let out = cat.finish();
    assert_eq!(
        got,
        [
            (9, vec![0xaa, 0xbb], true),
            (10, vec![0xcc], true),
            (11, vec![0xdd], true)
        ]
    );
    assert_eq!(
        text(&out.stdout),
        "type=7 len=16 peerid=0 pid=1 fd=0 payload=\n"
    );
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(0), ""));
}

/// A peer that sent frames and closed before reading ours: the frames it sent are
/// printed, then the write failure is reported (status 1, one line, with the
/// number of frames not sent).
#[test]
fn frames_received_are_printed_before_a_write_failure() {
    let dir = TempDir::new("catwf");
    let sock = dir.path().join("sock");
    let (cat, stopped, mut chan) =
        listening_imsgcat_stopped(&sock, &["--send", "5:0:0:01", "--send", "6:0:0:02"]);
    chan.compose(1, 2, 3, None, b"").unwrap();
    chan.compose(4, 5, 6, None, b"\xff").unwrap();
    chan.flush().unwrap();
    drop(chan);
    drop(stopped);

    let out = cat.finish();
    assert_eq!(
        text(&out.stdout),
        "type=1 len=16 peerid=2 pid=3 fd=0 payload=\ntype=4 len=17 peerid=5 pid=6 fd=0 payload=ff\n"
    );
    assert_write_failure(&out, 2);
}

/// The same with descriptor frames queued after the first frame received: the
/// peer closed completely, so none of the three can go, and imsgcat says so.
#[test]
fn frames_queued_at_end_of_file_that_cannot_go_fail_with_status_1() {
    let dir = TempDir::new("cateofc");
    let sock = dir.path().join("sock");
    let spec = "9:0:0:aa:fd=/dev/null";
    let (cat, stopped, mut chan) = listening_imsgcat_stopped(
        &sock,
        &[
            "--after", "1", "--send", spec, "--send", spec, "--send", spec,
        ],
    );
    chan.compose(7, 0, 1, None, b"").unwrap();
    chan.flush().unwrap();
    drop(chan);
    drop(stopped);

    let out = cat.finish();
    assert_eq!(
        text(&out.stdout),
        "type=7 len=16 peerid=0 pid=1 fd=0 payload=\n"
    );
    assert_write_failure(&out, 3);
}

/// A frame header in the legacy dialect, as raw bytes.
fn legacy_header(ty: u32, len: u16, flags: u16, pid: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(ty.to_ne_bytes());
    h.extend(len.to_ne_bytes());
    h.extend(flags.to_ne_bytes());
    h.extend(0u32.to_ne_bytes());
    h.extend(pid.to_ne_bytes());
    h
}

/// Frame A, then frame B with three descriptors in one `sendmsg` (more than one
/// receive takes: `MSG_CTRUNC`), both there before imsgcat reads: A is printed,
/// then the loss is reported.
#[test]
fn frames_before_a_descriptor_loss_are_printed() {
    let dir = TempDir::new("catctrunc");
    let sock = dir.path().join("sock");
    let (cat, stopped, chan) = listening_imsgcat_stopped(&sock, &[]);
    let a = legacy_header(1, 16, 0, 9);
    imsg_io::raw::sendmsg(chan.as_fd(), &a, &[]).unwrap();
    let b = legacy_header(2, 16, 1, 9);
    let null = std::fs::File::open("/dev/null").unwrap();
    let fds = [null.as_fd(), null.as_fd(), null.as_fd()];
    imsg_io::raw::sendmsg(chan.as_fd(), &b, &fds).unwrap();
    drop(stopped);
    let out = cat.finish();
    drop(chan);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("type=1 len=16 peerid=0 pid=9 fd=0 payload=\n"),
        "{stdout:?}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("descriptors sent by the peer were lost"),
        "{err:?}"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert_eq!(out.status.code(), Some(1));
}

/// End of file before `--count N` frames: status 1, and the count says so.
#[test]
fn end_of_file_before_count_fails() {
    let dir = TempDir::new("catshort");
    let sock = dir.path().join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&[
        "--connect",
        path_str(&sock),
        "--count",
        "3",
        "--timeout",
        "20",
    ]);
    let mut chan = Channel::new(accept(&listener), Config::default()).unwrap();
    chan.compose(1, 0, 1, None, b"").unwrap();
    chan.compose(2, 0, 1, None, b"").unwrap();
    chan.flush().unwrap();
    drop(chan);
    let out = cat.finish();
    assert_eq!(text(&out.stdout).lines().count(), 2);
    assert_eq!(
        text(&out.stderr),
        "imsgcat: end of file after 2 of 3 frames\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// `--send type:peerid:pid:@FILE` takes the payload from a file: larger than any
/// command line allows.
#[test]
fn payload_from_a_file() {
    let dir = TempDir::new("catfile");
    let sock = dir.path().join("sock");
    let payload_path = dir.path().join("payload");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&payload_path, &payload).unwrap();
    let listener = UnixListener::bind(&sock).unwrap();
    let spec = format!("5:6:7:@{}:fd=/dev/null", path_str(&payload_path));
    let cat = spawn(&[
        "--dialect",
        "current",
        "--max",
        "400000",
        "--connect",
        path_str(&sock),
        "--send",
        &spec,
        "--count",
        "0",
        "--timeout",
        "20",
    ]);
    let config = Config::default()
        .with_dialect(Dialect::Current)
        .with_max_frame(400_000)
        .unwrap()
        .with_fdpass(true);
    let mut chan = Channel::new(accept(&listener), config).unwrap();
    let got = receive_all(&mut chan);
    let out = cat.finish();
    assert_eq!((text(&out.stderr), out.status.code()), ("", Some(0)));
    assert_eq!(got, [(5, payload, true)]);

    // A missing file is a usage error.
    let out = spawn(&["--connect", "x", "--send", "1:0:0:@/nonexistent/p"]).finish();
    assert_eq!(out.status.code(), Some(2));
}

/// `fd=1` when the descriptor arrived, `fd=1(none)` when the frame was flagged but
/// none came with it.
#[test]
fn flagged_frame_without_descriptor_is_shown() {
    let dir = TempDir::new("catnofd");
    let sock = dir.path().join("sock");
    let (cat, stopped, chan) = listening_imsgcat_stopped(&sock, &["--count", "2"]);
    let null = std::fs::File::open("/dev/null").unwrap();
    imsg_io::raw::sendmsg(chan.as_fd(), &legacy_header(1, 16, 1, 9), &[null.as_fd()]).unwrap();
    imsg_io::raw::sendmsg(chan.as_fd(), &legacy_header(2, 16, 1, 9), &[]).unwrap();
    drop(stopped);
    let out = cat.finish();
    drop(chan);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        (
            "type=1 len=16 peerid=0 pid=9 fd=1 payload=\n\
             type=2 len=16 peerid=0 pid=9 fd=1(none) payload=\n",
            "",
            Some(0)
        )
    );
}

/// With `ulimit -n 5` the descriptor guard can never let a read through: imsgcat
/// says so once and exits 1 instead of idling until the timeout.
#[test]
fn descriptor_limit_too_low_is_reported() {
    let dir = TempDir::new("catlimit");
    let sock = dir.path().join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 5 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_imsgcat"))
        .args(["--connect", path_str(&sock), "--timeout", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out_r = read_all_in_background(child.stdout.take().unwrap());
    let err_r = read_all_in_background(child.stderr.take().unwrap());
    let mut chan = Channel::new(accept(&listener), Config::default()).unwrap();
    chan.compose(1, 0, 1, None, b"").unwrap();
    chan.flush().unwrap();
    let started = Instant::now();
    let status = wait_child(&mut child, deadline(), "imsgcat");
    let (stdout, stderr) = (
        out_r.join().unwrap().unwrap(),
        err_r.join().unwrap().unwrap(),
    );
    drop(chan);
    let err = text(&stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "{err:?}");
    assert!(!err.contains("timeout"), "{err:?}");
    assert!(
        err.contains("descriptor") && err.contains("ulimit -n"),
        "{err:?}"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert_eq!((text(&stdout), status.code()), ("", Some(1)));
}

/// `sendmsg` fails with `ETOOMANYREFS` when an unprivileged user has more
/// descriptors in flight than the sender's `RLIMIT_NOFILE`: imsgcat waits for the
/// peer to take some and retries, instead of failing. One imsgcat (as `nobody`,
/// root is exempt) puts 20 descriptors in flight that the test does not read yet;
/// a second one, as `nobody` with `ulimit -n 10`, must wait until they are read.
#[test]
fn too_many_descriptors_in_flight_is_back_pressure() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run imsgcat as nobody");
        return;
    }
    let dir = TempDir::new("cattmr");
    let open = std::fs::Permissions::from_mode(0o777);
    std::fs::set_permissions(dir.path(), open.clone()).unwrap();
    let as_nobody = |shell: &str, args: &[String]| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{shell}exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_imsgcat"))
            .args(args)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let out = read_all_in_background(child.stdout.take().unwrap());
        let err = read_all_in_background(child.stderr.take().unwrap());
        Running { child, out, err }
    };
    let listen = |name: &str| {
        let path = dir.path().join(name);
        let l = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, open.clone()).unwrap();
        (l, path_str(&path).to_owned())
    };

    let (l1, s1) = listen("s1");
    let mut args = vec!["--connect".to_owned(), s1, "--count".into(), "0".into()];
    for i in 0..20 {
        args.extend(["--send".to_owned(), format!("{i}:0:0:aa:fd=/dev/null")]);
    }
    let first = as_nobody("", &args);
    let stream1 = accept(&l1);
    let out = first.finish();
    assert_eq!((text(&out.stderr), out.status.code()), ("", Some(0)));

    let (l2, s2) = listen("s2");
    let args = [
        "--connect",
        &s2,
        "--count",
        "0",
        "--timeout",
        "20",
        "--send",
        "99:0:0:bb:fd=/dev/null",
    ]
    .map(String::from);
    let second = as_nobody("ulimit -n 10 && ", &args);
    let stream2 = accept(&l2);
    // Let the second imsgcat run into the limit before anything is read.
    thread::sleep(Duration::from_millis(300));
    let cfg = Config::default().with_fdpass(true);
    let got1 = receive_all(&mut Channel::new(stream1, cfg.clone()).unwrap());
    let got2 = receive_all(&mut Channel::new(stream2, cfg).unwrap());
    let out = second.finish();
    assert_eq!((text(&out.stderr), out.status.code()), ("", Some(0)));
    assert_eq!(got1.len(), 20);
    assert_eq!(got2, [(99, vec![0xbb], true)]);
}

/// `--dialect auto`: a current-dialect peer's descriptor frame teaches imsgcat the
/// dialect, and imsgcat's own descriptor frame goes out in it.
#[test]
fn auto_dialect_answers_in_the_peers_dialect() {
    let dir = TempDir::new("catauto");
    let sock = dir.path().join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&[
        "--dialect",
        "auto",
        "--connect",
        path_str(&sock),
        "--after",
        "1",
        "--count",
        "1",
        "--send",
        "5:0:0:01:fd=/dev/null",
        "--timeout",
        "20",
    ]);
    let cfg = Config::default()
        .with_dialect(Dialect::Current)
        .with_fdpass(true);
    let mut chan = Channel::new(accept(&listener), cfg).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    chan.compose(4, 0, 3, Some(null.into()), b"").unwrap();
    chan.flush().unwrap();
    rustix::net::shutdown(&chan, rustix::net::Shutdown::Write).unwrap();
    let got = receive_all(&mut chan);
    let out = cat.finish();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("type=4 len=16 peerid=0 pid=3 fd=1 payload=\n", "", Some(0))
    );
    assert_eq!(got, [(5, vec![1], true)]);
}

/// A peer that hangs up right after imsgcat's descriptor frame: the error says it
/// may speak the other dialect.
#[test]
fn hang_up_after_a_descriptor_frame_names_the_other_dialect() {
    let dir = TempDir::new("cathint");
    let sock = dir.path().join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&[
        "--connect",
        path_str(&sock),
        "--count",
        "1",
        "--send",
        "104:8:0::fd=/dev/null",
        "--timeout",
        "20",
    ]);
    let mut stream = accept(&listener);
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).unwrap();
    drop(stream);
    let out = cat.finish();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("imsgcat: end of file after 0 of 1 frames; the peer closed"),
        "{err:?}"
    );
    assert!(
        err.ends_with("may speak the current imsg dialect (OpenBSD >= 7.7, tmux >= 3.6), not the legacy one: try --dialect current\n"),
        "{err:?}"
    );
}

/// `--names` and `--json` as in imsg-dump, plus whether the descriptor arrived.
#[test]
fn names_and_json() {
    let dir = TempDir::new("catjson");
    let sock = dir.path().join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cat = spawn(&[
        "--connect",
        path_str(&sock),
        "--names",
        "tmux",
        "--json",
        "--timeout",
        "20",
    ]);
    let mut chan = Channel::new(accept(&listener), Config::default().with_fdpass(true)).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    chan.compose(110, 8, -1, Some(null.into()), b"").unwrap();
    chan.compose(999, 0, 2, None, b"\x01").unwrap();
    chan.flush().unwrap();
    drop(chan);
    let out = cat.finish();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        (
            "{\"type\":110,\"name\":\"MSG_IDENTIFY_STDOUT\",\"len\":16,\"peerid\":8,\"pid\":-1,\"fd\":1,\"fd_arrived\":true,\"payload\":\"\"}\n\
             {\"type\":999,\"len\":17,\"peerid\":0,\"pid\":2,\"fd\":0,\"fd_arrived\":false,\"payload\":\"01\"}\n",
            "",
            Some(0)
        )
    );
}
