//! Scaffolding for the program tests (a copy of imsg-io's tmux test harness, so this
//! crate's tests build from its own package): a temporary directory per test, a
//! private tmux server per test (stopped by pid, even when the test fails), child
//! processes waited for with a deadline, and open-descriptor counts.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// The longest any single step (a command, an exchange) may take before the test
/// fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// The deadline for a step starting now.
pub fn deadline() -> Instant {
    Instant::now() + STEP
}

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory whose name contains `tag`. The name stays short:
    /// a socket path inside it must fit in `sun_path` (108 bytes).
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("imsg-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `cmd` with an empty environment but `PATH`, `TERM=dumb` and `HOME=home`, as the
/// tests' tmux processes run (`env -i`).
pub fn tmux_command(home: &Path) -> Command {
    let mut cmd = Command::new("tmux");
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TERM", "dumb")
        .env("HOME", home);
    cmd
}

/// What a finished child process left.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Collects everything `r` yields, on a thread.
pub fn read_all_in_background(
    mut r: impl Read + Send + 'static,
) -> thread::JoinHandle<std::io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| v)
    })
}

/// Waits for `child` until `deadline`; past it, kills the child and panics.
pub fn wait_child(child: &mut Child, deadline: Instant, what: &str) -> ExitStatus {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running at its deadline, killed");
            }
            Err(e) => panic!("{what}: wait: {e}"),
        }
    }
}

/// Runs `cmd` (stdin `/dev/null`) to its end, within [`STEP`].
pub fn run(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
    let out = read_all_in_background(child.stdout.take().expect("piped stdout"));
    let err = read_all_in_background(child.stderr.take().expect("piped stderr"));
    let status = wait_child(&mut child, deadline(), what);
    Output {
        status,
        stdout: out.join().expect("stdout reader").expect("read stdout"),
        stderr: err.join().expect("stderr reader").expect("read stderr"),
    }
}

/// True once process `pid` has ended (gone, or a zombie nobody reaps).
pub fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in
        // parentheses and may itself hold spaces and parentheses.
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            Some(state) => state == "Z" || state == "X",
            None => false,
        },
        Err(_) => true,
    }
}

/// Sends `sig` to `pid`, then waits up to `wait` for it to end.
fn signal_and_wait(pid: i32, sig: Signal, wait: Duration) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return true;
    };
    if kill_process(p, sig).is_err() {
        return process_gone(pid);
    }
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if process_gone(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    process_gone(pid)
}

/// A private tmux server with one session `t0` (80x24), in its own temporary
/// directory. Dropping it stops the server by pid: `SIGTERM`, then `SIGKILL` if it
/// is still there after five seconds.
pub struct TmuxServer {
    pid: Option<i32>,
    socket: PathBuf,
    dir: TempDir,
}

impl TmuxServer {
    /// Starts the server (`tmux -S DIR/sock -f /dev/null new-session -d -s t0 -x 80
    /// -y 24`) and learns its pid.
    pub fn start() -> TmuxServer {
        let dir = TempDir::new("tmux");
        let socket = dir.path().join("sock");
        // From here on, a failure still stops whatever server started.
        let mut server = TmuxServer {
            pid: None,
            socket,
            dir,
        };
        let mut cmd = tmux_command(server.dir.path());
        cmd.arg("-S")
            .arg(&server.socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "t0"])
            .args(["-x", "80", "-y", "24"]);
        let out = run(cmd, "tmux new-session");
        assert!(out.status.success(), "tmux new-session: {out:?}");
        let mut cmd = tmux_command(server.dir.path());
        cmd.arg("-S")
            .arg(&server.socket)
            .args(["display-message", "-p", "#{pid}"]);
        let out = run(cmd, "tmux display-message #{pid}");
        assert!(out.status.success(), "tmux display-message: {out:?}");
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse::<i32>();
        server.pid = Some(pid.unwrap_or_else(|e| panic!("server pid from {out:?}: {e}")));
        server
    }

    /// The server's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's directory (also the `HOME` of the tmux processes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.pid.expect("started")
    }

    /// Whether the server process is still running.
    pub fn alive(&self) -> bool {
        !process_gone(self.pid())
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        match self.pid {
            Some(pid) => {
                if !signal_and_wait(pid, Signal::TERM, Duration::from_secs(5)) {
                    signal_and_wait(pid, Signal::KILL, Duration::from_secs(5));
                }
            }
            None => {
                // The pid is unknown: ask the server (if any) to stop.
                let mut cmd = tmux_command(self.dir.path());
                cmd.arg("-S").arg(&self.socket).arg("kill-server");
                if let Ok(mut child) = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    let until = Instant::now() + STEP;
                    while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < until {
                        thread::sleep(Duration::from_millis(10));
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// The number of descriptors open in this process.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Serializes the tests of one test binary that count descriptors (cargo runs
/// tests on parallel threads of one process). Survives a panicking holder.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
