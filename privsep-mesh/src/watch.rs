//! Descriptors of the application's own (a listening socket, client sockets) that
//! a handler asks its process's event loop to watch, through
//! [`Context::watch`](crate::Context::watch): the loop owns the object, waits for
//! it with the mesh's channels (in either loop kind) and calls
//! [`Handler::io`](crate::Handler::io) when it is ready: the role of libevent's
//! `event_set` in proc.c daemons. Readiness is level-triggered in both kinds: a
//! handler that leaves data unread is called again.

use std::any::Any;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};

/// A descriptor a handler watches; names it in [`Handler::io`](crate::Handler::io)
/// and the [`Context`](crate::Context) calls that reach the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watch(u64);

/// What to wait for, or what is ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Readable (for a listening socket: a connection waits), or end of file or
    /// an error, which a read reports.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
}

impl Ready {
    /// Readable only.
    pub const READ: Ready = Ready {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITE: Ready = Ready {
        readable: false,
        writable: true,
    };
}

/// An object the loop owns and watches: anything with a descriptor.
pub(crate) trait Watched: Any {
    fn fd(&self) -> BorrowedFd<'_>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: AsFd + Any> Watched for T {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

pub(crate) struct Entry {
    pub(crate) io: Box<dyn Watched>,
    pub(crate) interest: Ready,
    /// The tokio loop's registration: a duplicate of the descriptor, so that the
    /// reactor never watches one the handler could close.
    #[cfg(feature = "tokio")]
    pub(crate) reg: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
}

/// The watched objects of one process.
#[derive(Default)]
pub(crate) struct Watches {
    next: u64,
    pub(crate) entries: BTreeMap<Watch, Entry>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Watches {
    pub(crate) fn add(&mut self, io: Box<dyn Watched>, interest: Ready) -> Watch {
        self.next += 1;
        let w = Watch(self.next);
        self.entries.insert(
            w,
            Entry {
                io,
                interest,
                #[cfg(feature = "tokio")]
                reg: None,
            },
        );
        w
    }
}

/// What poll(2) says of `fd` now, for `interest` (no waiting).
#[cfg(feature = "tokio")]
pub(crate) fn ready_now(fd: BorrowedFd<'_>, interest: Ready) -> Ready {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut ev = PollFlags::empty();
    if interest.readable {
        ev |= PollFlags::IN;
    }
    if interest.writable {
        ev |= PollFlags::OUT;
    }
    let mut fds = [PollFd::new(&fd, ev)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => from_revents(fds[0].revents(), interest),
        Err(_) => Ready::default(),
    }
}

/// poll(2)'s answer as readiness, within `interest`.
pub(crate) fn from_revents(re: rustix::event::PollFlags, interest: Ready) -> Ready {
    use rustix::event::PollFlags;
    let err = re.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL);
    Ready {
        readable: interest.readable && (re.contains(PollFlags::IN) || err),
        writable: interest.writable && (re.contains(PollFlags::OUT) || err),
    }
}
