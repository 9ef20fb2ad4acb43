//! The real tmux 3.3a client against a Rust server: the test listens on a socket,
//! runs `tmux -S THATSOCKET display-message -p hi`, receives the identify sequence
//! with its two descriptors, answers through WRITE_OPEN / WRITE_READY / WRITE and
//! EXIT 3, and checks what tmux printed and its exit status. This proves the C
//! side parses the frames we emit. One test in this binary, so the descriptor
//! count is exact.

#[path = "../examples/tmux/proto.rs"]
mod proto;
mod tmux_harness;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use imsg_io::{Channel, Config};
use proto::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use rustix::event::PollFlags;
use rustix::fs::{fstat, FileType};
use tmux_harness::{deadline, open_fds, read_all_in_background, tmux_command, wait_child, TempDir};

/// What the client sent before its command.
#[derive(Default)]
struct Identify {
    order: Vec<u32>,
    term: Vec<u8>,
    cwd: Vec<u8>,
    ttyname: Option<Vec<u8>>,
    client_pid: Option<i32>,
    environ: Vec<Vec<u8>>,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
}

#[test]
fn real_tmux_client_prints_our_write_and_exits_3() {
    let fds = open_fds();
    {
        let dir = TempDir::new("tmuxsrv");
        let sock = dir.path().join("sock");
        let listener = UnixListener::bind(&sock).unwrap();
        listener.set_nonblocking(true).unwrap();

        let mut cmd = tmux_command(dir.path());
        cmd.arg("-S")
            .arg(&sock)
            .args(["display-message", "-p", "hi"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tmux");
        // The pipe tmux writes to: its inode must be that of the descriptor tmux
        // passes as STDOUT.
        let pipe_ino = fstat(child.stdout.as_ref().unwrap()).unwrap().st_ino;
        let out = read_all_in_background(child.stdout.take().unwrap());
        let err = read_all_in_background(child.stderr.take().unwrap());
        let child_id = child.id() as i32;

        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            proto::wait_ready(listener.as_fd(), PollFlags::IN, Some(deadline())).unwrap();
            let (stream, _) = listener.accept().unwrap();
            stream.set_nonblocking(false).unwrap();
            let mut chan = Channel::new(stream, Config::default().with_fdpass(true)).unwrap();
            serve(&mut chan, child_id, dir.path(), pipe_ino)
        }));
        if served.is_err() {
            // Don't wait out the deadline for a client we stopped serving.
            let _ = child.kill();
        }
        let status = wait_child(&mut child, deadline(), "tmux display-message");
        let out = out.join().unwrap().unwrap();
        let err = err.join().unwrap().unwrap();
        if let Err(p) = served {
            std::panic::resume_unwind(p);
        }

        assert_eq!(String::from_utf8_lossy(&out), "hello from rust\n");
        assert_eq!(String::from_utf8_lossy(&err), "");
        assert_eq!(status.code(), Some(3), "{status:?}");
        drop(listener);
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
}

