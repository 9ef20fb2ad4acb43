//! The parent's children: their pids, reaping them, and reporting how they ended in
//! proc.c's words.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process, waitpid, Pid, Signal as KillSignal, WaitOptions};

use crate::route::Peer;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitKind {
    /// It called `exit` with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitKind {
    /// A status of 0: the only end proc.c does not log.
    pub fn is_clean(self) -> bool {
        self == ExitKind::Exited(0)
    }
}

/// One child's end.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildExit {
    /// The process and instance it was.
    pub peer: Peer,
    /// Its pid.
    pub pid: u32,
    /// How it ended.
    pub kind: ExitKind,
}

/// The line proc.c logs for an abnormal end, `None` for a clean one:
/// `lost child: pid N terminated; signal S` or `lost child: pid N exited abnormally`.
pub fn lost_child_line(pid: u32, kind: ExitKind) -> Option<String> {
    match kind {
        ExitKind::Exited(0) => None,
        ExitKind::Exited(_) => Some(format!("lost child: pid {pid} exited abnormally")),
        ExitKind::Signaled(s) => Some(format!("lost child: pid {pid} terminated; signal {s}")),
    }
}

/// The children the parent started and has not reaped yet, and those it has.
#[derive(Debug, Default)]
pub struct Children {
    running: BTreeMap<u32, (Peer, String)>,
    exits: Vec<ChildExit>,
}

impl Children {
    /// No children.
    pub fn new() -> Children {
        Children::default()
    }

    /// Records a started child; `name` is used in log lines.
    pub fn add(&mut self, pid: u32, peer: Peer, name: String) {
        self.running.insert(pid, (peer, name));
    }

    /// The pid of a child instance, running or reaped.
    pub fn pid_of(&self, peer: Peer) -> Option<u32> {
        self.running
            .iter()
            .find(|(_, (p, _))| *p == peer)
            .map(|(pid, _)| *pid)
            .or_else(|| self.exits.iter().find(|e| e.peer == peer).map(|e| e.pid))
    }

    /// Children not reaped yet.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Every end seen so far, in the order they were reaped.
    #[cfg(test)]
    pub fn exits(&self) -> &[ChildExit] {
        &self.exits
    }

    /// Whether every child reaped so far ended cleanly.
    pub fn all_clean(&self) -> bool {
        self.exits.iter().all(|e| e.kind.is_clean())
    }

    /// Reaps every child that has ended, without waiting; logs abnormal ends.
    pub fn reap_ended(&mut self) -> usize {
        let pids: Vec<u32> = self.running.keys().copied().collect();
        let mut n = 0;
        for pid in pids {
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            match waitpid(Some(p), WaitOptions::NOHANG) {
                Ok(Some((_, status))) => {
                    let kind = if let Some(code) = status.exit_status() {
                        ExitKind::Exited(code)
                    } else if let Some(sig) = status.terminating_signal() {
                        ExitKind::Signaled(sig)
                    } else {
                        continue; // stopped or continued: still ours to reap
                    };
                    self.record(pid, kind);
                    n += 1;
                }
                Ok(None) => {}
                Err(rustix::io::Errno::CHILD) => {
                    // Reaped by someone else (e.g. SIGCHLD set to SIG_IGN by the
                    // application): the status is lost.
                    log::warn!("child pid {pid} was reaped elsewhere; its status is unknown");
                    self.running.remove(&pid);
                }
                Err(e) => log::warn!("waitpid {pid}: {e}"),
            }
        }
        n
    }

    fn record(&mut self, pid: u32, kind: ExitKind) {
        let Some((peer, name)) = self.running.remove(&pid) else {
            return;
        };
        match lost_child_line(pid, kind) {
            Some(line) => log::warn!("{line} ({name})"),
            None => log::debug!("{name} (pid {pid}) exited"),
        }
        self.exits.push(ChildExit { peer, pid, kind });
    }

    /// Waits for every child, at most `grace` (woken by `sigchld`, a readable
    /// descriptor that becomes ready when SIGCHLD arrives); then kills the remaining
    /// ones with SIGKILL and reaps them. Nothing is left behind: no zombie, no orphan.
    pub fn reap_all(&mut self, grace: Duration, sigchld: Option<&dyn AsFd>, drain: &dyn Fn()) {
        let deadline = Instant::now() + grace;
        loop {
            self.reap_ended();
            if self.running.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Without a SIGCHLD pipe, poll an empty set as a short sleep.
            let step = match sigchld {
                Some(_) => left,
                None => left.min(Duration::from_millis(10)),
            };
            let ts = Timespec {
                tv_sec: step.as_secs() as i64,
                tv_nsec: step.subsec_nanos() as i64,
            };
            let mut fds: Vec<PollFd<'_>> = sigchld
                .map(|f| PollFd::from_borrowed_fd(f.as_fd(), PollFlags::IN))
                .into_iter()
                .collect();
            let _ = poll(&mut fds, Some(&ts));
            drain();
        }
        for (&pid, (_, name)) in &self.running {
            log::warn!("{name} (pid {pid}) still running after {grace:?}: killing it");
            if let Some(p) = Pid::from_raw(pid as i32) {
                let _ = kill_process(p, KillSignal::KILL);
            }
        }
        let pids: Vec<u32> = self.running.keys().copied().collect();
        for pid in pids {
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            loop {
                match waitpid(Some(p), WaitOptions::empty()) {
                    Ok(Some((_, status))) => {
                        let kind = match (status.exit_status(), status.terminating_signal()) {
                            (Some(c), _) => ExitKind::Exited(c),
                            (None, Some(s)) => ExitKind::Signaled(s),
                            _ => continue,
                        };
                        self.record(pid, kind);
                        break;
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    _ => {
                        self.running.remove(&pid);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ProcId;

    #[test]
    fn lost_child_lines_as_proc_c() {
        assert_eq!(
            lost_child_line(42, ExitKind::Signaled(9)).unwrap(),
            "lost child: pid 42 terminated; signal 9"
        );
        assert_eq!(
            lost_child_line(42, ExitKind::Exited(1)).unwrap(),
            "lost child: pid 42 exited abnormally"
        );
        assert_eq!(lost_child_line(42, ExitKind::Exited(0)), None);
    }

    /// A child reaped by pid through `Children`, not through its std handle.
    fn spawn(prog: &str, args: &[&str]) -> u32 {
        std::process::Command::new(prog)
            .args(args)
            .spawn()
            .map(|c| c.id())
            .unwrap()
    }

    #[test]
    fn reaps_real_children() {
        let mut c = Children::new();
        let ok = spawn("true", &[]);
        let bad = spawn("false", &[]);
        let slow = spawn("sleep", &["60"]);
        c.add(ok, Peer::new(ProcId(1), 0), "ok".into());
        c.add(bad, Peer::new(ProcId(1), 1), "bad".into());
        c.add(slow, Peer::new(ProcId(2), 0), "slow".into());
        assert_eq!(c.pid_of(Peer::new(ProcId(2), 0)), Some(slow));
        c.reap_all(Duration::from_millis(300), None, &|| {});
        assert_eq!(c.running(), 0);
        let mut kinds: Vec<(u32, ExitKind)> = c.exits().iter().map(|e| (e.pid, e.kind)).collect();
        kinds.sort_unstable();
        let mut want = vec![
            (ok, ExitKind::Exited(0)),
            (bad, ExitKind::Exited(1)),
            (slow, ExitKind::Signaled(9)),
        ];
        want.sort_unstable();
        assert_eq!(kinds, want);
        assert!(!c.all_clean());
    }
}
