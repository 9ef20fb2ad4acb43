//! The event loop of every process: one body, two ways to wait.
//!
//! The body ([`run`]) turns what happened into handler calls: signals
//! (SIGTERM/SIGINT end the loop, SIGCHLD reaps in the parent, the others go to
//! [`Handler::signal`]), reads (every complete message dispatched, end of file
//! ends the loop), writes (a vanished peer ends the loop), the handler's watched
//! descriptors, its timers, and, in a tokio-run process, what its tasks put in
//! the outbox. A [`Waiter`] does the waiting and the socket I/O readiness asks
//! for, and reports it as [`Event`]s:
//!
//! - [`PollWaiter`]: one `poll(2)` (rustix) over the channels, the signal
//!   self-pipe and the watched descriptors. A process has a small, fixed set of
//!   descriptors (its peers, at most a few dozen) that only grows during start-up,
//!   so poll's linear scan costs nothing measurable and needs no registration;
//!   the set is rebuilt from the mesh on every turn, so channels added by
//!   `PROCFD` are picked up as they come.
//! - the tokio waiter (feature `tokio`, module `tokio_run`): each channel is
//!   driven by imsg-io's `AsyncChannel` (`poll_read`, `poll_flush`).
//!
//! Both keep a channel whose read the descriptor guard refused out of the
//! readiness wait (it is still readable: waiting on it would spin) and read it
//! again after [`FD_GUARD_RETRY`].

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use imsg_io::{ReadStatus, FD_GUARD_RETRY};

use crate::error::Error;
use crate::handler::{Context, Handler};
use crate::mesh::{Flow, LoopEnd, Mesh};
use crate::route::Peer;
use crate::signals::{Signal, SignalPipe};
use crate::watch::{from_revents, Ready, Watch};

/// Something a waiter saw or did, for the loop body to act on.
pub(crate) enum Event {
    /// These signals arrived (the self-pipe is drained).
    Signals(Vec<Signal>),
    /// The waiter read from the channel to this peer.
    Read(Peer, Result<ReadStatus, imsg_io::Error>),
    /// The waiter wrote to the channel to this peer.
    Wrote(Peer, Result<(), imsg_io::Error>),
    /// A watched descriptor is ready.
    Io(Watch, Ready),
    /// A task of a tokio-run process queued a message.
    #[cfg(feature = "tokio")]
    Outbox(crate::outbox::Outgoing),
}

/// How a process waits for its channels, signals, watches and timers.
pub(crate) trait Waiter {
    /// Waits until something is ready or the earliest timer is due, does the
    /// reads and writes readiness allows, and reports them in `out`. May return
    /// with nothing in `out` (a timer is due, a signal interrupted the wait).
    async fn wait(
        &mut self,
        mesh: &mut Mesh,
        signals: &SignalPipe,
        out: &mut Vec<Event>,
    ) -> Result<(), Error>;
}

