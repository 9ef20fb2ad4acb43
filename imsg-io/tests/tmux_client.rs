//! Rust as the tmux client: a private tmux 3.3a server per test, an imsg-io
//! channel (legacy dialect, descriptor passing) that identifies itself with real
//! stdin/stdout descriptors, runs commands and checks the server's real answers.
//! The protocol code is the `tmux` example's.

#[path = "../examples/tmux/proto.rs"]
mod proto;
mod tmux_harness;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

use imsg_io::{Channel, Config};
use proto::{ClientIo, Exit, Identity, ProtoError, ServerMessage};
use tmux_harness::{deadline, open_fds, serial, TmuxServer};

/// What a command left: its exit, and what the server wrote to its stdout and
/// stderr.
struct Ran {
    exit: Exit,
    out: Vec<u8>,
    err: Vec<u8>,
}

fn connect(server: &TmuxServer) -> Channel {
    let stream = UnixStream::connect(server.socket()).expect("connect to tmux");
    Channel::new(stream, Config::default().with_fdpass(true)).expect("channel")
}

fn identity(server: &TmuxServer) -> Identity {
    let home = server.dir().as_os_str().as_bytes();
    Identity {
        term: b"dumb".to_vec(),
        cwd: home.to_vec(),
        client_pid: std::process::id() as i32,
        environ: vec![
            b"PATH=/usr/bin:/bin".to_vec(),
            b"TERM=dumb".to_vec(),
            [&b"HOME="[..], home].concat(),
        ],
    }
}

/// Runs `args` on a fresh connection: stdin is `/dev/null`, stdout a pipe, as
/// descriptors; `input` is what a command reading `-` gets.
fn run(server: &TmuxServer, args: &[&str], input: Option<&[u8]>) -> Result<Ran, ProtoError> {
    let mut chan = connect(server);
    let stdin_fd: OwnedFd = File::open("/dev/null")?.into();
    let (_stdout_read, stdout_fd) = rustix::pipe::pipe().map_err(std::io::Error::from)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = input;
    let io = ClientIo {
        stdin_fd,
        stdout_fd,
        input: input.as_mut().map(|r| r as &mut dyn std::io::Read),
        out: &mut out,
        err: &mut err,
    };
    let exit = proto::run_command(&mut chan, &identity(server), args, io, Some(deadline()))?;
    Ok(Ran { exit, out, err })
}

