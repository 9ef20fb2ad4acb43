//! The httpd example under load: requests per second with every request's access-log
//! line going through the logger (imsg, then a write to the file) against the same
//! daemon started with `--no-access-log`, alternated in one run; and the logger's
//! lines per second: lines written divided by the time from the start of the load
//! until the logger has written the last one (when the logger falls behind the
//! servers, this is its rate at saturation; the lag is printed too).
//!
//! ```text
//! cargo bench -p privsep-mesh --bench httpd
//! ```
//!
//! It builds the examples in release mode first (with the cargo that runs it), then
//! starts each daemon with `-d` on an ephemeral loopback port, drives it from
//! `CONNS` keep-alive connections for `SECONDS`, and stops it with `httpctl stop`.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNS: usize = 16;
const SECONDS: f64 = 3.0;
const ROUNDS: usize = 2;

fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples")
}

struct Daemon {
    child: Child,
    dir: PathBuf,
    csock: PathBuf,
    addr: SocketAddr,
}

impl Daemon {
    fn start(logging: bool, n: usize) -> Daemon {
        let dir = std::env::temp_dir().join(format!("httpd-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let csock = dir.join("httpd.sock");
        let mut cmd = Command::new(examples_dir().join("httpd"));
        cmd.args(["-d", "-l", "127.0.0.1:0", "-s"])
            .arg(&csock)
            .arg("-L")
            .arg(dir.join("access.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !logging {
            cmd.arg("--no-access-log");
        }
        let mut child = cmd.spawn().expect("start httpd");
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "httpd exited");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split(',').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the daemon never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Daemon {
            child,
            dir,
            csock,
            addr,
        }
    }

    fn ctl(&self, cmd: &str) -> String {
        let out = Command::new(examples_dir().join("httpctl"))
            .arg("-s")
            .arg(&self.csock)
            .args(cmd.split(' '))
            .output()
            .unwrap();
        assert!(out.status.success(), "httpctl {cmd}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logged(&self) -> u64 {
        self.ctl("show stats")
            .lines()
            .find_map(|l| l.strip_prefix("access log lines ")?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        self.ctl("stop");
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `depth` pipelined GETs and reads their answers; how many were 200.
fn burst(s: &mut TcpStream, buf: &mut Vec<u8>, depth: usize) -> Option<u64> {
    let req = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    s.write_all(&req.repeat(depth)).ok()?;
    let mut chunk = [0u8; 16384];
    let mut ok = 0;
    let mut answered = 0;
    while answered < depth {
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
                ok += u64::from(r.code == Some(200));
                answered += 1;
                buf.drain(..n + len);
                continue;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    Some(ok)
}

/// Requests answered 200 in `SECONDS` over `CONNS` connections, `depth` requests
/// in flight on each.
fn load(addr: SocketAddr, depth: usize) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CONNS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match burst(&mut s, &mut buf, depth) {
                        Some(k) => n += k,
                        None => break,
                    }
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(SECONDS));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only check
    // that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "privsep-mesh",
            "--examples",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success());
    println!("httpd: 3 servers, {CONNS} keep-alive connections, {SECONDS} s per line");
    let mut n = 0;
    // Depth 1: one request in flight per connection. Depth 32: pipelined, so that a
    // request costs the servers little and the logger (one imsg and one write(2) per
    // line) is the one that falls behind.
    for depth in [1, 32] {
        for round in 0..ROUNDS {
            let mut rates = [0.0; 2];
            for (k, logging) in [true, false].into_iter().enumerate() {
                n += 1;
                let d = Daemon::start(logging, n);
                let t0 = Instant::now();
                let served = load(d.addr, depth);
                let load_time = t0.elapsed().as_secs_f64();
                rates[k] = served as f64 / load_time;
                if logging {
                    while d.logged() < served {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let caught_up = t0.elapsed().as_secs_f64();
                    let logger = served as f64 / caught_up;
                    println!(
                        "  depth {depth:>2} round {round}: logging on : {:>8.0} req/s; logger {logger:>8.0} lines/s = {:.2} of the servers' rate ({served} lines, the last written {:.0} ms after the load ended)",
                        rates[k],
                        logger / rates[k],
                        (caught_up - load_time) * 1000.0
                    );
                } else {
                    println!(
                        "  depth {depth:>2} round {round}: logging off: {:>8.0} req/s",
                        rates[k]
                    );
                }
                d.stop();
            }
            println!(
                "  depth {depth:>2} round {round}: with logging / without = {:.2}",
                rates[0] / rates[1]
            );
        }
    }
}
