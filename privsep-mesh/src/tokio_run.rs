//! The event loop inside a tokio runtime (feature `tokio`).
//!
//! A process marked with [`crate::ProcSpec::tokio`] runs its mesh in a current-thread
//! tokio runtime instead of the `poll(2)` loop: its handler may `tokio::spawn` tasks
//! (network I/O, timers of the application's own), and those tasks send into the mesh
//! through an [`Outbox`] (from [`crate::Context::outbox`]), which the loop drains.
//!
//! Behaviour is the same as the built-in loop: the same dispatch path
//! ([`Mesh::receive`]), end of file ends the loop, SIGTERM/SIGINT shut down, the
//! parent reaps on SIGCHLD. Channels and the signal self-pipe are watched with
//! `tokio::io::unix::AsyncFd` over duplicates the loop owns (edge-triggered: a channel's readiness is only
//! cleared once a read found nothing more).

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::Poll;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::Error;
use crate::handler::Context;
use crate::handler::Handler;
use crate::mesh::LoopEnd;
use crate::mesh::{Flow, Mesh, ReadEnd, FD_GUARD_RETRY};
use crate::outbox::Outgoing;
pub use crate::outbox::{Outbox, OutboxError};
use crate::reap::Children;
use crate::route::Peer;
use crate::signals::{Signal, SignalPipe};
use crate::watch::{ready_now, Ready, Watch, Watches};

enum Event {
    Signals,
    Io(Watch, Ready),
    Timers,
    Retry,
    Outbox(Outgoing),
    Read(Peer),
    Write(Peer),
}

/// Registers a duplicate of `fd` (a channel of the mesh, the signal pipe's read
/// end) with the reactor: the reactor then never watches a descriptor that the
/// mesh could close or reuse meanwhile (a detached channel), at the cost of one
/// descriptor each.
fn watch(fd: BorrowedFd<'_>, interest: Interest) -> Result<AsyncFd<OwnedFd>, Error> {
    let dup = fd.try_clone_to_owned().map_err(Error::os("dup"))?;
    // SAFETY: `dup` is an open descriptor owned by the AsyncFd from here on; nothing
    // closes, replaces or hands it out while it is registered.
    unsafe { AsyncFd::register_with_interest(dup, interest) }
        .map_err(|e| Error::os("tokio AsyncFd")(e.into_parts().1))
}

/// The first watched descriptor that is ready, level-triggered: tokio's readiness
/// is cleared only when poll(2) says the descriptor has nothing more, so what a
/// handler left unread is reported again.
fn poll_watches(ws: &Watches, cx: &mut std::task::Context<'_>) -> Option<Event> {
    for (w, e) in &ws.entries {
        let Some(reg) = &e.reg else { continue };
        if e.interest.readable {
            while let Poll::Ready(Ok(mut g)) = reg.poll_read_ready(cx) {
                let now = ready_now(e.io.fd(), e.interest);
                if now.readable {
                    return Some(Event::Io(*w, now));
                }
                g.clear_ready();
            }
        }
        if e.interest.writable {
            while let Poll::Ready(Ok(mut g)) = reg.poll_write_ready(cx) {
                let now = ready_now(e.io.fd(), e.interest);
                if now.writable {
                    return Some(Event::Io(*w, now));
                }
                g.clear_ready();
            }
        }
    }
    None
}

