//! A `log` backend that sends each record to syslog (log.c's `log_init` without
//! `-d`): one datagram per line on the local syslog socket (`/dev/log`), tagged with
//! the daemon's name and pid and prefixed with the process's title, e.g.
//! `<30>httpd[4242]: server[1]: reloading`.
//!
//! The socket is connected once, before chroot and privilege drop, and kept: a
//! chrooted process can no longer reach `/dev/log` by name. This is why the records
//! are written here rather than through glibc's `syslog(3)`, which opens `/dev/log`
//! lazily (too late, after the chroot) and silently re-opens it by name; OpenBSD's
//! log.c does not have that problem because `sendsyslog(2)` needs no socket at all.
//! Writing the datagram ourselves also needs no `unsafe` and no global C state.
//!
//! Sends do not block: if the syslog daemon is behind and its socket buffer is full,
//! the line is counted as dropped (see [`dropped`]) instead of stalling the event
//! loop; the next line that goes through says how many were lost. Without a
//! timestamp in the line, the syslog daemon stamps it on arrival.
//!
//! The process title comes from the framework, which records each process's role as
//! soon as it knows it ([`crate::stderr_log::set_role`]); the level is the `log`
//! crate's maximum level, which proc.c's `IMSG_CTL_VERBOSE` changes in every process
//! ([`crate::Context::set_verbose`]).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The system's syslog socket: `/dev/log` on Linux and OpenBSD, `/var/run/log` on
/// FreeBSD and NetBSD, `/var/run/syslog` on macOS.
pub const DEV_LOG: &str = crate::sys::SYSLOG_SOCKET;

/// syslog's `LOG_DAEMON` facility.
pub const LOG_DAEMON: u8 = 3;

/// Longest line sent; longer messages are cut (syslog daemons cut them anyway).
pub const MAX_LINE: usize = 2048;

struct SyslogLog {
    sock: UnixDatagram,
    ident: String,
    facility: u8,
}

static LOGGER: OnceLock<SyslogLog> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Connects to the syslog socket at `path` (normally [`DEV_LOG`]) and installs the
/// logger with `ident` as the tag, `facility` (e.g. [`LOG_DAEMON`]) and `level` as
/// the maximum level. Call it before chroot and privilege drop. Fails if the socket
/// cannot be reached or another logger was installed first.
pub fn init(path: &Path, ident: &str, facility: u8, level: LevelFilter) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_nonblocking(true)?;
    let logger = SyslogLog {
        sock,
        ident: ident.to_owned(),
        facility,
    };
    if LOGGER.set(logger).is_err() {
        return Err(io::Error::other("a syslog logger is already installed"));
    }
    let l = LOGGER
        .get()
        .ok_or_else(|| io::Error::other("logger lost"))?;
    log::set_logger(l).map_err(|_| io::Error::other("another logger is installed"))?;
    log::set_max_level(level);
    Ok(())
}

/// Lines not sent so far because the syslog socket was full or gone.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// syslog severity of a `log` level.
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One syslog line (RFC 3164 without the timestamp):
/// `<PRI>ident[pid]: role: message`.
///
/// ```
/// use privsep_mesh::syslog_log::{format_line, LOG_DAEMON};
/// let l = format_line(LOG_DAEMON, log::Level::Info, "httpd", 42, "server[1]", "hello");
/// assert_eq!(l, "<30>httpd[42]: server[1]: hello");
/// ```
pub fn format_line(
    facility: u8,
    level: Level,
    ident: &str,
    pid: u32,
    role: &str,
    msg: &str,
) -> String {
    let pri = u32::from(facility) * 8 + u32::from(severity(level));
    let mut line = if role.is_empty() {
        format!("<{pri}>{ident}[{pid}]: {msg}")
    } else {
        format!("<{pri}>{ident}[{pid}]: {role}: {msg}")
    };
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

impl Log for SyslogLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let role = crate::stderr_log::role_title();
        let pid = std::process::id();
        let lost = DROPPED.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = format!("{lost} log lines dropped (syslog socket full)");
            let l = format_line(self.facility, Level::Warn, &self.ident, pid, &role, &note);
            if self.sock.send(l.as_bytes()).is_err() {
                DROPPED.fetch_add(lost, Ordering::Relaxed);
            }
        }
        let msg = record.args().to_string();
        let line = format_line(self.facility, record.level(), &self.ident, pid, &role, &msg);
        if self.sock.send(line.as_bytes()).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        let l = |lvl| format_line(LOG_DAEMON, lvl, "d", 1, "", "m");
        assert_eq!(l(Level::Error), "<27>d[1]: m");
        assert_eq!(l(Level::Warn), "<28>d[1]: m");
        assert_eq!(l(Level::Debug), "<31>d[1]: m");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_LINE);
        let l = format_line(LOG_DAEMON, Level::Info, "d", 1, "r[0]", &msg);
        assert!(l.len() <= MAX_LINE && l.len() > MAX_LINE - 2);
    }
}
