//! The `imsg-tap` binary between real peers: Debian's tmux 3.3a client and server,
//! and imsg-io channels on both ends passing descriptors (in one dialect and
//! translated between the two); clients and a daemon that go away.

mod harness;
mod socket_wait;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    deadline, read_all_in_background, run, tmux_command, wait_child, Output, TempDir, TmuxServer,
};
use imsg_io::{Channel, Config, Dialect, ReadStatus};
use rustix::process::{kill_process, Pid, Signal};

/// A running imsg-tap, stopped (`SIGTERM`, then waited for) when finished or
/// dropped.
struct Tap {
    child: Option<Child>,
    out: Option<thread::JoinHandle<std::io::Result<Vec<u8>>>>,
    err: Option<thread::JoinHandle<std::io::Result<Vec<u8>>>>,
}

impl Tap {
    /// Starts `imsg-tap ARGS LISTEN DAEMON` and waits until it listens.
    fn start(args: &[&str], listen: &Path, daemon: &Path) -> Tap {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imsg-tap"))
            .args(args)
            .arg(listen)
            .arg(daemon)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imsg-tap");
        let out = read_all_in_background(child.stdout.take().unwrap());
        let err = read_all_in_background(child.stderr.take().unwrap());
        let tap = Tap {
            child: Some(child),
            out: Some(out),
            err: Some(err),
        };
        let until = deadline();
        socket_wait::wait_listening(listen, until, "imsg-tap");
        tap
    }

    /// Waits for it to end by itself (`--once`).
    fn finish(mut self) -> Output {
        let status = wait_child(self.child.as_mut().unwrap(), deadline(), "imsg-tap");
        self.child = None;
        self.output(status)
    }

    /// Stops it (`SIGTERM`) and returns what it printed.
    fn stop(mut self) -> Output {
        let child = self.child.as_mut().unwrap();
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
        let status = wait_child(child, deadline(), "imsg-tap");
        self.child = None;
        self.output(status)
    }

    fn output(&mut self, status: std::process::ExitStatus) -> Output {
        Output {
            status,
            stdout: self.out.take().unwrap().join().unwrap().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap().unwrap(),
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf-8 output")
}

/// The frame lines of a tap's stdout without their timestamps:
/// `CLIENT DIRECTION type=…`.
fn frames(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .map(|l| {
            let (time, rest) = l.split_once(' ').expect("a timestamp");
            assert!(time.ends_with('Z') && time.len() == 27, "{l}");
            rest.to_owned()
        })
        .collect()
}

/// The real tmux 3.3a client through the tap to a real tmux 3.3a server: the
/// client's stdin and stdout travel through the tap and arrive at the server (in
/// control mode the server talks through them directly), the commands work, and
/// both directions are printed with names. Two clients, one after the other.
#[test]
fn real_tmux_client_through_the_tap_to_a_real_server() {
    let server = TmuxServer::start();
    let tap_sock = server.dir().join("tap");
    let tap = Tap::start(&["--names", "tmux"], &tap_sock, server.socket());

    // Client 1 in control mode: the server reads its commands from the client's
    // stdin and writes the answers to the client's stdout itself, through the
    // descriptors that travelled through the tap (no WRITE frame carries them).
    let mut cmd = tmux_command(server.dir());
    cmd.arg("-S")
        .arg(&tap_sock)
        .args(["-C", "attach", "-t", "t0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut control = cmd.spawn().unwrap();
    let out1 = read_all_in_background(control.stdout.take().unwrap());
    let mut stdin = control.stdin.take().unwrap();
    stdin
        .write_all(b"display-message -p 'read and written by the server: #{version}'\n")
        .unwrap();
    drop(stdin);
    let status = wait_child(&mut control, deadline(), "tmux -C");
    let out1 = out1.join().unwrap().unwrap();
    assert!(status.success());
    assert!(
        text(&out1).contains("\nread and written by the server: 3.3a\n"),
        "{}",
        text(&out1)
    );

    // Client 2: a command whose answer comes back through the tap.
    let mut cmd = tmux_command(server.dir());
    cmd.arg("-S")
        .arg(&tap_sock)
        .args(["display-message", "-p", "through the tap: #{version}"]);
    let out = run(cmd, "tmux display-message");
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        ("through the tap: 3.3a\n", Some(0)),
        "{out:?}"
    );

    let out = tap.stop();
    let lines = frames(&out);
    for want in [
        "1 > type=100(MSG_IDENTIFY_FLAGS) len=20 peerid=8",
        "1 > type=104(MSG_IDENTIFY_STDIN) len=16 peerid=8 pid=-1 fd=1 payload=",
        "1 > type=110(MSG_IDENTIFY_STDOUT) len=16 peerid=8 pid=-1 fd=1 payload=",
        "1 > type=200(MSG_COMMAND)",
        "1 < type=203(MSG_EXIT)",
        "2 > type=100(MSG_IDENTIFY_FLAGS) len=20 peerid=8",
        "2 > type=104(MSG_IDENTIFY_STDIN) len=16 peerid=8 pid=-1 fd=1 payload=",
        "2 < type=304(MSG_WRITE)",
        "2 < type=203(MSG_EXIT)",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "no line starting {want:?} in {lines:#?}"
        );
    }
    // Every line is a frame of client 1 or 2, in the dump format.
    assert!(lines
        .iter()
        .all(|l| l.starts_with("1 ") || l.starts_with("2 ")));
    assert!(!lines.iter().any(|l| l.contains("(none)")), "{lines:#?}");
    // Control mode's answer did not travel in frames.
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("1 < type=304(MSG_WRITE)")));
    let err = text(&out.stderr);
    assert!(err.contains("imsg-tap: client 1: connected"), "{err}");
    assert!(err.contains("imsg-tap: client 1: done"), "{err}");
    assert!(err.contains("imsg-tap: client 2: connected"), "{err}");
    assert!(server.alive());
}

