//! Lets the real tmux 3.3a client (/usr/bin/tmux) connect to a socket this test
//! listens on, captures what it sends to run `display-message -p hi`, and decodes
//! it field by field with the codec.
//!
//! Set `IMSG_CODEC_WRITE_CAPTURE=<path>` to also write the captured bytes there
//! (how `testdata/tmux-3.3a-client.bin` was made).

mod tmux_client;

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            PathBuf::from("/tmp").join(format!("imsg-codec-tmux-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).expect("a fresh temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tmux client, killed (by its pid) and reaped when dropped: it waits for an
/// answer this test never sends.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_tmux_client_identify_and_command() {
    let dir = TempDir::new();
    let dir_str = dir.0.to_str().unwrap().to_owned();
    let sock = dir.0.join("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();

    // `env -i` so that the environment (and so the ENVIRON frames) is known; `env`
    // execs tmux, so the child's pid is the client's pid.
    let mut client = Client(
        Command::new("env")
            .args(["-i", "PATH=/usr/bin:/bin", "TERM=dumb"])
            .arg(format!("HOME={dir_str}"))
            .arg("/usr/bin/tmux")
            .arg("-S")
            .arg(&sock)
            .args(["-f", "/dev/null", "display-message", "-p", "hi"])
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run env + /usr/bin/tmux"),
    );
    let client_pid = client.0.id() as i32;

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(status) = client.0.try_wait().unwrap() {
            let mut err = String::new();
            client
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("tmux exited ({status}) without connecting: {err}");
        }
        assert!(Instant::now() < deadline, "tmux did not connect in time");
        thread::sleep(Duration::from_millis(10));
    };
    conn.set_nonblocking(false).unwrap();

    // Plain read(): the kernel discards the descriptors tmux passes with STDIN and
    // STDOUT; their HASFD flags stay in the headers.
    let mut stream = Vec::new();
    let mut chunk = [0u8; 4096];
    while tmux_client::frames_until_command(&stream).is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no MSG_COMMAND in time; got {stream:?}");
        conn.set_read_timeout(Some(left)).unwrap();
        match conn.read(&mut chunk) {
            Ok(0) => panic!("tmux closed the connection before MSG_COMMAND: {stream:?}"),
            Ok(n) => stream.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    drop(client);

    if let Some(path) = std::env::var_os("IMSG_CODEC_WRITE_CAPTURE") {
        std::fs::write(path, &stream).unwrap();
    }
    tmux_client::check_display_message_hi(
        &stream,
        &tmux_client::Run {
            client_pid,
            dir: &dir_str,
        },
    );
}