/// Serves one client, checking everything it sends.
fn serve(chan: &mut Channel, child_id: i32, dir: &std::path::Path, pipe_ino: u64) {
    use std::os::unix::ffi::OsStrExt;
    let mut id = Identify::default();
    let argv: Vec<Vec<u8>> = loop {
        let mut m = proto::recv(chan, Some(deadline()))
            .unwrap()
            .expect("message before end of file");
        assert_eq!(m.peerid(), PROTOCOL_VERSION, "type {}", m.msg_type());
        assert_eq!(m.pid(), -1, "tmux sends pid -1");
        let fd = m.take_fd();
        let flagged = m.flagged_fd();
        let parsed = ClientMessage::parse(m.msg_type(), m.payload()).unwrap();
        assert_eq!(
            flagged,
            parsed.carries_fd(),
            "descriptor flag on type {}",
            m.msg_type()
        );
        id.order.push(m.msg_type());
        match parsed {
            ClientMessage::Stdin => id.stdin = Some(fd.expect("STDIN without descriptor")),
            ClientMessage::Stdout => id.stdout = Some(fd.expect("STDOUT without descriptor")),
            other => {
                assert!(fd.is_none(), "descriptor with {other:?}");
                match other {
                    ClientMessage::Term(t) => id.term = t.to_vec(),
                    ClientMessage::Cwd(c) => id.cwd = c.to_vec(),
                    ClientMessage::TtyName(t) => id.ttyname = Some(t.to_vec()),
                    ClientMessage::ClientPid(p) => id.client_pid = Some(p),
                    ClientMessage::Environ(e) => id.environ.push(e.to_vec()),
                    ClientMessage::Flags(_)
                    | ClientMessage::LongFlags(_)
                    | ClientMessage::Features(_)
                    | ClientMessage::Done => {}
                    ClientMessage::Command(argv) => {
                        break argv.iter().map(<[u8]>::to_vec).collect();
                    }
                    other => panic!("unexpected {other:?} before COMMAND"),
                }
            }
        }
    };
    use proto::msg::*;
    assert_eq!(
        id.order[..8],
        [
            IDENTIFY_FLAGS,
            IDENTIFY_LONGFLAGS,
            IDENTIFY_TERM,
            IDENTIFY_FEATURES,
            IDENTIFY_TTYNAME,
            IDENTIFY_CWD,
            IDENTIFY_STDIN,
            IDENTIFY_STDOUT
        ]
    );
    assert_eq!(id.order[8], IDENTIFY_CLIENTPID);
    assert_eq!(id.order[id.order.len() - 2..], [IDENTIFY_DONE, COMMAND]);
    assert_eq!(argv, [&b"display-message"[..], b"-p", b"hi"]);
    assert_eq!(id.term, b"dumb");
    assert_eq!(id.ttyname.as_deref(), Some(&b""[..]));
    assert_eq!(
        id.cwd,
        std::env::current_dir().unwrap().as_os_str().as_bytes()
    );
    assert_eq!(id.client_pid, Some(child_id));
    let home = [&b"HOME="[..], dir.as_os_str().as_bytes()].concat();
    let mut env = id.environ.clone();
    env.sort();
    assert_eq!(
        env,
        [home, b"PATH=/usr/bin:/bin".to_vec(), b"TERM=dumb".to_vec()]
    );

    // The descriptors are real: stdin is /dev/null, stdout the pipe to this test.
    let devnull = rustix::fs::stat("/dev/null").unwrap();
    let st = fstat(id.stdin.as_ref().unwrap()).unwrap();
    assert_eq!(
        FileType::from_raw_mode(st.st_mode),
        FileType::CharacterDevice
    );
    assert_eq!(st.st_rdev, devnull.st_rdev);
    let st = fstat(id.stdout.as_ref().unwrap()).unwrap();
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Fifo);
    assert_eq!(st.st_ino, pipe_ino);
    // Let tmux's stdout reach end of file once tmux exits.
    id.stdin = None;
    id.stdout = None;

    let mut scratch = Vec::new();
    let open = ServerMessage::WriteOpen {
        stream: 1,
        fd: 1,
        flags: 0,
        path: None,
    };
    proto::send_server(chan, &open, &mut scratch).unwrap();
    chan.flush().unwrap();
    let m = proto::recv(chan, Some(deadline()))
        .unwrap()
        .expect("WRITE_READY before end of file");
    assert_eq!(m.peerid(), PROTOCOL_VERSION);
    assert_eq!(
        ClientMessage::parse(m.msg_type(), m.payload()).unwrap(),
        ClientMessage::WriteReady {
            stream: 1,
            error: 0
        }
    );
    for reply in [
        ServerMessage::Write {
            stream: 1,
            data: b"hello from rust\n",
        },
        ServerMessage::Exit {
            retval: Some(3),
            message: None,
        },
    ] {
        proto::send_server(chan, &reply, &mut scratch).unwrap();
    }
    chan.flush().unwrap();
    // tmux closes its end after EXIT, without another message.
    assert!(proto::recv(chan, Some(deadline())).unwrap().is_none());
}