/// A listener on `path` that the test plays the daemon on.
fn daemon_listener(path: &Path) -> UnixListener {
    let l = UnixListener::bind(path).unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

fn accept(listener: &UnixListener) -> UnixStream {
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

/// The next message on `chan`, with its descriptor.
fn next(chan: &mut Channel) -> imsg_io::OwnedMessage {
    loop {
        if let Some(m) = chan.get_owned().unwrap() {
            return m;
        }
        assert!(
            !matches!(chan.read().unwrap(), ReadStatus::Eof),
            "early EOF"
        );
    }
}

/// A pipe whose write end travels; what the far side writes into it comes back.
fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = rustix::pipe::pipe().unwrap();
    (std::fs::File::from(r), w)
}

/// Writes `what` into a received descriptor.
fn write_into(fd: OwnedFd, what: &[u8]) {
    std::fs::File::from(fd).write_all(what).unwrap();
}

fn read_back(mut r: std::fs::File) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    s
}

/// The library on both ends, descriptors both ways, through the tap: in one
/// dialect, and translated (a current-dialect client, a legacy daemon).
#[test]
fn descriptors_both_ways_between_library_peers() {
    for (client_dialect, daemon_dialect, args) in [
        (Dialect::Legacy, Dialect::Legacy, &["--once"][..]),
        (
            Dialect::Current,
            Dialect::Legacy,
            &[
                "--once",
                "--client-dialect",
                "current",
                "--server-dialect=legacy",
            ][..],
        ),
        (
            Dialect::Current,
            Dialect::Current,
            &["--once", "--dialect", "auto", "--json"][..],
        ),
    ] {
        let dir = TempDir::new("tap");
        let daemon_path = dir.path().join("daemon");
        let tap_path = dir.path().join("tap");
        let listener = daemon_listener(&daemon_path);
        let tap = Tap::start(args, &tap_path, &daemon_path);
        let cfg = Config::default().with_fdpass(true);
        let stream = UnixStream::connect(&tap_path).unwrap();
        let mut client = Channel::new(stream, cfg.clone().with_dialect(client_dialect)).unwrap();
        let mut daemon = Channel::new(accept(&listener), cfg.with_dialect(daemon_dialect)).unwrap();

        // Client to daemon: a pipe's write end; the daemon writes into it.
        let (from_daemon, w) = pipe();
        client.compose(10, 1, 0, None, b"hello").unwrap();
        client.compose(11, 2, -7, Some(w), b"take this").unwrap();
        client.flush().unwrap();
        let m = next(&mut daemon);
        assert_eq!(
            (m.msg_type(), m.peerid(), m.payload()),
            (10, 1, &b"hello"[..])
        );
        assert_eq!(m.pid(), std::process::id() as i32);
        let mut m = next(&mut daemon);
        assert_eq!(
            (m.msg_type(), m.pid(), m.payload()),
            (11, -7, &b"take this"[..])
        );
        write_into(
            m.take_fd().expect("the descriptor reached the daemon"),
            b"from the daemon",
        );
        assert_eq!(read_back(from_daemon), "from the daemon");

        // Daemon to client, the same way back.
        let (from_client, w) = pipe();
        daemon.compose(20, 3, 0, Some(w), b"").unwrap();
        daemon.flush().unwrap();
        let mut m = next(&mut client);
        assert_eq!((m.msg_type(), m.peerid()), (20, 3));
        write_into(
            m.take_fd().expect("the descriptor reached the client"),
            b"from the client",
        );
        assert_eq!(read_back(from_client), "from the client");

        drop(client);
        assert!(matches!(daemon.read().unwrap(), ReadStatus::Eof));
        drop(daemon);
        let out = tap.finish();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let pid = std::process::id();
        if args.contains(&"--json") {
            let lines: Vec<&str> = text(&out.stdout).lines().collect();
            assert_eq!(lines.len(), 3, "{lines:#?}");
            assert!(lines[1].contains("\"client\":1,\"direction\":\">\",\"type\":11,"));
            assert!(lines[1].contains("\"fd\":1,\"fd_arrived\":true,"));
        } else {
            assert_eq!(
                frames(&out),
                [
                    format!("1 > type=10 len=21 peerid=1 pid={pid} fd=0 payload=68656c6c6f"),
                    "1 > type=11 len=25 peerid=2 pid=-7 fd=1 payload=74616b652074686973".to_owned(),
                    format!("1 < type=20 len=16 peerid=3 pid={pid} fd=1 payload="),
                ],
                "{client_dialect} -> {daemon_dialect}"
            );
        }
    }
}

