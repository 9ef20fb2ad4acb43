//! Waiting until a program listens on a UNIX socket path.
//!
//! The socket file appears at `bind(2)`, before `listen(2)`: a test that connects
//! as soon as the file exists can get `ECONNREFUSED`. Connecting to probe would
//! use up the one connection a program like `imsgcat --listen` accepts, so this
//! reads the kernel's table of UNIX sockets instead.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// `__SO_ACCEPTCON`, the flag `/proc/net/unix` shows on a listening socket.
const LISTENING: u32 = 0x0001_0000;

/// True once a socket bound to `path` is listening.
pub fn listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        // No /proc: fall back to the file's existence.
        return path.exists();
    };
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7] == want
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & LISTENING != 0)
    })
}

/// Waits until `path` listens, failing the test at `until`.
pub fn wait_listening(path: &Path, until: Instant, what: &str) {
    while !listening(path) {
        assert!(
            Instant::now() < until,
            "{what} never listened on {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(5));
    }
}