/// Runs `mesh` until a channel closes, a terminating signal arrives, or the handler
/// asks to stop; `waiter` does the waiting. In the parent, children are reaped as
/// SIGCHLD arrives.
pub(crate) async fn run(
    mesh: &mut Mesh,
    handler: &mut dyn Handler,
    signals: &SignalPipe,
    waiter: &mut impl Waiter,
) -> Result<LoopEnd, Error> {
    let mut events = Vec::new();
    loop {
        if mesh.shutdown_requested() {
            return Ok(LoopEnd::Requested);
        }
        events.clear();
        waiter.wait(mesh, signals, &mut events).await?;
        for event in events.drain(..) {
            let flow = match event {
                Event::Signals(caught) => {
                    for sig in caught {
                        match sig {
                            Signal::Term | Signal::Int if !signals.for_app().contains(&sig) => {
                                log::info!("received {sig}, shutting down");
                                return Ok(LoopEnd::Signal(sig));
                            }
                            Signal::Chld => {
                                mesh.children_mut().reap_ended();
                            }
                            _ => {}
                        }
                        if signals.for_app().contains(&sig) {
                            let mut ctx = Context::new(mesh);
                            handler.signal(&mut ctx, sig).map_err(Error::App)?;
                        }
                    }
                    Flow::Continue
                }
                Event::Read(peer, read) => mesh.received(peer, read, handler)?,
                Event::Wrote(peer, wrote) => Mesh::wrote(peer, wrote)?,
                Event::Io(w, ready) => mesh.watch_ready(w, ready, handler)?,
                #[cfg(feature = "tokio")]
                Event::Outbox(m) => {
                    mesh.send_outgoing(m)?;
                    Flow::Continue
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Closed(p) => return Ok(LoopEnd::Closed(p)),
                Flow::Shutdown => return Ok(LoopEnd::Requested),
            }
        }
        // Outbox messages held back by a full channel, once writes made room.
        #[cfg(feature = "tokio")]
        mesh.deliver_held()?;
        if mesh.fire_timers(handler)? == Flow::Shutdown {
            return Ok(LoopEnd::Requested);
        }
    }
}

/// The `poll(2)` waiter. Its future never waits on a waker (it blocks in poll
/// itself), so the loop needs no runtime.
#[derive(Default)]
pub(crate) struct PollWaiter {
    // Kept across turns; the poll set itself borrows the channels, so it is
    // built anew each turn.
    interest: Vec<(Peer, bool, bool)>,
    revents: Vec<PollFlags>,
    /// Channels whose last read the descriptor guard refused: not polled for
    /// input but read again on every turn, at most [`FD_GUARD_RETRY`] apart.
    guarded: Vec<Peer>,
    /// The handler's watched descriptors polled this turn, after the channels.
    watched: Vec<(Watch, Ready)>,
}

impl Waiter for PollWaiter {
    async fn wait(
        &mut self,
        mesh: &mut Mesh,
        signals: &SignalPipe,
        out: &mut Vec<Event>,
    ) -> Result<(), Error> {
        self.watched.clear();
        mesh.interest_into(&mut self.interest);
        for (peer, read, _) in &mut self.interest {
            if self.guarded.contains(peer) {
                *read = false;
            }
        }
        self.interest.retain(|&(_, r, w)| r || w);
        {
            let mut fds = Vec::with_capacity(self.interest.len() + 1);
            fds.push(PollFd::new(signals, PollFlags::IN));
            for &(peer, read, write) in &self.interest {
                let ch = mesh.channel(peer).ok_or(Error::NotConnected(peer))?;
                fds.push(PollFd::new(
                    ch,
                    flags(Ready {
                        readable: read,
                        writable: write,
                    }),
                ));
            }
            for (w, e) in &mesh.watches_ref().entries {
                if e.interest == Ready::default() {
                    continue;
                }
                self.watched.push((*w, e.interest));
                fds.push(PollFd::from_borrowed_fd(e.io.fd(), flags(e.interest)));
            }
            let timeout = wait_time(mesh.next_deadline(), !self.guarded.is_empty());
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => return Ok(()),
                Err(e) => return Err(Error::errno("poll")(e)),
            }
            self.revents.clear();
            self.revents.extend(fds.iter().map(PollFd::revents));
        }

        if self.revents[0].contains(PollFlags::IN) {
            let caught = signals.drain().map_err(Error::os("signal pipe"))?;
            out.push(Event::Signals(caught));
        }
        let retry = std::mem::take(&mut self.guarded);
        for (k, &(peer, _, _)) in self.interest.iter().enumerate() {
            let re = self.revents[k + 1];
            let Some(link) = mesh.link_mut(peer) else {
                continue;
            };
            if re.contains(PollFlags::OUT) {
                out.push(Event::Wrote(peer, link.channel_mut().write().map(drop)));
            }
            if re.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                let read = link.channel_mut().read();
                out.push(read_event(&mut self.guarded, peer, read));
            }
        }
        for peer in retry {
            if let Some(link) = mesh.link_mut(peer) {
                let read = link.channel_mut().read();
                out.push(read_event(&mut self.guarded, peer, read));
            }
        }
        let first = self.interest.len() + 1;
        for (k, &(w, want)) in self.watched.iter().enumerate() {
            let ready = from_revents(self.revents[first + k], want);
            if ready != Ready::default() {
                out.push(Event::Io(w, ready));
            }
        }
        Ok(())
    }
}

/// The event of a read from `peer`; one the descriptor guard refused puts the
/// peer among the `guarded`.
fn read_event(
    guarded: &mut Vec<Peer>,
    peer: Peer,
    read: Result<ReadStatus, imsg_io::Error>,
) -> Event {
    if matches!(read, Ok(ReadStatus::FdGuard)) && !guarded.contains(&peer) {
        guarded.push(peer);
    }
    Event::Read(peer, read)
}

fn flags(want: Ready) -> PollFlags {
    let mut ev = PollFlags::empty();
    if want.readable {
        ev |= PollFlags::IN;
    }
    if want.writable {
        ev |= PollFlags::OUT;
    }
    ev
}

/// poll(2)'s timeout: until the earliest timer, and at most [`FD_GUARD_RETRY`]
/// while a channel waits out the descriptor guard; `None` (forever) otherwise.
fn wait_time(deadline: Option<std::time::Instant>, guarded: bool) -> Option<Timespec> {
    let until = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
    let wait = match (until, guarded) {
        (Some(u), true) => u.min(FD_GUARD_RETRY),
        (Some(u), false) => u,
        (None, true) => FD_GUARD_RETRY,
        (None, false) => return None,
    };
    Timespec::try_from(wait).ok()
}