/// A client that comes while the daemon is away is told so (its connection is
/// closed) and the tap carries on; a daemon that dies mid-conversation ends that
/// conversation only; a client that vanishes likewise.
#[test]
fn clients_and_daemon_going_away() {
    let dir = TempDir::new("tapgone");
    let daemon_path: PathBuf = dir.path().join("daemon");
    let tap_path = dir.path().join("tap");
    let tap = Tap::start(&[], &tap_path, &daemon_path);
    let cfg = Config::default().with_fdpass(true);

    // No daemon yet.
    let mut c1 = Channel::new(UnixStream::connect(&tap_path).unwrap(), cfg.clone()).unwrap();
    assert!(matches!(c1.read().unwrap(), ReadStatus::Eof));

    // The daemon appears, answers one frame, then dies.
    let listener = daemon_listener(&daemon_path);
    let mut c2 = Channel::new(UnixStream::connect(&tap_path).unwrap(), cfg.clone()).unwrap();
    let mut d2 = Channel::new(accept(&listener), cfg.clone()).unwrap();
    c2.compose(1, 0, 0, None, b"ping").unwrap();
    c2.flush().unwrap();
    assert_eq!(next(&mut d2).msg_type(), 1);
    d2.compose(2, 0, 0, None, b"pong").unwrap();
    d2.flush().unwrap();
    drop(d2);
    assert_eq!(next(&mut c2).msg_type(), 2);
    assert!(matches!(c2.read().unwrap(), ReadStatus::Eof));

    // A client that vanishes: the daemon gets end of file.
    let c3 = Channel::new(UnixStream::connect(&tap_path).unwrap(), cfg.clone()).unwrap();
    let mut d3 = Channel::new(accept(&listener), cfg.clone()).unwrap();
    drop(c3);
    assert!(matches!(d3.read().unwrap(), ReadStatus::Eof));

    // And the tap still works.
    let mut c4 = Channel::new(UnixStream::connect(&tap_path).unwrap(), cfg.clone()).unwrap();
    let mut d4 = Channel::new(accept(&listener), cfg).unwrap();
    c4.compose(4, 0, 0, None, b"").unwrap();
    c4.flush().unwrap();
    assert_eq!(next(&mut d4).msg_type(), 4);
    drop((c4, d4));

    let out = tap.stop();
    let err = text(&out.stderr);
    assert!(
        err.contains("imsg-tap: client 1: cannot connect to the daemon at"),
        "{err}"
    );
    assert!(
        err.contains("imsg-tap: client 2: the daemon closed the connection"),
        "{err}"
    );
    assert!(
        err.contains("imsg-tap: client 3: the client closed the connection"),
        "{err}"
    );
    let lines = frames(&out);
    assert!(lines[0].starts_with("2 > type=1 "), "{lines:#?}");
    assert!(lines[1].starts_with("2 < type=2 "), "{lines:#?}");
    assert!(lines[2].starts_with("4 > type=4 "), "{lines:#?}");
}

/// CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A client that hung up completely while the daemon keeps its end open: the tap
/// waits for the daemon without spinning on the dead client's socket.
#[test]
fn waiting_for_the_daemon_after_the_client_left_does_not_spin() {
    let dir = TempDir::new("tapspin");
    let daemon_path = dir.path().join("daemon");
    let tap_path = dir.path().join("tap");
    let listener = daemon_listener(&daemon_path);
    let tap = Tap::start(&["--once"], &tap_path, &daemon_path);
    let pid = tap.child.as_ref().unwrap().id();
    let cfg = Config::default().with_fdpass(true);
    let client = Channel::new(UnixStream::connect(&tap_path).unwrap(), cfg.clone()).unwrap();
    let mut daemon = Channel::new(accept(&listener), cfg).unwrap();
    drop(client);
    assert!(matches!(daemon.read().unwrap(), ReadStatus::Eof));
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(pid) - before;
    drop(daemon);
    let out = tap.finish();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // 500 ms of spinning would be about 50 ticks; waiting is none.
    assert!(used < 10, "the tap used {used} ticks while waiting");
}

/// A bgpd started for one test (`bgpd -d -f CONF`, control socket in its own
/// directory, listening on a private port), stopped by pid when dropped.
struct Bgpd {
    child: Child,
    socket: PathBuf,
}

impl Bgpd {
    /// Starts bgpd with one passive neighbor, `demo-peer`; `None` when Debian's
    /// openbgpd is not installed (outside CI, which installs it).
    fn start(dir: &Path) -> Option<Bgpd> {
        if !Path::new("/usr/sbin/bgpd").exists() {
            assert!(std::env::var_os("CI").is_none(), "CI must install openbgpd");
            eprintln!("skipped: /usr/sbin/bgpd is not installed (apt-get install openbgpd)");
            return None;
        }
        // bgpd's children chroot here (the Debian service makes it).
        std::fs::create_dir_all("/run/openbgpd").unwrap();
        let socket = dir.join("bgpd.sock");
        let conf = dir.join("bgpd.conf");
        let port = 20_000 + std::process::id() % 20_000;
        std::fs::write(
            &conf,
            format!(
                "AS 65001\nrouter-id 192.0.2.1\nlisten on 127.0.0.1 port {port}\n\
                 socket \"{}\"\nneighbor 192.0.2.2 {{\n\tremote-as 65002\n\
                 \tdescr \"demo-peer\"\n\tpassive\n}}\n",
                socket.display()
            ),
        )
        .unwrap();
        // bgpd refuses a configuration file others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let child = Command::new("/usr/sbin/bgpd")
            .arg("-d")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bgpd");
        let bgpd = Bgpd { child, socket };
        let until = deadline();
        while UnixStream::connect(&bgpd.socket).is_err() {
            assert!(
                Instant::now() < until,
                "bgpd never opened its control socket"
            );
            thread::sleep(Duration::from_millis(20));
        }
        Some(bgpd)
    }
}

impl Drop for Bgpd {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = kill_process(pid, Signal::TERM);
        let until = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Debian's bgpctl through the tap to a real bgpd (OpenBGPD 7.7): `show summary`
/// works, and the tap names the frames from bgpd's own table.
#[test]
fn real_bgpctl_through_the_tap_to_a_real_bgpd() {
    let dir = TempDir::new("tapbgpd");
    let Some(bgpd) = Bgpd::start(dir.path()) else {
        return;
    };
    let tap_path = dir.path().join("tap.sock");
    let tap = Tap::start(&["--once", "--names", "bgpd"], &tap_path, &bgpd.socket);
    let mut cmd = Command::new("/usr/sbin/bgpctl");
    cmd.arg("-s").arg(&tap_path).args(["show", "summary"]);
    let out = run(cmd, "bgpctl show summary");
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("demo-peer"), "{out:?}");
    let out = tap.finish();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = frames(&out);
    assert!(
        lines[0].starts_with("1 > type=13(IMSG_CTL_SHOW_NEIGHBOR) len=16 "),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("1 < type=13(IMSG_CTL_SHOW_NEIGHBOR) len="),
        "{lines:#?}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("1 < type=1(IMSG_CTL_END) len=16 "),
        "{lines:#?}"
    );
    drop(bgpd);
}