/// Queues outbox messages on their channels in order, `held` first, until the outbox
/// is empty or a message finds a channel at its high-water mark: that one stays in
/// `held` (descriptor included), and the outbox is not read until it is queued.
fn deliver(
    mesh: &mut Mesh,
    outbox: &Outbox,
    held: &mut Option<Outgoing>,
    rx: &mut UnboundedReceiver<Outgoing>,
) -> Result<(), Error> {
    loop {
        let m = match held.take() {
            Some(m) => m,
            None => match rx.try_recv() {
                Ok(m) => m,
                Err(_) => return Ok(()),
            },
        };
        let len = m.payload.len();
        match mesh.send(m.to, m.target, m.ty, m.peerid, m.fd, &[&m.payload]) {
            Ok(_) => outbox.taken(len),
            Err(Error::Channel {
                error: imsg_io::Error::QueueFull { fd, .. },
                ..
            }) => {
                *held = Some(Outgoing { fd, ..m });
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The event loop of [`crate::run::event_loop`], awaiting readiness through tokio.
/// Must run inside a tokio runtime with I/O enabled.
pub(crate) async fn event_loop(
    mesh: &mut Mesh,
    handler: &mut dyn Handler,
    signals: &SignalPipe,
    mut children: Option<&mut Children>,
) -> Result<LoopEnd, Error> {
    let (tx, mut rx) = unbounded_channel();
    let outbox = Outbox::new(tx, mesh.outbox_limit());
    mesh.set_outbox(Some(outbox.clone()));
    // The outbox message whose channel was full, waiting for that channel to write.
    let mut held: Option<Outgoing> = None;
    let sig = watch(signals.as_fd(), Interest::READABLE)?;
    let mut watched: BTreeMap<Peer, AsyncFd<OwnedFd>> = BTreeMap::new();
    let result = async {
        let mut interest = Vec::new();
        // Channels whose last read the descriptor guard refused, and the timer after
        // which they are read again (their readiness is kept: they are not drained).
        let mut guarded: Vec<Peer> = Vec::new();
        let mut retry = Box::pin(tokio::time::sleep(FD_GUARD_RETRY));
        // The handler's earliest timer.
        let mut timer = Box::pin(tokio::time::sleep(FD_GUARD_RETRY));
        loop {
            if mesh.shutdown_requested() {
                return Ok(LoopEnd::Requested);
            }
            mesh.interest_into(&mut interest);
            for (peer, read, _) in &mut interest {
                if guarded.contains(peer) {
                    *read = false;
                }
            }
            // A detached channel's duplicate is closed with its registration.
            watched.retain(|p, _| mesh.is_connected(*p));
            for &(peer, _, _) in &interest {
                if let std::collections::btree_map::Entry::Vacant(e) = watched.entry(peer) {
                    let ch = mesh.channel(peer).ok_or(Error::NotConnected(peer))?;
                    e.insert(watch(ch.as_fd(), Interest::READABLE | Interest::WRITABLE)?);
                }
            }
            for e in mesh.watches().entries.values_mut() {
                if e.reg.is_none() {
                    let dup = e.io.fd().try_clone_to_owned().map_err(Error::os("dup"))?;
                    // SAFETY: `dup` is an open descriptor owned by the AsyncFd from
                    // here on; the loop never closes, replaces or hands it out
                    // while it is registered (it is dropped with the entry).
                    let reg = unsafe { AsyncFd::register(dup) }
                        .map_err(|e| Error::os("tokio AsyncFd")(e.into_parts().1))?;
                    e.reg = Some(reg);
                }
            }
            let event = poll_fn(|cx| {
                if sig.poll_read_ready(cx).is_ready() {
                    return Poll::Ready(Event::Signals);
                }
                if held.is_none() {
                    if let Poll::Ready(Some(m)) = rx.poll_recv(cx) {
                        return Poll::Ready(Event::Outbox(m));
                    }
                }
                if let Some(ev) = poll_watches(mesh.watches_ref(), cx) {
                    return Poll::Ready(ev);
                }
                if let Some(d) = mesh.next_deadline() {
                    let d = tokio::time::Instant::from_std(d);
                    if timer.deadline() != d {
                        timer.as_mut().reset(d);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Timers);
                    }
                }
                if !guarded.is_empty() && retry.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Retry);
                }
                for &(peer, read, write) in &interest {
                    let Some(w) = watched.get(&peer) else {
                        continue;
                    };
                    if read && w.poll_read_ready(cx).is_ready() {
                        return Poll::Ready(Event::Read(peer));
                    }
                    if write && w.poll_write_ready(cx).is_ready() {
                        return Poll::Ready(Event::Write(peer));
                    }
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Signals => {
                    // The guard is taken before reading, so a signal arriving after the
                    // read is not lost when readiness is cleared.
                    let mut g = sig.readable().await.map_err(Error::os("tokio AsyncFd"))?;
                    let pending = signals.drain().map_err(Error::os("signal pipe"))?;
                    g.clear_ready();
                    for s in pending {
                        match s {
                            Signal::Term | Signal::Int if !signals.for_app().contains(&s) => {
                                log::info!("received {s}, shutting down");
                                return Ok(LoopEnd::Signal(s));
                            }
                            Signal::Chld if children.is_some() => {
                                if let Some(c) = children.as_deref_mut() {
                                    c.reap_ended();
                                }
                            }
                            _ => {}
                        }
                        if signals.for_app().contains(&s) {
                            let mut ctx = Context::new(mesh);
                            handler.signal(&mut ctx, s).map_err(Error::App)?;
                        }
                    }
                }
                Event::Io(w, ready) => {
                    if mesh.watch_ready(w, ready, handler)? == Flow::Shutdown {
                        return Ok(LoopEnd::Requested);
                    }
                }
                Event::Timers => {
                    if mesh.fire_timers(handler)? == Flow::Shutdown {
                        return Ok(LoopEnd::Requested);
                    }
                }
                Event::Retry => {
                    for peer in std::mem::take(&mut guarded) {
                        let (flow, end) = mesh.receive_once(peer, handler)?;
                        if end == ReadEnd::FdGuard {
                            guarded.push(peer);
                        }
                        match flow {
                            Flow::Continue => {}
                            Flow::Closed(p) => return Ok(LoopEnd::Closed(p)),
                            Flow::Shutdown => return Ok(LoopEnd::Requested),
                        }
                    }
                    if !guarded.is_empty() {
                        retry
                            .as_mut()
                            .reset(tokio::time::Instant::now() + FD_GUARD_RETRY);
                    }
                }
                Event::Outbox(m) => {
                    // Everything queued now goes in this turn: the outbox is looked at
                    // before the channels, so tasks that keep it busy (one message per
                    // turn) would otherwise starve the channels, and the process would
                    // never read its peers' messages.
                    held = Some(m);
                    deliver(mesh, &outbox, &mut held, &mut rx)?;
                }
                Event::Read(peer) => {
                    let w = watched.get(&peer).ok_or(Error::NotConnected(peer))?;
                    let mut g = w.readable().await.map_err(Error::os("tokio AsyncFd"))?;
                    let (flow, end) = mesh.receive_once(peer, handler)?;
                    match end {
                        ReadEnd::Drained => g.clear_ready(),
                        ReadEnd::More => {}
                        ReadEnd::FdGuard => {
                            if guarded.is_empty() {
                                retry
                                    .as_mut()
                                    .reset(tokio::time::Instant::now() + FD_GUARD_RETRY);
                            }
                            guarded.push(peer);
                        }
                    }
                    match flow {
                        Flow::Continue => {}
                        Flow::Closed(p) => return Ok(LoopEnd::Closed(p)),
                        Flow::Shutdown => return Ok(LoopEnd::Requested),
                    }
                }
                Event::Write(peer) => {
                    let w = watched.get(&peer).ok_or(Error::NotConnected(peer))?;
                    let mut g = w.writable().await.map_err(Error::os("tokio AsyncFd"))?;
                    let before = mesh.channel(peer).map_or(0, |c| c.queue_len());
                    match mesh.write(peer)? {
                        Flow::Closed(p) => return Ok(LoopEnd::Closed(p)),
                        Flow::Shutdown => return Ok(LoopEnd::Requested),
                        Flow::Continue => {}
                    }
                    let after = mesh.channel(peer).map_or(0, |c| c.queue_len());
                    if after > 0 && after == before {
                        // Nothing went out: the socket is full until the next edge.
                        g.clear_ready();
                    }
                    if held.is_some() {
                        deliver(mesh, &outbox, &mut held, &mut rx)?;
                    }
                }
            }
        }
    }
    .await;
    drop(watched);
    drop(sig);
    mesh.set_outbox(None);
    result
}
