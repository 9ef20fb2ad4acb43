//! The `httpd` and `httpctl` examples as real processes: a web server under load on
//! loopback, its control sockets, a server killed with SIGKILL, log rotation, hostile
//! control clients, an unprivileged user, daemon mode with syslog.
//!
//! Every daemon runs in its own process group with a deadline; at the end the group
//! is killed and the test checks that no process of it is left.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One daemon at a time: the machine is small and the runs are timed.
static SERIAL: Mutex<()> = Mutex::new(());

const DEADLINE: Duration = Duration::from_secs(60);

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    exe.parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples")
        .join(name)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A private directory anyone may traverse (the unprivileged client reaches the
/// restricted socket in it).
fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "httpd-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Pids of every process in process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && f[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
        .unwrap_or(false)
}

struct Daemon {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    csock: PathBuf,
    rsock: PathBuf,
    log: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Reads stderr until every process of the daemon has closed it.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// `httpd -d` on an ephemeral loopback port, with a main and a restricted control
    /// socket and an access log in a fresh directory.
    fn start(name: &str, extra: &[&str]) -> Daemon {
        Daemon::start_limited(name, extra, None)
    }

    /// With `RLIMIT_NOFILE` set to `nofile` for every process of the daemon.
    fn start_limited(name: &str, extra: &[&str], nofile: Option<u32>) -> Daemon {
        let dir = tmpdir(name);
        let csock = dir.join("httpd.sock");
        let rsock = dir.join("httpd-ro.sock");
        let log = dir.join("access.log");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(example("httpd"));
                c
            }
            None => Command::new(example("httpd")),
        };
        let mut child = cmd
            .args(["-d", "-l", "127.0.0.1:0", "--servers", "3"])
            .arg("-s")
            .arg(&csock)
            .arg("-S")
            .arg(&rsock)
            .arg("-L")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start httpd");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(pipe);
            let mut l = String::new();
            while std::io::BufRead::read_line(&mut r, &mut l).unwrap_or(0) > 0 {
                eprint!("    | {l}");
                lines.lock().unwrap().push(std::mem::take(&mut l));
            }
        });
        let mut d = Daemon {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            csock,
            rsock,
            log,
            stderr,
            stderr_reader: Some(reader),
            status: None,
        };
        let line = d.wait_log("listening on ", Duration::from_secs(30));
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .expect("address in the log line");
        d.addr = addr.parse().expect("socket address");
        d
    }

    fn pgid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `what` and returns it.
    fn wait_log(&mut self, what: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(what))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "no log line with {what:?} within {within:?}"
            );
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("httpd exited ({st}) before logging {what:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every process of the daemon has closed stderr (all exited), so
    /// that every line they wrote has been read.
    fn stderr_closed(&mut self) {
        let end = Instant::now() + DEADLINE;
        if let Some(r) = self.stderr_reader.take() {
            while !r.is_finished() {
                assert!(Instant::now() < end, "stderr still open after {DEADLINE:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            r.join().unwrap();
        }
    }

    fn log_lines(&self, what: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }

    fn ctl(&self, sock: &Path, cmd: &str) -> (bool, String, String) {
        httpctl(sock, cmd, None)
    }

    /// `show stats` rows until the access log has `n` lines (the logger is behind the
    /// servers by the messages in flight).
    fn stats_when_logged(&self, n: u64) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out, err) = self.ctl(&self.csock, "show stats");
            assert!(ok, "show stats: {err}");
            let rows: Vec<String> = out.lines().map(str::to_owned).collect();
            if rows.contains(&format!("access log lines {n}")) || Instant::now() > end {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.status = Some(st);
                return st;
            }
            assert!(Instant::now() < end, "httpd did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the parent exited: no process of the group is left (children leave on
    /// their own when the parent closes their channels).
    fn assert_group_gone(&self) {
        // Generous: under load a child may take the whole shutdown grace (5 s)
        // before the parent kills it, and longer to be scheduled.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = group_members(self.pgid());
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < end, "processes left: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(self.pgid() as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the httpctl example; as `uid` if given. (success, stdout, stderr)
fn httpctl(sock: &Path, cmd: &str, uid: Option<(u32, &Path)>) -> (bool, String, String) {
    let bin = match uid {
        // A copy the user can execute, wherever the target directory is.
        Some((_, dir)) => {
            let copy = dir.join("httpctl");
            if !copy.exists() {
                std::fs::copy(example("httpctl"), &copy).unwrap();
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            copy
        }
        None => example("httpctl"),
    };
    let mut c = Command::new(bin);
    c.arg("-s").arg(sock).args(cmd.split(' '));
    if let Some((u, _)) = uid {
        c.uid(u).gid(u);
    }
    let out = c.output().expect("run httpctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One keep-alive GET: (status, body).
fn get(s: &mut TcpStream, path: &str, buf: &mut Vec<u8>) -> std::io::Result<(u16, String)> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")?;
    response(s, buf)
}

fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, String)> {
    let mut chunk = [0u8; 4096];
    loop {
        let mut h = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut h);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            if buf.len() >= n + len {
                let out = (
                    r.code.unwrap_or(0),
                    String::from_utf8_lossy(&buf[n..n + len]).into_owned(),
                );
                buf.drain(..n + len);
                return Ok(out);
            }
        }
        let got = s.read(&mut chunk)?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// `conns` keep-alive connections, `per_conn` requests each, in parallel; returns the
/// status of every request (connection errors end that connection's run).
fn load(addr: SocketAddr, conns: usize, per_conn: usize) -> Vec<u16> {
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || {
                let mut st = Vec::with_capacity(per_conn);
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return st;
                };
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = Vec::new();
                for _ in 0..per_conn {
                    match get(&mut s, "/", &mut buf) {
                        Ok((code, _)) => st.push(code),
                        Err(_) => break,
                    }
                }
                st
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn stat_value(rows: &[String], prefix: &str) -> u64 {
    rows.iter()
        .find_map(|r| r.strip_prefix(prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in {rows:?}"))
}

fn line_count(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

#[test]
fn load_2000_requests_16_connections() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("load", &[]);
    let (ok, out, err) = d.ctl(&d.csock, "show procs");
    assert!(ok, "{err}");
    let servers: Vec<u32> = out
        .lines()
        .filter(|l| l.starts_with("server "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert_eq!(servers.len(), 3);
    let fds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let fds_before: Vec<usize> = servers.iter().map(|&p| fds(p)).collect();
    let statuses = load(d.addr, 16, 125);
    assert_eq!(statuses.len(), 2000, "every request answered");
    assert!(statuses.iter().all(|&s| s == 200));
    // Routing and parsing: 404, 400, keep-alive after an error status.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(get(&mut s, "/nope", &mut buf).unwrap().0, 404);
    let (code, body) = get(&mut s, "/", &mut buf).unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("hello from server["), "{body}");
    let mut bad = TcpStream::connect(d.addr).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(b"\x01\x02 garbage\r\n\r\n").unwrap();
    assert_eq!(response(&mut bad, &mut Vec::new()).unwrap().0, 400);
    let total = 2003;

    let rows = d.stats_when_logged(total);
    assert_eq!(stat_value(&rows, "total requests"), total, "{rows:?}");
    assert_eq!(stat_value(&rows, "access log lines"), total, "{rows:?}");
    let per_server: u64 = (0..3)
        .map(|i| stat_value(&rows, &format!("server[{i}] requests")))
        .sum();
    assert_eq!(per_server, total);

    // Every connection's descriptor was closed when its client left.
    drop((s, bad));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now: Vec<usize> = servers.iter().map(|&p| fds(p)).collect();
        if now == fds_before {
            break;
        }
        assert!(
            Instant::now() < end,
            "servers hold {now:?} descriptors, {fds_before:?} before"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, out, err) = d.ctl(&d.csock, "show procs");
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().count(),
        1 + 6,
        "header + parent, control, logger, 3 servers: {out}"
    );

    let (ok, _, err) = d.ctl(&d.csock, "stop");
    assert!(ok, "stop: {err}");
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    assert_eq!(
        line_count(&d.log),
        total as usize,
        "one access-log line per request"
    );
    assert!(!d.csock.exists(), "control socket removed at exit");
}

/// The pids holding a descriptor of the socket bound at `path` (found by its inode
/// in /proc/net/unix).
fn socket_holders(path: &Path, pids: &[u32]) -> Vec<u32> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let inode = table
        .lines()
        .find(|l| l.ends_with(&format!(" {}", path.display())))
        .and_then(|l| l.split_whitespace().nth(6))
        .unwrap_or_else(|| panic!("{} not in /proc/net/unix", path.display()))
        .to_owned();
    let link = format!("socket:[{inode}]");
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten().any(|e| {
                        std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == link)
                    })
                })
                .unwrap_or(false)
        })
        .collect()
}

/// proc.c's control process: the control process itself creates its sockets before
/// it drops privileges (root owns the main one, mode 0660; restricted 0666) and
/// is the only process holding them: the parent never bound them.
#[test]
fn control_process_creates_its_sockets() {
    use std::os::unix::fs::MetadataExt;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("csock", &[]);
    let (ok, out, err) = d.ctl(&d.csock, "show procs");
    assert!(ok, "{err}");
    let procs: Vec<(String, u32, u32)> = out
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f[0].to_owned(), f[2].parse().ok()?, f[3].parse().ok()?))
        })
        .collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.1).collect();
    let (_, control, control_uid) = procs
        .iter()
        .find(|p| p.0 == "control")
        .cloned()
        .expect("control in show procs");
    for (path, mode) in [(&d.csock, 0o660), (&d.rsock, 0o666)] {
        let md = std::fs::metadata(path).unwrap();
        assert_eq!(md.mode() & 0o7777, mode, "{}", path.display());
        assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
        assert_eq!(socket_holders(path, &pids), [control], "{}", path.display());
    }
    if is_root() {
        // Bound before the drop: the file is root's, the process is not.
        assert_eq!(control_uid, 65534, "{out}");
    }
    let (ok, _, _) = d.ctl(&d.csock, "stop");
    assert!(ok);
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    assert!(!d.csock.exists() && !d.rsock.exists(), "removed at exit");
}