#[test]
fn version_then_list_sessions() {
    let _serial = serial();
    let fds = open_fds();
    {
        let server = TmuxServer::start();

        let ran = run(&server, &["display-message", "-p", "#{version}"], None).unwrap();
        assert_eq!(
            ran.exit,
            Exit {
                retval: 0,
                message: None
            }
        );
        assert_eq!(String::from_utf8_lossy(&ran.out), "3.3a\n");
        assert_eq!(String::from_utf8_lossy(&ran.err), "");

        // A second connection to the same server.
        let ran = run(&server, &["list-sessions"], None).unwrap();
        assert_eq!(ran.exit.retval, 0);
        assert_eq!(String::from_utf8_lossy(&ran.err), "");
        let out = String::from_utf8(ran.out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert!(lines[0].starts_with("t0: 1 windows (created "), "{out:?}");
        assert!(out.ends_with(")\n"), "{out:?}");
        assert!(server.alive());
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
}

#[test]
fn errors_come_back_on_stderr_with_status_1() {
    let _serial = serial();
    let fds = open_fds();
    {
        let server = TmuxServer::start();
        let ran = run(&server, &["no-such-command"], None).unwrap();
        assert_eq!(ran.exit.retval, 1);
        assert_eq!(ran.out, b"");
        assert_eq!(
            String::from_utf8_lossy(&ran.err),
            "unknown command: no-such-command\n"
        );

        let ran = run(&server, &["has-session", "-t", "nope"], None).unwrap();
        assert_eq!(ran.exit.retval, 1);
        assert_eq!(
            String::from_utf8_lossy(&ran.err),
            "can't find session: nope\n"
        );
        assert!(server.alive());
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
}

#[test]
fn chained_commands_and_stdin_through_read_messages() {
    let _serial = serial();
    let fds = open_fds();
    {
        let server = TmuxServer::start();
        // Two commands in one COMMAND message, two WRITEs on one stream.
        let ran = run(
            &server,
            &[
                "display-message",
                "-p",
                "a",
                ";",
                "display-message",
                "-p",
                "b",
            ],
            None,
        )
        .unwrap();
        assert_eq!((ran.exit.retval, &ran.out[..]), (0, &b"a\nb\n"[..]));

        // load-buffer - opens our stdin with READ_OPEN: fed through READ + READ_DONE.
        let ran = run(
            &server,
            &["load-buffer", "-", ";", "show-buffer"],
            Some(b"pasted from rust"),
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&ran.err), "");
        assert_eq!(
            (ran.exit.retval, String::from_utf8_lossy(&ran.out).as_ref()),
            (0, "pasted from rust")
        );

        // Without input, READ_DONE carries EBADF and tmux says so.
        let ran = run(&server, &["load-buffer", "-"], None).unwrap();
        assert_eq!(ran.exit.retval, 1);
        assert_eq!(
            String::from_utf8_lossy(&ran.err),
            "-: Bad file descriptor\n"
        );
        assert!(server.alive());
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
}

#[test]
fn wrong_protocol_version_gets_msg_version() {
    let _serial = serial();
    let fds = open_fds();
    {
        let server = TmuxServer::start();
        let mut chan = connect(&server);
        // Version 7 in the peerid: the server answers MSG_VERSION and hangs up.
        chan.compose(proto::msg::IDENTIFY_FLAGS, 7, 0, None, &0i32.to_ne_bytes())
            .unwrap();
        chan.flush().unwrap();
        let m = proto::recv(&mut chan, Some(deadline()))
            .unwrap()
            .expect("an answer before end of file");
        assert_eq!(
            ServerMessage::parse(m.msg_type(), m.payload()).unwrap(),
            ServerMessage::Version
        );
        assert_eq!(m.peerid() & 0xff, proto::PROTOCOL_VERSION);
        assert!(proto::recv(&mut chan, Some(deadline())).unwrap().is_none());
        drop(chan);

        // The server lives on and serves the next client.
        let ran = run(&server, &["display-message", "-p", "#{session_name}"], None).unwrap();
        assert_eq!((ran.exit.retval, &ran.out[..]), (0, &b"t0\n"[..]));
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
}

/// A server of the current dialect (tmux 3.6 and later) cannot parse the legacy
/// client's first descriptor frame and hangs up: the client's channel then says
/// the server may speak the current dialect (the tmux example prints it with
/// "try --dialect current").
#[test]
fn a_server_of_the_other_dialect_hanging_up_gets_the_hint() {
    let _serial = serial();
    let dir = tmux_harness::TempDir::new("tmuxhint");
    let sock = dir.path().join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let cfg = Config::default()
            .with_fdpass(true)
            .with_dialect(imsg_io::Dialect::Current);
        let mut chan = Channel::new(stream, cfg).unwrap();
        // Read until the first frame this dialect cannot parse, as tmux would,
        // then hang up.
        loop {
            match chan.get() {
                Ok(Some(_)) => continue,
                Err(_) => return,
                Ok(None) => {}
            }
            if matches!(chan.read(), Ok(imsg_io::ReadStatus::Eof) | Err(_)) {
                return;
            }
        }
    });
    let stream = UnixStream::connect(&sock).unwrap();
    let mut chan = Channel::new(stream, Config::default().with_fdpass(true)).unwrap();
    let stdin_fd: OwnedFd = File::open("/dev/null").unwrap().into();
    let stdout_fd: OwnedFd = File::open("/dev/null").unwrap().into();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = ClientIo {
        stdin_fd,
        stdout_fd,
        input: None,
        out: &mut out,
        err: &mut err,
    };
    let id = Identity {
        term: b"dumb".to_vec(),
        cwd: b"/".to_vec(),
        client_pid: std::process::id() as i32,
        environ: vec![],
    };
    let result = proto::run_command(&mut chan, &id, &["list-sessions"], io, Some(deadline()));
    server.join().unwrap();
    assert!(result.is_err());
    assert_eq!(chan.peer_may_speak(), Some(imsg_io::Dialect::Current));
}
