//! The tmux protocol module (shared with the `tmux` example) without a tmux: the
//! capture of a real 3.3a client decoded and re-encoded byte for byte, every
//! size check, and the client driver against a scripted server over a
//! socketpair (stream numbers, WRITE_CLOSE, refused paths, EXIT messages).

#[path = "../examples/tmux/proto.rs"]
mod proto;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use imsg_codec::{Dialect, Framing};
use imsg_io::{Channel, Config};
use proto::{msg, Argv, ClientIo, ClientMessage, Exit, Identity, ProtoError, ServerMessage};

/// What tmux 3.3a's client sent for `tmux -S SOCK display-message -p hi`
/// (a copy of the capture imsg-codec's tests made, so this crate's tests build
/// from its own package).
const CAPTURE: &[u8] = include_bytes!("../testdata/tmux-3.3a-client.bin");

#[test]
fn real_client_capture_decodes_and_reencodes_byte_for_byte() {
    let mut seen = Vec::new();
    let mut scratch = Vec::new();
    for frame in Framing::standard(Dialect::Legacy).frames(CAPTURE) {
        let frame = frame.unwrap();
        assert_eq!(frame.peerid(), proto::PROTOCOL_VERSION);
        assert_eq!(frame.pid(), u32::MAX);
        let m = ClientMessage::parse(frame.msg_type(), frame.payload_ref()).unwrap();
        assert_eq!(m.msg_type(), frame.msg_type());
        assert_eq!(frame.has_fd(), m.carries_fd(), "{m:?}");
        m.encode(&mut scratch).unwrap();
        assert_eq!(scratch, frame.payload(), "{m:?}");
        seen.push(m);
    }
    use ClientMessage as M;
    assert_eq!(seen.len(), 14);
    assert_eq!(
        seen[..5],
        [
            M::Flags(0),
            M::LongFlags(0),
            M::Term(b"dumb"),
            M::Features(0),
            M::TtyName(b"")
        ]
    );
    assert!(matches!(seen[5], M::Cwd(c) if c.starts_with(b"/tmp/")));
    assert_eq!(seen[6..8], [M::Stdin, M::Stdout]);
    assert!(matches!(seen[8], M::ClientPid(p) if p > 0));
    assert_eq!(
        seen[9..11],
        [M::Environ(b"PATH=/usr/bin:/bin"), M::Environ(b"TERM=dumb")]
    );
    assert!(matches!(seen[11], M::Environ(e) if e.starts_with(b"HOME=/tmp/")));
    assert_eq!(seen[12], M::Done);
    let M::Command(argv) = seen[13] else {
        panic!("{:?}", seen[13])
    };
    assert_eq!(argv.len(), 3);
    assert_eq!(
        argv.iter().collect::<Vec<_>>(),
        [&b"display-message"[..], b"-p", b"hi"]
    );
}

#[test]
fn wrong_sizes_are_refused_as_the_3_3a_peers_refuse_them() {
    let bad_size = |ty: u32, payload: &[u8]| {
        matches!(
            ClientMessage::parse(ty, payload),
            Err(ProtoError::BadSize { ty: t, len }) if t == ty && len == payload.len()
        )
    };
    for ty in [
        msg::IDENTIFY_FLAGS,
        msg::IDENTIFY_FEATURES,
        msg::IDENTIFY_CLIENTPID,
    ] {
        assert!(bad_size(ty, &[0; 3]) && bad_size(ty, &[0; 5]) && bad_size(ty, &[]));
    }
    assert!(bad_size(msg::IDENTIFY_LONGFLAGS, &[0; 4]));
    for ty in [
        msg::IDENTIFY_STDIN,
        msg::IDENTIFY_STDOUT,
        msg::IDENTIFY_DONE,
        msg::EXITING,
    ] {
        assert!(bad_size(ty, &[0]));
    }
    assert!(bad_size(msg::WRITE_READY, &[0; 4]) && bad_size(msg::WRITE_READY, &[0; 12]));
    assert!(bad_size(msg::COMMAND, &[1, 0]));
    for ty in [msg::IDENTIFY_TERM, msg::IDENTIFY_CWD, msg::IDENTIFY_ENVIRON] {
        for payload in [&b""[..], b"dumb", b"du\0mb\0"] {
            assert!(matches!(
                ClientMessage::parse(ty, payload),
                Err(ProtoError::BadString { .. })
            ));
        }
    }
    // argc must match the packed arguments.
    let command = |argc: i32, packed: &[u8]| [&argc.to_ne_bytes()[..], packed].concat();
    assert!(ClientMessage::parse(msg::COMMAND, &command(2, b"a\0b\0")).is_ok());
    assert!(ClientMessage::parse(msg::COMMAND, &command(0, b"")).is_ok());
    for (argc, packed) in [(3, &b"a\0b\0"[..]), (1, b"a\0b\0"), (2, b"a\0b"), (-1, b"")] {
        assert!(ClientMessage::parse(msg::COMMAND, &command(argc, packed)).is_err());
    }
    assert!(matches!(
        ClientMessage::parse(msg::WRITE, &[0; 4]),
        Err(ProtoError::Unexpected { ty: msg::WRITE })
    ));

    let server_bad = |ty: u32, payload: &[u8]| ServerMessage::parse(ty, payload).is_err();
    assert!(server_bad(msg::WRITE_OPEN, &[0; 11]));
    assert!(server_bad(
        msg::WRITE_OPEN,
        &[[0; 12].as_slice(), b"-"].concat()
    ));
    assert!(server_bad(msg::WRITE, &[0; 3]));
    assert!(server_bad(msg::WRITE_CLOSE, &[0; 8]));
    assert!(server_bad(msg::READ_OPEN, &[0; 7]));
    assert!(server_bad(msg::EXIT, &[0; 2]));
    assert!(server_bad(msg::VERSION, &[0]));
}