#[test]
fn kill_9_server_under_load() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("kill", &[]);
    let (ok, out, err) = d.ctl(&d.csock, "show procs");
    assert!(ok, "{err}");
    let victim: u32 = out
        .lines()
        .find(|l| l.starts_with("server ") && l.split_whitespace().nth(1) == Some("1"))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .expect("server[1]'s pid");
    let addr = d.addr;
    let loader = std::thread::spawn(move || load(addr, 8, 2000));
    // Under load: the servers have answered requests.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = d.ctl(&d.csock, "show stats");
        assert!(ok, "show stats: {err}");
        if stat_value(
            &out.lines().map(str::to_owned).collect::<Vec<_>>(),
            "total requests",
        ) >= 200
        {
            break;
        }
        assert!(Instant::now() < end, "no load reached the servers: {out}");
        std::thread::sleep(Duration::from_millis(20));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let st = d.wait_exit(DEADLINE);
    assert!(!st.success(), "a lost child makes the parent exit non-zero");
    let _ = loader.join();
    d.assert_group_gone();
    d.stderr_closed();
    assert_eq!(
        d.log_lines(&format!("lost child: pid {victim} terminated; signal 9")),
        1
    );
}

#[test]
fn log_reopen_while_serving() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("reopen", &[]);
    let before = load(d.addr, 4, 100);
    assert_eq!(before.len(), 400);
    d.stats_when_logged(400);
    let old = d.dir.join("access.log.0");
    std::fs::rename(&d.log, &old).unwrap();
    // Requests keep arriving while the log is reopened.
    let addr = d.addr;
    let during = std::thread::spawn(move || load(addr, 4, 200));
    let (ok, _, err) = d.ctl(&d.csock, "log reopen");
    assert!(ok, "log reopen: {err}");
    let during = during.join().unwrap();
    let after = load(d.addr, 2, 50);
    let total = (before.len() + during.len() + after.len()) as u64;
    d.stats_when_logged(total);
    let (ok, _, err) = d.ctl(&d.csock, "stop");
    assert!(ok, "{err}");
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    let (n_old, n_new) = (line_count(&old), line_count(&d.log));
    assert!(
        n_old >= 400,
        "lines before the reopen stay in the old file: {n_old}"
    );
    assert!(
        n_new >= 100,
        "lines after the reopen go to the new file: {n_new}"
    );
    assert_eq!((n_old + n_new) as u64, total, "no line lost");
}

