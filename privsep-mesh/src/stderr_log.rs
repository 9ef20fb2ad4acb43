//! A small `log` backend writing one line per record to stderr, prefixed with the
//! daemon, the process role and its pid: `httpd server[1] 4242: warn: …`.
//!
//! Optional: the framework logs through the `log` facade, so any logger works. This
//! one knows the role because the framework records it here ([`set_role`]) as soon
//! as it is known. Each line is written with a single `write(2)`, so lines from the
//! processes of a mesh sharing one stderr pipe do not interleave.

use std::io::Write;
use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};

use crate::route::Identity;

static ROLE: Mutex<String> = Mutex::new(String::new());

struct StderrLog;

static LOGGER: StderrLog = StderrLog;

/// Records the role shown in log lines (done by the framework).
pub fn set_role(me: &Identity) {
    if let Ok(mut r) = ROLE.lock() {
        *r = format!("{} {}", me.daemon, me.name());
    }
}

/// The role recorded by [`set_role`] without the daemon's name (`server[1]`), empty
/// before it is known.
pub fn role_title() -> String {
    ROLE.lock()
        .map(|r| {
            r.split_once(' ')
                .map_or(String::new(), |(_, t)| t.to_owned())
        })
        .unwrap_or_default()
}

/// Installs the logger with `level` as the maximum level. Returns `false` if another
/// logger was installed first (that one stays).
pub fn init(level: LevelFilter) -> bool {
    let ok = log::set_logger(&LOGGER).is_ok();
    if ok {
        log::set_max_level(level);
    }
    ok
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let role = ROLE.lock().map(|r| r.clone()).unwrap_or_default();
        let level = record.level().as_str().to_ascii_lowercase();
        let line = format!(
            "{role}{}{}: {level}: {}\n",
            if role.is_empty() { "" } else { " " },
            std::process::id(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