#[test]
fn encoders_refuse_what_tmux_could_not_read() {
    let mut out = Vec::new();
    let mut packed = Vec::new();
    assert!(matches!(
        Argv::pack(&["ok", "n\0ul"], &mut packed),
        Err(ProtoError::NulInString)
    ));
    assert!(matches!(
        ClientMessage::Term(b"a\0b").encode(&mut out),
        Err(ProtoError::NulInString)
    ));
    let long = vec![b'x'; proto::MAX_PAYLOAD];
    let argv = Argv::pack(&[&long[..]], &mut packed).unwrap();
    assert!(matches!(
        ClientMessage::Command(argv).encode(&mut out),
        Err(ProtoError::TooLong {
            ty: msg::COMMAND,
            ..
        })
    ));
    // The largest WRITE that fits one frame, and one byte more.
    let data = vec![0u8; proto::MAX_PAYLOAD - 4];
    assert!(ServerMessage::Write {
        stream: 1,
        data: &data
    }
    .encode(&mut out)
    .is_ok());
    assert_eq!(out.len(), proto::MAX_PAYLOAD);
    let data = vec![0u8; proto::MAX_PAYLOAD - 3];
    assert!(ServerMessage::Write {
        stream: 1,
        data: &data
    }
    .encode(&mut out)
    .is_err());
}

#[test]
fn server_messages_round_trip() {
    let mut out = Vec::new();
    for m in [
        ServerMessage::Version,
        ServerMessage::WriteOpen {
            stream: 5,
            fd: 1,
            flags: 0x200,
            path: Some(b"-"),
        },
        ServerMessage::WriteOpen {
            stream: 1,
            fd: 1,
            flags: 0,
            path: None,
        },
        ServerMessage::Write {
            stream: 1,
            data: b"3.3a\n",
        },
        ServerMessage::WriteClose { stream: 5 },
        ServerMessage::ReadOpen {
            stream: 3,
            fd: 0,
            path: Some(b"-"),
        },
        ServerMessage::Exit {
            retval: None,
            message: None,
        },
        ServerMessage::Exit {
            retval: Some(1),
            message: None,
        },
        ServerMessage::Exit {
            retval: Some(0),
            message: Some(b"bye"),
        },
    ] {
        m.encode(&mut out).unwrap();
        assert_eq!(ServerMessage::parse(m.msg_type(), &out).unwrap(), m);
    }
    // What the 3.3a server sent for `display-message -p '#{version}'`.
    let write_open = [1i32, 1, 0].map(i32::to_ne_bytes).concat();
    assert_eq!(
        ServerMessage::parse(msg::WRITE_OPEN, &write_open).unwrap(),
        ServerMessage::WriteOpen {
            stream: 1,
            fd: 1,
            flags: 0,
            path: None
        }
    );
    assert_eq!(
        ServerMessage::parse(207, b"").unwrap(),
        ServerMessage::Other(207)
    );
}

/// Reads the client's identify sequence and command from `chan`; returns argv.
fn read_until_command(chan: &mut Channel, deadline: Instant) -> Vec<Vec<u8>> {
    loop {
        let mut m = proto::recv(chan, Some(deadline))
            .unwrap()
            .expect("a message");
        let fd: Option<OwnedFd> = m.take_fd();
        match ClientMessage::parse(m.msg_type(), m.payload()).unwrap() {
            ClientMessage::Command(argv) => return argv.iter().map(<[u8]>::to_vec).collect(),
            other => assert_eq!(other.carries_fd(), fd.is_some(), "{other:?}"),
        }
    }
}

/// Runs `args` over `a` as a client with `TERM=dumb` in `/`, its stdin and
/// stdout on `/dev/null`: the driver's answer, and what the server had written
/// to the client's stdout and stderr.
fn run_client(
    a: UnixStream,
    args: &[&str],
    deadline: Instant,
) -> (Result<Exit, ProtoError>, Vec<u8>, Vec<u8>) {
    let mut chan = Channel::new(a, Config::default().with_fdpass(true)).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = ClientIo {
        stdin_fd: std::fs::File::open("/dev/null").unwrap().into(),
        stdout_fd: std::fs::File::open("/dev/null").unwrap().into(),
        input: None,
        out: &mut out,
        err: &mut err,
    };
    let id = Identity {
        term: b"dumb".to_vec(),
        cwd: b"/".to_vec(),
        client_pid: 1,
        environ: vec![],
    };
    let r = proto::run_command(&mut chan, &id, args, io, Some(deadline));
    (r, out, err)
}