/// Writes raw bytes on a control socket.
fn raw_client(sock: &Path, bytes: &[u8]) -> UnixStream {
    let mut c = UnixStream::connect(sock).unwrap();
    c.write_all(bytes).unwrap();
    c
}

fn header(ty: u32, len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    for w in [ty, len, 0, 0] {
        h.extend_from_slice(&w.to_ne_bytes());
    }
    h
}

/// The client is disconnected: a read ends with end of file (or reset).
fn disconnected(c: &mut UnixStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut b = [0u8; 65536];
    loop {
        match c.read(&mut b) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[test]
fn hostile_control_clients_are_dropped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("hostile", &[]);
    let (ok, out, err) = d.ctl(&d.csock, "show procs");
    assert!(ok, "{err}");
    let control: u32 = out
        .lines()
        .find(|l| l.starts_with("control "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .expect("control's pid");
    let fds = || {
        std::fs::read_dir(format!("/proc/{control}/fd"))
            .unwrap()
            .count()
    };
    // Once the `show procs` client has gone.
    let mut fds_before = fds();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = fds();
        if now == fds_before {
            break;
        }
        fds_before = now;
    }
    // A frame shorter than its own header.
    let mut garbage = raw_client(&d.csock, &header(101, 3));
    // A frame far over the control socket's limit.
    let mut oversized = raw_client(&d.csock, &header(101, 60_000));
    assert!(disconnected(&mut garbage));
    assert!(disconnected(&mut oversized));
    // A client that asks and asks and never reads its replies.
    let mut mute = UnixStream::connect(&d.csock).unwrap();
    mute.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req = header(100, 16); // show procs
    let end = Instant::now() + Duration::from_secs(30);
    while d.log_lines("does not read its replies") == 0 {
        assert!(Instant::now() < end, "the mute client was never dropped");
        let _ = mute.write_all(&req);
        // Meanwhile everyone else is served.
        let (ok, out, err) = d.ctl(&d.rsock, "show stats");
        assert!(ok && out.contains("total requests"), "{err}");
    }
    drop(mute);
    let (ok, out, err) = d.ctl(&d.csock, "show stats");
    assert!(ok && out.contains("total requests"), "{err}");
    assert!(d.log_lines("imsg frame") >= 2, "malformed frames logged");
    // Every dropped client's descriptors were closed.
    let end = Instant::now() + Duration::from_secs(10);
    while fds() != fds_before {
        assert!(
            Instant::now() < end,
            "control holds {} descriptors, {fds_before} before",
            fds()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, _, _) = d.ctl(&d.csock, "stop");
    assert!(ok);
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
}

/// A non-blocking connect to a control socket: `None` when its listen queue is full
/// (the daemon does not accept), as a client with a connect timeout would see it.
fn try_connect(path: &Path) -> Option<std::os::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::connect(&fd, &SocketAddrUnix::new(path).unwrap())
        .ok()
        .map(|()| fd)
}

/// control.c's accept back-off: with few descriptors, accepting pauses instead of
/// failing or spinning; while descriptors stay low it stays paused (the back-off
/// timer finds them still low and does not take one more), and it resumes when
/// clients leave.
#[test]
fn accept_pauses_when_descriptors_run_low() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start_limited("fdlow", &[], Some(64));
    // Clients connect until the daemon pauses. A connect that finds the listen
    // queue full fails at once (non-blocking): on a busy machine the daemon may
    // accept more slowly than a burst connects, so retry rather than give up.
    let mut held = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while d.log_lines("accept paused") == 0 {
        assert!(
            Instant::now() < end && held.len() < 200,
            "no \"accept paused\" after {} clients",
            held.len()
        );
        match try_connect(&d.csock) {
            Some(fd) => held.push(fd),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    // Paused means not accepting: the listen queue fills and further connects
    // fail, instead of the daemon taking descriptors it does not have.
    let more: Vec<_> = (0..privsep_mesh::control_socket::BACKLOG + 8)
        .filter_map(|_| try_connect(&d.csock))
        .collect();
    assert!(
        more.len() < privsep_mesh::control_socket::BACKLOG as usize + 8,
        "every connect was taken while paused"
    );
    // Three back-off periods: still paused, no other client taken.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.log_lines("accept paused"), 1, "accepting crept on");
    // Still serving HTTP meanwhile.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(get(&mut s, "/", &mut Vec::new()).unwrap().0, 200);
    drop((held, more));
    let (ok, out, err) = d.ctl(&d.csock, "show stats");
    assert!(ok && out.contains("total requests 1"), "{out}{err}");
    let (ok, _, _) = d.ctl(&d.csock, "stop");
    assert!(ok);
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
}

#[test]
fn unprivileged_user_and_restricted_socket() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = std::env::temp_dir().join(format!("httpd-test-{}.conf", std::process::id()));
    std::fs::write(&config, "bonjour\n").unwrap();
    let mut d = Daemon::start("unpriv", &["-f", config.to_str().unwrap()]);
    if is_root() {
        let nobody = 65534;
        let (ok, _, err) = httpctl(&d.csock, "show stats", Some((nobody, &d.dir)));
        assert!(!ok);
        assert!(err.contains("permission denied"), "{err}");
        let (ok, out, err) = httpctl(&d.rsock, "show stats", Some((nobody, &d.dir)));
        assert!(ok, "{err}");
        assert!(out.contains("total requests 0"), "{out}");
        let (ok, out, err) = httpctl(&d.rsock, "show procs", Some((nobody, &d.dir)));
        assert!(ok && out.contains("logger"), "{out}{err}");
        let (ok, _, err) = httpctl(&d.rsock, "stop", Some((nobody, &d.dir)));
        assert!(!ok);
        assert!(err.contains("refused"), "{err}");
    }
    // Refused for root too: it is the socket that decides.
    for cmd in ["stop", "log reopen", "log verbose", "reload"] {
        let (ok, _, err) = d.ctl(&d.rsock, cmd);
        assert!(!ok && err.contains("refused"), "{cmd}: {err}");
    }
    let (ok, _, err) = httpctl(&d.dir.join("none.sock"), "show stats", None);
    assert!(!ok && err.contains("none.sock"), "{err}");
    // A second daemon must not take the live socket over.
    let second = Command::new(example("httpd"))
        .args(["-d", "-l", "127.0.0.1:0", "-s"])
        .arg(&d.csock)
        .arg("-L")
        .arg(d.dir.join("second.log"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already in use"));
    // Reload (the parent re-reads the settings file and broadcasts it) and
    // verbosity from the main socket.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, body) = get(&mut s, "/", &mut Vec::new()).unwrap();
    assert!(body.starts_with("bonjour from server["), "{body}");
    std::fs::write(&config, "hej\n").unwrap();
    assert!(d.ctl(&d.csock, "reload").0);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get(&mut s, "/", &mut Vec::new()).unwrap();
        if body.starts_with("hej from server[") && body.contains("generation 2") {
            break;
        }
        assert!(
            Instant::now() < end,
            "reload never reached the servers: {body}"
        );
    }
    // A settings file that cannot be read: reload fails, the settings stay.
    std::fs::remove_file(&config).unwrap();
    let (ok, _, err) = d.ctl(&d.csock, "reload");
    assert!(
        !ok && err.contains("failed") && err.contains(".conf"),
        "{err}"
    );
    let (_, body) = get(&mut s, "/", &mut Vec::new()).unwrap();
    assert!(
        body.starts_with("hej from server[") && body.contains("generation 2"),
        "{body}"
    );
    std::fs::write(&config, "hej\n").unwrap();
    // SIGHUP to the parent reloads too.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(d.pgid() as i32).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get(&mut s, "/", &mut Vec::new()).unwrap();
        if body.contains("generation 3") {
            break;
        }
        assert!(
            Instant::now() < end,
            "SIGHUP never reached the servers: {body}"
        );
    }
    // Verbosity reaches every process (proc.c's IMSG_CTL_VERBOSE).
    assert_eq!(d.log_lines("debug: "), 0, "brief by default");
    assert!(d.ctl(&d.csock, "log verbose").0);
    for who in [
        "control[0]",
        "logger[0]",
        "server[0]",
        "server[1]",
        "server[2]",
    ] {
        d.wait_log(&format!("{who} "), Duration::from_secs(10));
        let line = format!("httpd {who}");
        let end = Instant::now() + Duration::from_secs(10);
        while !d
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(&line) && l.contains("debug: log verbosity 1"))
        {
            assert!(Instant::now() < end, "{who} never went verbose");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(d.ctl(&d.csock, "log brief").0);
    let (ok, _, _) = d.ctl(&d.csock, "stop");
    assert!(ok);
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    let _ = std::fs::remove_file(&config);
}

/// Daemon mode in a private mount namespace whose `/dev/log` is a datagram socket the
/// test owns: the launching command returns, the daemon serves, its log lines reach
/// the socket, `httpctl stop` ends it.
#[test]
fn daemon_mode_logs_to_syslog() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and unshare(1)");
        return;
    }
    let dir = tmpdir("syslog");
    let log_sock = dir.join("log.sock");
    let syslog = UnixDatagram::bind(&log_sock).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read from the start: the socket queues only a few datagrams (Linux's
    // max_dgram_qlen, 10 by default) and the daemon drops lines rather than block.
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (lines, done) = (lines.clone(), done.clone());
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            loop {
                match syslog.recv(&mut b) {
                    Ok(n) => lines
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&b[..n]).into_owned()),
                    // Nothing for 200 ms after the daemon has gone: all read.
                    Err(_) if done.load(Ordering::SeqCst) => return,
                    Err(_) => {}
                }
            }
        })
    };
    let null = dir.join("null");
    std::fs::write(&null, b"").unwrap();
    let csock = dir.join("httpd.sock");
    let port = {
        // A free port: bound, then released for the daemon.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // /dev in the namespace is a tmpfs holding only null and log.
    let script = format!(
        "mount --bind /dev/null {null} && mount -t tmpfs tmpfs /dev && \
         touch /dev/null /dev/log && mount --bind {null} /dev/null && \
         mount --bind {sock} /dev/log && exec \"$0\" \"$@\"",
        null = null.display(),
        sock = log_sock.display()
    );
    // Whatever happens below, no process of this daemon outlives the test: they are
    // found by the socket path in their command line (the daemon left the test's
    // process group with setsid).
    struct KillByArg(String);
    impl Drop for KillByArg {
        fn drop(&mut self) {
            for pid in pids_with_arg(&self.0) {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
        }
    }
    let _guard = KillByArg(csock.display().to_string());
    let launch = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(example("httpd"))
        .args(["-l", &format!("127.0.0.1:{port}"), "--servers", "2", "-s"])
        .arg(&csock)
        .arg("-L")
        .arg(dir.join("access.log"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        launch.status.success(),
        "launch: {}",
        String::from_utf8_lossy(&launch.stderr)
    );
    // The launching command has returned; the daemon serves.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + DEADLINE;
    let body = loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if let Ok((200, body)) = get(&mut s, "/", &mut Vec::new()) {
                break body;
            }
        }
        assert!(Instant::now() < end, "the daemon never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.starts_with("hello from server["));
    let (ok, out, err) = httpctl(&csock, "show procs", None);
    assert!(ok, "{err}");
    let pids: Vec<u32> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 5, "{out}");
    let (ok, _, err) = httpctl(&csock, "stop", None);
    assert!(ok, "{err}");
    let end = Instant::now() + DEADLINE;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() > end {
            for &p in &pids {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(p as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
            panic!("daemon still running after stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pids_with_arg(&csock.display().to_string()).is_empty());
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    let lines = lines.lock().unwrap();
    let parent_pid = pids[0];
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(
        has(&format!(
            "<30>httpd[{parent_pid}]: parent[0]: listening on 127.0.0.1:{port}"
        )),
        "{lines:?}"
    );
    assert!(has("parent[0]: stop requested"), "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// HTTP details of the servers: pipelining, HTTP/1.0 and `Connection: close`, other
/// methods, a head over the limit.
#[test]
fn http_details() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("http", &[]);
    let connect = || {
        let s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    let closed = |s: &mut TcpStream| matches!(s.read(&mut [0u8; 64]), Ok(0) | Err(_));
    // Three requests in one write, three answers in order.
    let mut s = connect();
    s.write_all(b"GET / HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let codes: Vec<u16> = (0..3)
        .map(|_| response(&mut s, &mut buf).unwrap().0)
        .collect();
    assert_eq!(codes, [200, 404, 200]);
    // HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 closes when asked.
    for req in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = connect();
        s.write_all(req).unwrap();
        let mut buf = Vec::new();
        assert_eq!(response(&mut s, &mut buf).unwrap().0, 200);
        assert!(closed(&mut s));
    }
    let mut s = connect();
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(response(&mut s, &mut buf).unwrap().0, 200);
    assert_eq!(get(&mut s, "/", &mut buf).unwrap().0, 200);
    // Another method; a body is read past.
    let mut s = connect();
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(response(&mut s, &mut buf).unwrap().0, 405);
    assert_eq!(response(&mut s, &mut buf).unwrap().0, 200);
    // A head that never ends within 8 KiB: 400, closed.
    let mut s = connect();
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    let _ = s.write_all(long.as_bytes());
    assert_eq!(response(&mut s, &mut Vec::new()).unwrap().0, 400);
    assert!(closed(&mut s));
    let (ok, _, _) = d.ctl(&d.csock, "stop");
    assert!(ok);
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
}

/// 16 connections, each sending 20 bursts of 32 pipelined requests (so that the
/// logger falls behind the servers); every one answered 200.
fn pipelined_load(addr: SocketAddr) -> Vec<u16> {
    let loaders: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(move || pipelined(addr, 32, 20)))
        .collect();
    let answered: Vec<u16> = loaders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(answered.len(), 16 * 20 * 32, "every request answered");
    assert!(answered.iter().all(|&c| c == 200));
    answered
}

/// SIGTERM to the parent right after the last answer: the mesh stops in the same
/// order as `httpctl stop` (servers stop and mark their last line, the logger writes
/// every line, then everything exits), so the access log has one line per answered
/// request.
#[test]
fn sigterm_to_the_parent_loses_no_line() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("sigterm", &[]);
    let answered = pipelined_load(d.addr);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(d.pgid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    assert_eq!(line_count(&d.log), answered.len(), "one line per answer");
    assert!(!d.csock.exists(), "control socket removed at exit");
}

/// Ctrl-C in the terminal: SIGINT reaches every process of the foreground group at
/// once. The children leave the stopping to the parent, which stops the mesh in
/// order: no line lost.
#[test]
fn sigint_to_the_group_loses_no_line() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("sigint", &[]);
    let answered = pipelined_load(d.addr);
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(d.pgid() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    assert_eq!(line_count(&d.log), answered.len(), "one line per answer");
}

/// `httpctl stop` while 16 connections keep requesting: every answered request's
/// line is in the access log (servers stop answering, the logger writes their last
/// lines, then the mesh stops).
#[test]
fn stop_under_load_loses_no_line() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("stopload", &[]);
    let addr = d.addr;
    // Pipelined, so that the logger falls behind the servers.
    let loaders: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(move || pipelined(addr, 32, usize::MAX)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, _, err) = d.ctl(&d.csock, "stop");
    assert!(ok, "stop: {err}");
    assert!(d.wait_exit(DEADLINE).success());
    let answered: Vec<u16> = loaders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(answered.iter().all(|&c| c == 200));
    d.assert_group_gone();
    let lines = line_count(&d.log);
    assert!(!answered.is_empty());
    // A request can be answered whose response the client never read (cut at
    // stop): at most one burst per connection.
    assert!(
        lines >= answered.len() && lines <= answered.len() + 16 * 32,
        "{lines} lines for {} answered requests",
        answered.len()
    );
}

/// A process's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix(" kB")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The logger stops (SIGSTOP) under pipelined load: each server's queue to it
/// reaches its high-water mark, and the servers stop reading requests instead of
/// piling lines up (answers stop while the clients still send; memory stays
/// bounded). Once the logger continues, every request is answered and has its line.
#[test]
fn logger_behind_servers_pause_and_lose_no_line() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = Daemon::start("behind", &[]);
    let (ok, out, err) = d.ctl(&d.csock, "show procs");
    assert!(ok, "{err}");
    let pid_of = |title: &str| -> Vec<u32> {
        out.lines()
            .filter(|l| l.starts_with(&format!("{title} ")))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect()
    };
    let logger = rustix::process::Pid::from_raw(pid_of("logger")[0] as i32).unwrap();
    let servers = pid_of("server");
    rustix::process::kill_process(logger, rustix::process::Signal::STOP).unwrap();
    let addr = d.addr;
    const CONNS: usize = 16;
    const BURSTS: usize = 800;
    let sent = CONNS * BURSTS * 32;
    // Answers read by the clients so far (show stats asks the logger too).
    let count = Arc::new(AtomicU32::new(0));
    let loaders: Vec<_> = (0..CONNS)
        .map(|_| {
            let count = count.clone();
            std::thread::spawn(move || pipelined_counted(addr, 32, BURSTS, Some(&count)))
        })
        .collect();
    // Answers stop: the count holds still for 2 s while the clients wait.
    let answered = || count.load(Ordering::SeqCst);
    let end = Instant::now() + DEADLINE;
    let mut last = answered();
    let mut still_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = answered();
        if now != last {
            (last, still_since) = (now, Instant::now());
        } else if still_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(Instant::now() < end, "answers never stopped: {now}");
    }
    // A server with few connections may have answered them all before its queue
    // filled; the others' clients are still waiting.
    let finished = loaders.iter().filter(|t| t.is_finished()).count();
    assert!(
        (last as usize) < sent && finished < CONNS,
        "the servers paused with {last} of {sent} requests answered, {finished} clients done"
    );
    let rss: Vec<u64> = servers.iter().map(|&p| rss_kib(p)).collect();
    eprintln!("paused at {last} of {sent} answered; servers' RSS {rss:?} KiB");
    assert!(rss.iter().all(|&k| k < 64 * 1024), "RSS {rss:?} KiB");
    rustix::process::kill_process(logger, rustix::process::Signal::CONT).unwrap();
    let answered: Vec<u16> = loaders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(
        answered.len(),
        sent,
        "every request answered once the logger is back"
    );
    assert!(answered.iter().all(|&c| c == 200));
    d.stats_when_logged(sent as u64);
    let (ok, _, err) = d.ctl(&d.csock, "stop");
    assert!(ok, "{err}");
    assert!(d.wait_exit(DEADLINE).success());
    d.assert_group_gone();
    assert_eq!(line_count(&d.log), sent, "one line per request");
}

/// Up to `bursts` bursts of `depth` pipelined GETs on one connection, until it is
/// closed; the status of every answer read.
fn pipelined(addr: SocketAddr, depth: usize, bursts: usize) -> Vec<u16> {
    pipelined_counted(addr, depth, bursts, None)
}

/// [`pipelined`], counting every answer read in `count` as it goes.
fn pipelined_counted(
    addr: SocketAddr,
    depth: usize,
    bursts: usize,
    count: Option<&AtomicU32>,
) -> Vec<u16> {
    let mut st = Vec::new();
    let Ok(mut s) = TcpStream::connect(addr) else {
        return st;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let burst = b"GET / HTTP/1.1\r\n\r\n".repeat(depth);
    let mut buf = Vec::new();
    for _ in 0..bursts {
        if s.write_all(&burst).is_err() {
            return st;
        }
        for _ in 0..depth {
            match response(&mut s, &mut buf) {
                Ok((code, _)) => {
                    st.push(code);
                    if let Some(c) = count {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Err(_) => return st,
            }
        }
    }
    st
}

/// Live processes with `arg` among their arguments.
fn pids_with_arg(arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.split(|&b| b == 0).any(|a| a == arg.as_bytes()) && alive(pid) {
            out.push(pid);
        }
    }
    out
}
