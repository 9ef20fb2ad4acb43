//! Signals, turned into readable bytes on a self-pipe so that the event loop's one
//! `poll(2)` waits for them along with the channels.
//!
//! Dispositions set by [`SignalPipe::install`]:
//!
//! | signal | disposition |
//! |---|---|
//! | SIGTERM, SIGINT | caught: the process shuts down through its shutdown hook, or, if the process asked, [`crate::Handler::signal`] decides when |
//! | SIGHUP, SIGUSR1, SIGUSR2 | ignored, or caught for [`crate::Handler::signal`] if the process asked |
//! | SIGPIPE | ignored (a dead peer shows up as `EPIPE` on write), or caught if asked |
//! | SIGCHLD | left at its default (which discards it) unless caught: setting it to `SIG_IGN` would make the kernel reap children itself and `waitpid` could no longer report how they ended. The parent always catches it to reap. |
//!
//! The handler only writes the signal number to the pipe (`write(2)` is
//! async-signal-safe) and restores `errno`.

use core::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::io::Errno;

/// A signal the framework knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Signal {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGPIPE.
    Pipe,
    /// SIGCHLD.
    Chld,
}

impl Signal {
    const ALL: [Signal; 7] = [
        Signal::Term,
        Signal::Int,
        Signal::Hup,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Pipe,
        Signal::Chld,
    ];

    /// The signal number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Usr2 => libc::SIGUSR2,
            Signal::Pipe => libc::SIGPIPE,
            Signal::Chld => libc::SIGCHLD,
        }
    }

    /// The signal with this number, if the framework knows it.
    pub fn from_number(n: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == n)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
            Signal::Hup => "SIGHUP",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Pipe => "SIGPIPE",
            Signal::Chld => "SIGCHLD",
        })
    }
}

/// The write end of the installed pipe, for the handler; -1 when none is installed.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls: reading and restoring errno through its
    // thread-local location (the platform's __errno_location, __error or __errno,
    // which return a valid pointer for the calling thread), and write(2) of one
    // byte from a local to a descriptor that stays open while WRITE_FD names it
    // (SignalPipe::drop clears WRITE_FD and restores the dispositions before
    // closing it).
    unsafe {
        let errno_at = crate::sys::errno_location();
        let errno = *errno_at;
        let fd = WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            // A full pipe drops the byte: a signal is already pending there.
            let _ = libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *errno_at = errno;
    }
}

fn set_disposition(sig: Signal, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: sigaction with a zeroed, then filled, struct; the handler is either
    // SIG_IGN / SIG_DFL or `on_signal`, which is async-signal-safe (see above).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig.number(), &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The process's signal self-pipe; at most one exists at a time.
#[derive(Debug)]
pub(crate) struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
    caught: Vec<Signal>,
    for_app: Vec<Signal>,
}

impl SignalPipe {
    /// Creates the pipe and sets the dispositions described in the module docs:
    /// `for_app` (signals the application handles), `internal` (the framework's own,
    /// e.g. SIGCHLD in the parent) and SIGTERM and SIGINT, always, are delivered
    /// through the pipe; the other signals of the table above are ignored or left at
    /// their default.
    ///
    /// Fails with `EBUSY` if another `SignalPipe` is alive in this process.
    pub fn install(for_app: &[Signal], internal: &[Signal]) -> io::Result<SignalPipe> {
        let (read, write) = crate::sys::pipe_cloexec_nonblock()?;
        if WRITE_FD
            .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Errno::BUSY.into());
        }
        let mut all = vec![Signal::Term, Signal::Int];
        all.extend(for_app.iter().chain(internal).copied());
        all.sort_unstable();
        all.dedup();
        let mut for_app: Vec<Signal> = for_app.to_vec();
        for_app.sort_unstable();
        for_app.dedup();
        let pipe = SignalPipe {
            read,
            write,
            caught: all,
            for_app,
        };
        for sig in Signal::ALL {
            let disposition = if pipe.caught.contains(&sig) {
                on_signal as *const () as libc::sighandler_t
            } else if sig == Signal::Chld {
                libc::SIG_DFL
            } else {
                libc::SIG_IGN
            };
            set_disposition(sig, disposition)?;
        }
        Ok(pipe)
    }

    /// The signals that go to the application's [`crate::Handler::signal`]. SIGTERM
    /// and SIGINT go there only if the application asked for them (it then stops the
    /// process itself, e.g. after an orderly drain); otherwise they shut down.
    pub fn for_app(&self) -> &[Signal] {
        &self.for_app
    }

    /// Reads every pending signal (oldest first); empty when none is pending.
    pub fn drain(&self) -> io::Result<Vec<Signal>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match rustix::io::read(&self.read, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(
                    buf[..n]
                        .iter()
                        .filter_map(|&b| Signal::from_number(i32::from(b))),
                ),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}

impl AsFd for SignalPipe {
    /// The read end, to poll for `POLLIN`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for sig in &self.caught {
            let _ = set_disposition(*sig, libc::SIG_DFL);
        }
        let _ = WRITE_FD.compare_exchange(
            self.write.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_number(s.number()), Some(s));
        }
        assert_eq!(Signal::from_number(libc::SIGKILL), None);
        assert_eq!(Signal::Term.to_string(), "SIGTERM");
    }
}