#[test]
fn driver_follows_streams_and_refuses_files() {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (a, b) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        let config = Config::default().with_fdpass(true);
        let mut chan = Channel::new(b, config).unwrap();
        let argv = read_until_command(&mut chan, deadline);
        assert_eq!(argv, [b"save-buffer".to_vec(), b"/x".to_vec()]);
        let mut scratch = Vec::new();
        let mut send = |chan: &mut Channel, m: ServerMessage<'_>| {
            proto::send_server(chan, &m, &mut scratch).unwrap();
            chan.flush().unwrap();
        };
        let expect = |chan: &mut Channel, want: ClientMessage<'_>| {
            let m = proto::recv(chan, Some(deadline)).unwrap().expect("a reply");
            assert_eq!(
                ClientMessage::parse(m.msg_type(), m.payload()).unwrap(),
                want
            );
        };
        send(
            &mut chan,
            ServerMessage::WriteOpen {
                stream: 7,
                fd: 2,
                flags: 0,
                path: Some(b"-"),
            },
        );
        expect(
            &mut chan,
            ClientMessage::WriteReady {
                stream: 7,
                error: 0,
            },
        );
        send(
            &mut chan,
            ServerMessage::Write {
                stream: 7,
                data: b"to stderr ",
            },
        );
        send(
            &mut chan,
            ServerMessage::WriteOpen {
                stream: 8,
                fd: -1,
                flags: 0x241,
                path: Some(b"/x"),
            },
        );
        let notsup = rustix::io::Errno::NOTSUP.raw_os_error();
        expect(
            &mut chan,
            ClientMessage::WriteReady {
                stream: 8,
                error: notsup,
            },
        );
        send(
            &mut chan,
            ServerMessage::WriteOpen {
                stream: 9,
                fd: 1,
                flags: 0,
                path: None,
            },
        );
        expect(
            &mut chan,
            ClientMessage::WriteReady {
                stream: 9,
                error: 0,
            },
        );
        send(
            &mut chan,
            ServerMessage::Write {
                stream: 9,
                data: b"to stdout",
            },
        );
        send(&mut chan, ServerMessage::WriteClose { stream: 7 });
        // After WRITE_CLOSE the stream is gone: this is dropped.
        send(
            &mut chan,
            ServerMessage::Write {
                stream: 7,
                data: b"lost",
            },
        );
        send(
            &mut chan,
            ServerMessage::ReadOpen {
                stream: 10,
                fd: 0,
                path: Some(b"/etc/passwd"),
            },
        );
        expect(
            &mut chan,
            ClientMessage::ReadDone {
                stream: 10,
                error: notsup,
            },
        );
        send(
            &mut chan,
            ServerMessage::Exit {
                retval: Some(4),
                message: Some(b"done"),
            },
        );
    });

    let (exit, out, err) = run_client(a, &["save-buffer", "/x"], deadline);
    let exit = exit.unwrap();
    server.join().unwrap();
    assert_eq!(
        exit,
        Exit {
            retval: 4,
            message: Some(b"done".to_vec())
        }
    );
    assert_eq!(out, b"to stdout");
    assert_eq!(err, b"to stderr ");
}

#[test]
fn driver_reports_a_server_that_hangs_up_or_stalls() {
    // End of file before EXIT.
    let (a, b) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        let mut chan = Channel::new(b, Config::default().with_fdpass(true)).unwrap();
        read_until_command(&mut chan, Instant::now() + Duration::from_secs(20));
    });
    let run = |a: UnixStream, deadline: Instant| run_client(a, &["ls"], deadline).0;
    let r = run(a, Instant::now() + Duration::from_secs(20));
    server.join().unwrap();
    assert!(matches!(r, Err(ProtoError::Eof)), "{r:?}");

    // A server that never answers: the deadline ends it.
    let (a, b) = UnixStream::pair().unwrap();
    let r = run(a, Instant::now() + Duration::from_millis(100));
    drop(b);
    assert!(matches!(r, Err(ProtoError::Timeout)), "{r:?}");

    // A peer with another protocol version in its headers.
    let (a, b) = UnixStream::pair().unwrap();
    let mut chan = Channel::new(b, Config::default()).unwrap();
    chan.compose(msg::EXIT, 7, 0, None, &0i32.to_ne_bytes())
        .unwrap();
    chan.flush().unwrap();
    let r = run(a, Instant::now() + Duration::from_secs(20));
    assert!(matches!(r, Err(ProtoError::Version { peerid: 7 })), "{r:?}");
}
