//! The event loop inside a tokio runtime (feature `tokio`).
//!
//! A process marked with [`crate::ProcSpec::with_tokio`] (or every process, under
//! [`crate::Privsep::run_async`]) runs the loop body of every process with this
//! waiter instead of `poll(2)`: its handler may `tokio::spawn` tasks (network I/O,
//! timers of the application's own), and those tasks send into the mesh through an
//! [`Outbox`] (from [`crate::Context::outbox`]), which the loop drains.
//!
//! Each channel is driven by imsg-io's `AsyncChannel`: `poll_read` reads when the
//! socket is readable (and waits out the descriptor guard on a timer), `poll_flush`
//! writes what is queued as the socket takes it. The signal self-pipe and the
//! handler's watched descriptors are registered with the reactor through
//! `tokio::io::unix::AsyncFd` over duplicates the waiter owns.

use std::future::{poll_fn, Future};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::Poll;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Sleep;

use crate::error::Error;
use crate::event_loop::{Event, Waiter};
use crate::handler::Handler;
use crate::link::Link;
use crate::mesh::{LoopEnd, Mesh};
use crate::outbox::Outbox;
use crate::outbox::Outgoing;
use crate::route::Peer;
use crate::signals::SignalPipe;
use crate::watch::{ready_now, Watches};

/// Registers a duplicate of `fd` (the signal pipe's read end, a watched
/// descriptor) with the reactor, which then never watches a descriptor that the
/// loop or the handler could close meanwhile, at the cost of one descriptor each.
fn register(fd: BorrowedFd<'_>, interest: Interest) -> Result<AsyncFd<OwnedFd>, Error> {
    let dup = fd.try_clone_to_owned().map_err(Error::os("dup"))?;
    // SAFETY: `dup` is an open descriptor owned by the AsyncFd from here on; nothing
    // closes, replaces or hands it out while it is registered.
    unsafe { AsyncFd::register_with_interest(dup, interest) }
        .map_err(|e| Error::os("tokio AsyncFd")(e.into_parts().1))
}

/// The watched descriptors that are ready, level-triggered: tokio's readiness is
/// cleared only when poll(2) says the descriptor has nothing more, so what a
/// handler left unread is reported again. One not registered yet (no descriptor
/// slot was free for its duplicate) is asked with poll(2) directly; the waiter
/// comes back every [`imsg_io::FD_GUARD_RETRY`] while one is left.
fn poll_watches(ws: &Watches, cx: &mut std::task::Context<'_>, out: &mut Vec<Event>) {
    for (w, e) in &ws.entries {
        let Some(reg) = &e.reg else {
            let now = ready_now(e.io.fd(), e.interest);
            if now != crate::watch::Ready::default() {
                out.push(Event::Io(*w, now));
            }
            continue;
        };
        let mut now = crate::watch::Ready::default();
        if e.interest.readable {
            while let Poll::Ready(Ok(mut g)) = reg.poll_read_ready(cx) {
                now = ready_now(e.io.fd(), e.interest);
                if now.readable {
                    break;
                }
                g.clear_ready();
            }
        }
        if e.interest.writable && !now.writable {
            while let Poll::Ready(Ok(mut g)) = reg.poll_write_ready(cx) {
                now = ready_now(e.io.fd(), e.interest);
                if now.writable {
                    break;
                }
                g.clear_ready();
            }
        }
        if now != crate::watch::Ready::default() {
            out.push(Event::Io(*w, now));
        }
    }
}

/// Waits through tokio: channels as imsg-io `AsyncChannel`s, the signal pipe and
/// watches as `AsyncFd`s, timers as a tokio sleep, and the outbox's receiver.
struct TokioWaiter {
    sig: AsyncFd<OwnedFd>,
    outbox: UnboundedReceiver<Outgoing>,
    interest: Vec<(Peer, bool, bool)>,
    /// The handler's earliest timer.
    timer: Pin<Box<Sleep>>,
    /// While a watch could not be registered: when to try again, and whether
    /// that was said in the log already.
    retry: Pin<Box<Sleep>>,
    unregistered: bool,
}

impl Waiter for TokioWaiter {
    async fn wait(
        &mut self,
        mesh: &mut Mesh,
        signals: &SignalPipe,
        out: &mut Vec<Event>,
    ) -> Result<(), Error> {
        mesh.drive_with_tokio()?;
        // A watch that cannot be registered now (typically no descriptor slot for
        // its duplicate) is not fatal: it is polled directly and registered on a
        // later turn, once a slot is free.
        let mut unregistered = false;
        for (w, e) in mesh.watches().entries.iter_mut() {
            if e.reg.is_some() {
                continue;
            }
            match register(e.io.fd(), Interest::READABLE | Interest::WRITABLE) {
                Ok(reg) => e.reg = Some(reg),
                Err(err) => {
                    if !self.unregistered {
                        log::warn!("{w:?} not registered with the reactor yet, polled every {} ms until it is: {err}",
                            imsg_io::FD_GUARD_RETRY.as_millis());
                    }
                    unregistered = true;
                }
            }
        }
        if unregistered && !self.unregistered {
            self.retry
                .as_mut()
                .reset(tokio::time::Instant::now() + imsg_io::FD_GUARD_RETRY);
        }
        self.unregistered = unregistered;
        mesh.interest_into(&mut self.interest);
        if let Some(d) = mesh.next_deadline() {
            let d = tokio::time::Instant::from_std(d);
            if self.timer.deadline() != d {
                self.timer.as_mut().reset(d);
            }
        }
        poll_fn(|cx| {
            let mut due = false;
            if let Poll::Ready(Ok(mut g)) = self.sig.poll_read_ready(cx) {
                let caught = signals.drain().map_err(Error::os("signal pipe"))?;
                // Cleared after the read: a signal arriving since is a new
                // readiness event, which this does not clear.
                g.clear_ready();
                out.push(Event::Signals(caught));
            }
            // Everything queued goes in this turn: tasks that keep the outbox busy
            // must not starve the channels. While a message waits for room on its
            // channel, the rest wait behind it in the outbox.
            while !mesh.holds_outgoing() {
                let Poll::Ready(Some(m)) = self.outbox.poll_recv(cx) else {
                    break;
                };
                out.push(Event::Outbox(m));
            }
            poll_watches(mesh.watches_ref(), cx, out);
            if mesh.next_deadline().is_some() && self.timer.as_mut().poll(cx).is_ready() {
                due = true;
            }
            if self.unregistered && self.retry.as_mut().poll(cx).is_ready() {
                let next = tokio::time::Instant::now() + imsg_io::FD_GUARD_RETRY;
                self.retry.as_mut().reset(next);
                due = true;
            }
            let held = mesh.holds_outgoing();
            for &(peer, read, write) in &self.interest {
                let Some(Link::Async(ch)) = mesh.link_mut(peer) else {
                    continue;
                };
                if write {
                    let before = ch.channel().queued_bytes();
                    match ch.poll_flush(cx) {
                        Poll::Ready(Err(e)) => {
                            out.push(Event::Wrote(peer, Err(e)));
                            continue;
                        }
                        // Room was made: held outbox messages may fit now.
                        _ if held && ch.channel().queued_bytes() < before => {
                            out.push(Event::Wrote(peer, Ok(())));
                        }
                        _ => {}
                    }
                }
                if read {
                    if let Poll::Ready(r) = ch.poll_read(cx) {
                        out.push(Event::Read(peer, r));
                    }
                }
            }
            if out.is_empty() && !due {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        })
        .await
    }
}

/// The loop body ([`crate::event_loop::run`]) with the tokio waiter. Must run
/// inside a tokio runtime with I/O and time enabled.
pub(crate) async fn event_loop(
    mesh: &mut Mesh,
    handler: &mut dyn Handler,
    signals: &SignalPipe,
) -> Result<LoopEnd, Error> {
    let (tx, rx) = unbounded_channel();
    mesh.set_outbox(Some(Outbox::new(tx, mesh.outbox_limit())));
    let result = async {
        let mut waiter = TokioWaiter {
            sig: register(signals.as_fd(), Interest::READABLE)?,
            outbox: rx,
            interest: Vec::new(),
            timer: Box::pin(tokio::time::sleep(imsg_io::FD_GUARD_RETRY)),
            retry: Box::pin(tokio::time::sleep(imsg_io::FD_GUARD_RETRY)),
            unregistered: false,
        };
        crate::event_loop::run(mesh, handler, signals, &mut waiter).await
    }
    .await;
    mesh.set_outbox(None);
    result
}
