//! [`Mesh`]: one process's channels to its peers, and the dispatch of what arrives on
//! them — framework messages handled here, application messages handed to the
//! process's [`Handler`].
//!
//! Nothing here exits or logs-and-dies: a broken protocol is an [`Error::Protocol`]
//! returned to the caller (the event loop ends the process on it; a fuzzer just
//! counts it). That makes the dispatch path callable from tests and fuzzers.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_io::{Channel, Config, OwnedMessage, ReadStatus};

use crate::link::Link;
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

use crate::control;
use crate::error::{Error, ProtocolError};
use crate::handler::Context;
use crate::handler::{Handled, Handler, Identity, Received};
use crate::readiness::{AckBarrier, ExpectedChannels, Phase};
use crate::reap::Children;
use crate::route::ProcId;
use crate::route::{self, pid_for_instance, Peer, Target};
use crate::signals::Signal;
use crate::table::{ProcTable, QueueLimits};
use crate::timer::Timers;
use crate::watch::{Ready, Watch, Watches};

/// Application messages exchanged with one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Messages queued to the peer.
    pub sent: u64,
    /// Messages received from the peer.
    pub received: u64,
}

/// What the caller of [`Mesh::receive`] / [`Mesh::write`] should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The channel to this peer reached end of file (or its peer is gone): leave the
    /// loop, as proc.c does.
    Closed(Peer),
    /// The handler asked to shut down.
    Shutdown,
}

/// Why a process left its event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopEnd {
    /// End of file (or a dead peer on write) on the channel to this peer.
    Closed(Peer),
    /// SIGTERM or SIGINT.
    Signal(Signal),
    /// The handler called [`Context::shutdown`].
    Requested,
}

/// One process's end of the mesh.
pub struct Mesh {
    me: Identity,
    titles: BTreeMap<ProcId, String>,
    layout: Vec<(ProcId, u32)>,
    config: Config,
    /// High-water marks of application sends; the channels themselves are unbounded
    /// so that the framework's own messages are never refused.
    limits: QueueLimits,
    channels: BTreeMap<Peer, Link>,
    expected: ExpectedChannels,
    barrier: AckBarrier,
    phase: Phase,
    shutdown: bool,
    /// In the parent: the children started, by pid, and how those reaped ended.
    children: Children,
    counts: BTreeMap<Peer, Counts>,
    /// The one receive slot of the process: every message is copied into it out of
    /// its channel's buffer (the handler may use that channel while it holds the
    /// message), so receiving allocates only when a payload is larger than any
    /// before it.
    scratch: OwnedMessage,
    timers: Timers,
    watches: Watches,
    #[cfg(feature = "tokio")]
    outbox: Option<crate::outbox::Outbox>,
    /// Outbox messages waiting for room on their channel, oldest first.
    #[cfg(feature = "tokio")]
    held: std::collections::VecDeque<crate::outbox::Outgoing>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("me", &self.me)
            .field("peers", &self.channels.keys().collect::<Vec<_>>())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let fl = fcntl_getfl(fd).map_err(Error::errno("fcntl F_GETFL"))?;
    fcntl_setfl(fd, fl | OFlags::NONBLOCK).map_err(Error::errno("fcntl F_SETFL"))
}

impl Mesh {
    /// The mesh of process `me` of `table` (which must be valid), with no channel
    /// yet. A child expects a `PROCFD` for every peer the policy gives it; the parent
    /// waits for a readiness acknowledgement from every child.
    pub fn new(table: &ProcTable, me: Identity) -> Result<Mesh, Error> {
        table.validate()?;
        let config = Config::default()
            .with_dialect(table.dialect())
            .with_max_frame(table.max_frame())
            .map_err(|error| Error::Channel {
                peer: me.peer,
                error,
            })?
            .with_fdpass(true)
            .with_pid(pid_for_instance(me.peer.instance));
        let (expected, barrier) = if me.peer.proc == ProcId::PARENT {
            (ExpectedChannels::new([]), AckBarrier::new(table.children()))
        } else {
            let peers = table
                .channels_of(me.peer)
                .into_iter()
                .filter(|p| *p != Peer::PARENT);
            (ExpectedChannels::new(peers), AckBarrier::new([]))
        };
        Ok(Mesh {
            titles: table
                .procs()
                .map(|p| (p.id(), p.title().to_owned()))
                .collect(),
            layout: table.layout(),
            config,
            limits: table.queue_limits(),
            channels: BTreeMap::new(),
            expected,
            barrier,
            phase: Phase::Connecting,
            shutdown: false,
            children: Children::new(),
            counts: BTreeMap::new(),
            scratch: OwnedMessage::default(),
            timers: Timers::default(),
            watches: Watches::default(),
            #[cfg(feature = "tokio")]
            outbox: None,
            #[cfg(feature = "tokio")]
            held: std::collections::VecDeque::new(),
            me,
        })
    }

    /// Who this process is.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// The title of a process.
    pub fn title_of(&self, id: ProcId) -> Option<&str> {
        self.titles.get(&id).map(String::as_str)
    }

    /// `title[instance]` of a peer, for log lines.
    pub fn name_of(&self, peer: Peer) -> String {
        match self.title_of(peer.proc) {
            Some(t) => format!("{t}[{}]", peer.instance),
            None => peer.to_string(),
        }
    }

    /// Instances of a process (0 if unknown).
    pub fn instances(&self, id: ProcId) -> u32 {
        self.layout
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(0, |(_, n)| *n)
    }

    /// Connected peers, sorted.
    pub fn peers(&self) -> Vec<Peer> {
        self.channels.keys().copied().collect()
    }

    /// Whether there is a channel to `peer`.
    pub fn is_connected(&self, peer: Peer) -> bool {
        self.channels.contains_key(&peer)
    }

    /// The channel to `peer`.
    pub fn channel(&self, peer: Peer) -> Option<&Channel> {
        self.channels.get(&peer).map(Link::channel)
    }

    /// The link to `peer`, for the event loop's waiter.
    pub(crate) fn link_mut(&mut self, peer: Peer) -> Option<&mut Link> {
        self.channels.get_mut(&peer)
    }

    /// Hands every channel to tokio (imsg-io's `AsyncChannel`); those already
    /// driven are left as they are. Must run inside a runtime with I/O and time.
    #[cfg(feature = "tokio")]
    pub(crate) fn drive_with_tokio(&mut self) -> Result<(), Error> {
        let plain: Vec<Peer> = self
            .channels
            .iter()
            .filter(|(_, l)| matches!(l, Link::Plain(_)))
            .map(|(p, _)| *p)
            .collect();
        for peer in plain {
            if let Some(link) = self.channels.remove(&peer) {
                let driven = link.driven().map_err(Error::os("tokio AsyncChannel"))?;
                self.channels.insert(peer, driven);
            }
        }
        Ok(())
    }

    /// Whether the readiness barrier has passed in this process.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether the handler asked to shut down.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown
    }

    pub(crate) fn timers(&mut self) -> &mut Timers {
        &mut self.timers
    }

    /// When the earliest timer a handler armed is due.
    pub(crate) fn next_deadline(&self) -> Option<std::time::Instant> {
        self.timers.next_deadline()
    }

    /// Calls [`Handler::timer`] for every timer due now. [`Flow::Shutdown`] if
    /// the handler asked for it.
    pub(crate) fn fire_timers(&mut self, handler: &mut dyn Handler) -> Result<Flow, Error> {
        for t in self.timers.take_due(std::time::Instant::now()) {
            let mut ctx = Context::new(self);
            handler.timer(&mut ctx, t).map_err(Error::App)?;
            if self.shutdown {
                return Ok(Flow::Shutdown);
            }
        }
        Ok(Flow::Continue)
    }

    pub(crate) fn watches_ref(&self) -> &Watches {
        &self.watches
    }

    pub(crate) fn watches(&mut self) -> &mut Watches {
        &mut self.watches
    }

    /// Calls [`Handler::io`] for `w` if it is still watched and something it
    /// waits for is ready. [`Flow::Shutdown`] if the handler asked for it.
    pub(crate) fn watch_ready(
        &mut self,
        w: Watch,
        ready: Ready,
        handler: &mut dyn Handler,
    ) -> Result<Flow, Error> {
        let Some(e) = self.watches.entries.get(&w) else {
            return Ok(Flow::Continue);
        };
        let ready = Ready {
            readable: ready.readable && e.interest.readable,
            writable: ready.writable && e.interest.writable,
        };
        if ready == Ready::default() {
            return Ok(Flow::Continue);
        }
        let mut ctx = Context::new(self);
        handler.io(&mut ctx, w, ready).map_err(Error::App)?;
        Ok(if self.shutdown {
            Flow::Shutdown
        } else {
            Flow::Continue
        })
    }

    pub(crate) fn request_shutdown(&mut self) {
        self.shutdown = true;
    }

    /// Application message counts per peer.
    pub fn counts(&self) -> &BTreeMap<Peer, Counts> {
        &self.counts
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn set_outbox(&mut self, outbox: Option<crate::outbox::Outbox>) {
        self.outbox = outbox;
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn outbox(&self) -> Option<crate::outbox::Outbox> {
        self.outbox.clone()
    }

    pub(crate) fn child_pid(&self, peer: Peer) -> Option<u32> {
        self.children.pid_of(peer)
    }

    /// In the parent: the children it started (the one registry of their pids).
    pub(crate) fn children_mut(&mut self) -> &mut Children {
        &mut self.children
    }

    /// Makes `fd` (a connected `AF_UNIX` stream socket) the channel to `peer`; it is
    /// switched to non-blocking mode. A channel to `peer` that exists already is an
    /// error and `fd` is closed.
    pub fn attach(&mut self, peer: Peer, fd: OwnedFd) -> Result<(), Error> {
        if self.channels.contains_key(&peer) {
            return Err(Error::Protocol {
                from: peer,
                error: ProtocolError::Repeated {
                    ty: control::PROCFD,
                },
            });
        }
        set_nonblocking(fd.as_fd())?;
        let ch = Channel::new(fd, self.config.clone())
            .map_err(|error| Error::Channel { peer, error })?;
        self.channels.insert(peer, Link::Plain(ch));
        Ok(())
    }

    /// Closes the channel to `peer` (dropping what is queued on it).
    pub fn detach(&mut self, peer: Peer) -> bool {
        self.channels.remove(&peer).is_some()
    }

    /// Closes every channel.
    pub fn close_all(&mut self) {
        self.channels.clear();
        self.watches.entries.clear();
    }

    /// Peers whose channel the event loop should poll: (peer, read?, write?). Before
    /// the mesh is ready a child reads only from the parent, so that no application
    /// message is dispatched before [`Handler::ready`].
    pub fn interest(&self) -> Vec<(Peer, bool, bool)> {
        let mut out = Vec::new();
        self.interest_into(&mut out);
        out
    }

    /// [`interest`](Mesh::interest) into `out` (cleared first), so an event loop can
    /// keep one buffer across turns.
    pub(crate) fn interest_into(&self, out: &mut Vec<(Peer, bool, bool)>) {
        let child = self.me.peer.proc != ProcId::PARENT;
        out.clear();
        out.extend(
            self.channels
                .iter()
                .map(|(&p, link)| {
                    let read = self.phase == Phase::Ready || !child || p == Peer::PARENT;
                    (p, read, link.channel().queue_len() > 0)
                })
                // A channel left out of the set is not polled at all: poll(2)
                // reports POLLHUP even for an empty event mask, which would spin.
                .filter(|&(_, r, w)| r || w),
        );
    }

    /// Writes what is queued on the channel to `peer` (one non-blocking attempt).
    pub fn write(&mut self, peer: Peer) -> Result<Flow, Error> {
        let Some(link) = self.channels.get_mut(&peer) else {
            return Ok(Flow::Continue);
        };
        let wrote = link.channel_mut().write().map(drop);
        Mesh::wrote(peer, wrote)
    }

    /// What a write to `peer` came to: the peer gone ends the loop.
    pub(crate) fn wrote(peer: Peer, wrote: Result<(), imsg_io::Error>) -> Result<Flow, Error> {
        match wrote {
            Ok(()) => Ok(Flow::Continue),
            Err(imsg_io::Error::PeerClosed) => Ok(Flow::Closed(peer)),
            Err(error) => Err(Error::Channel { peer, error }),
        }
    }

    /// Reads once from the channel to `peer` and dispatches every complete message
    /// received. Returns [`Flow::Closed`] at end of file (after dispatching what came
    /// before it), [`Flow::Shutdown`] if the handler asked for it.
    pub fn receive(&mut self, peer: Peer, handler: &mut dyn Handler) -> Result<Flow, Error> {
        let Some(link) = self.channels.get_mut(&peer) else {
            return Ok(Flow::Continue);
        };
        let read = link.channel_mut().read();
        self.received(peer, read, handler)
    }

    /// Dispatches what a read from `peer` (made by the event loop's waiter)
    /// brought: every complete message buffered, then [`Flow::Closed`] at end of
    /// file. Descriptors lost to the descriptor limit are logged, not fatal.
    pub(crate) fn received(
        &mut self,
        peer: Peer,
        read: Result<ReadStatus, imsg_io::Error>,
        handler: &mut dyn Handler,
    ) -> Result<Flow, Error> {
        let status = match read {
            Ok(s) => s,
            Err(imsg_io::Error::DescriptorsLost) => {
                log::warn!("descriptors from {peer} were lost (out of descriptors?)");
                ReadStatus::Read(0)
            }
            Err(imsg_io::Error::UnexpectedEof { buffered }) => {
                log::warn!("{peer} closed its channel in the middle of a frame ({buffered} bytes)");
                ReadStatus::Eof
            }
            Err(error) => return Err(Error::Channel { peer, error }),
        };
        // The slot is moved out while messages are dispatched (the handler gets the
        // whole mesh) and put back after, whatever happened.
        let mut scratch = std::mem::take(&mut self.scratch);
        let drained = self.dispatch_buffered(peer, &mut scratch, handler);
        self.scratch = scratch;
        if drained? {
            return Ok(Flow::Shutdown);
        }
        Ok(match status {
            ReadStatus::Eof => Flow::Closed(peer),
            _ => Flow::Continue,
        })
    }

    /// Dispatches every complete message buffered on the channel to `peer`, each
    /// taken into `slot` (whose buffer is reused). Complete frames before an end of
    /// file are still dispatched. Answers whether the handler asked for shutdown.
    fn dispatch_buffered(
        &mut self,
        peer: Peer,
        slot: &mut OwnedMessage,
        handler: &mut dyn Handler,
    ) -> Result<bool, Error> {
        while let Some(link) = self.channels.get_mut(&peer) {
            match link.channel_mut().get_into(slot) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => return Err(Error::Channel { peer, error }),
            }
            let done = self.dispatch_in(peer, slot, handler);
            // A descriptor the handler did not take is closed now, as it would be
            // with the message, not when the slot is next overwritten.
            drop(slot.take_fd());
            done?;
            if self.shutdown {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Handles one message that arrived on the channel to `from`: framework messages
    /// here, application messages through `handler`. Never exits; a protocol breach
    /// is an [`Error::Protocol`].
    pub fn dispatch(
        &mut self,
        from: Peer,
        mut msg: OwnedMessage,
        handler: &mut dyn Handler,
    ) -> Result<(), Error> {
        self.dispatch_in(from, &mut msg, handler)
    }

    /// [`dispatch`](Mesh::dispatch) of a message the caller keeps (its buffer and
    /// any descriptor the handler did not take stay in `msg`).
    fn dispatch_in(
        &mut self,
        from: Peer,
        msg: &mut OwnedMessage,
        handler: &mut dyn Handler,
    ) -> Result<(), Error> {
        let ty = msg.msg_type();
        let proto = |error| Error::Protocol { from, error };
        if !control::is_control(ty) {
            if self.phase != Phase::Ready {
                return Err(proto(ProtocolError::BeforeReady { ty }));
            }
            self.counts.entry(from).or_default().received += 1;
            // Moved in and back out: no copy, no allocation.
            let mut received = Received::new(from, std::mem::take(msg));
            let mut ctx = Context::new(self);
            let handled = handler.dispatch(&mut ctx, &mut received);
            *msg = received.into_message();
            return match handled {
                Ok(Handled::Yes) => Ok(()),
                Ok(Handled::No) => Err(proto(ProtocolError::Unhandled { ty })),
                Err(e) => Err(Error::App(e)),
            };
        }
        let is_parent = self.me.peer.proc == ProcId::PARENT;
        let from_parent = from == Peer::PARENT && !is_parent;
        match ty {
            control::VERBOSE => {
                let v = control::decode_verbose(msg.payload())
                    .map_err(|e| proto(ProtocolError::Payload(e)))?;
                log::set_max_level(control::level_for_verbose(v));
                log::debug!("log verbosity {v}");
                Ok(())
            }
            control::PROCFD if from_parent => {
                let peer = control::decode_procfd(msg.payload())
                    .map_err(|e| proto(ProtocolError::Payload(e)))?;
                let fd = msg.take_fd().ok_or(proto(ProtocolError::MissingFd))?;
                match self.expected.accept(peer, self.phase) {
                    Ok(()) => self.attach(peer, fd),
                    Err(refusal) => {
                        // proc.c's proc_accept: close it and carry on.
                        log::warn!("{refusal}: closed");
                        drop(fd);
                        Ok(())
                    }
                }
            }
            control::PROCREADY if from_parent => {
                if self.phase != Phase::Connecting {
                    return Err(proto(ProtocolError::Repeated { ty }));
                }
                let parent = control::decode_layout(msg.payload())
                    .map_err(|e| proto(ProtocolError::Payload(e)))?;
                if parent != self.layout {
                    return Err(proto(ProtocolError::LayoutMismatch {
                        parent,
                        mine: self.layout.clone(),
                    }));
                }
                if !self.expected.is_complete() {
                    return Err(proto(ProtocolError::MeshIncomplete {
                        missing: self.expected.missing(),
                    }));
                }
                self.phase = Phase::Acked;
                self.send_control(ProcId::PARENT, Target::All, control::PROCREADY, &[])?;
                Ok(())
            }
            control::READY if from_parent => {
                if self.phase != Phase::Acked {
                    return Err(proto(ProtocolError::Repeated { ty }));
                }
                self.become_ready(handler)
            }
            control::PROCREADY if is_parent => {
                let last = self
                    .barrier
                    .ack(from)
                    .map_err(|e| proto(ProtocolError::Ack(e)))?;
                if last {
                    self.announce_ready(handler)?;
                }
                Ok(())
            }
            control::PROCFD | control::PROCREADY | control::READY => {
                Err(proto(ProtocolError::WrongSender { ty }))
            }
            _ => Err(proto(ProtocolError::UnknownControl { ty })),
        }
    }

    /// In the parent: if every child has acknowledged (at once, for a table without
    /// children), tell them all with `READY` and call the parent's own
    /// [`Handler::ready`].
    pub fn announce_ready(&mut self, handler: &mut dyn Handler) -> Result<(), Error> {
        if self.phase == Phase::Ready || !self.barrier.is_complete() {
            return Ok(());
        }
        for peer in self.peers() {
            self.send_control(
                peer.proc,
                Target::Instance(peer.instance),
                control::READY,
                &[],
            )?;
        }
        self.become_ready(handler)
    }

    fn become_ready(&mut self, handler: &mut dyn Handler) -> Result<(), Error> {
        self.phase = Phase::Ready;
        log::debug!("mesh ready: {} channels", self.channels.len());
        let mut ctx = Context::new(self);
        handler.ready(&mut ctx).map_err(Error::App)
    }

    /// The instances of `to` that `target` names, each checked to be connected.
    fn resolve(&self, to: ProcId, target: Target) -> Result<std::ops::Range<u32>, Error> {
        if !self.titles.contains_key(&to) {
            return Err(Error::UnknownProcess(to));
        }
        let range = route::range(target, self.instances(to))?;
        if let Some(i) = range
            .clone()
            .find(|&i| !self.channels.contains_key(&Peer::new(to, i)))
        {
            return Err(Error::NotConnected(Peer::new(to, i)));
        }
        Ok(range)
    }

    pub(crate) fn send_control(
        &mut self,
        to: ProcId,
        target: Target,
        ty: u32,
        payload: &[u8],
    ) -> Result<usize, Error> {
        self.queue(to, target, ty, u32::MAX, None, &[payload])
    }

    /// Queues an application message to every instance of `to` in `target`; see
    /// [`Context::compose_fd`] for how a descriptor is shared.
    pub(crate) fn send(
        &mut self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        fd: Option<OwnedFd>,
        parts: &[&[u8]],
    ) -> Result<usize, Error> {
        if control::is_control(ty) {
            return Err(Error::ReservedType(ty));
        }
        let len = parts
            .iter()
            .fold(imsg_codec::HEADER_SIZE, |n, p| n.saturating_add(p.len()));
        let fd = self.room(to, target, len, fd)?;
        let n = self.queue(to, target, ty, peerid, fd, parts)?;
        for i in route::range(target, self.instances(to))? {
            self.counts.entry(Peer::new(to, i)).or_default().sent += 1;
        }
        Ok(n)
    }

    /// Checks that a message of `len` bytes fits under the high-water mark of every
    /// queue it would join (all or nothing, like the descriptor duplicates in
    /// [`queue`](Mesh::queue)): an empty queue takes any message. On refusal `fd`
    /// comes back inside the error.
    fn room(
        &self,
        to: ProcId,
        target: Target,
        len: usize,
        fd: Option<OwnedFd>,
    ) -> Result<Option<OwnedFd>, Error> {
        for i in self.resolve(to, target)? {
            let peer = Peer::new(to, i);
            let (Some(ch), Some(limit)) = (
                self.channels.get(&peer),
                self.limits.channel(self.me.peer, peer),
            ) else {
                continue;
            };
            let queued = ch.channel().queued_bytes();
            if queued > 0 && queued.saturating_add(len) > limit {
                return Err(Error::Channel {
                    peer,
                    error: imsg_io::Error::QueueFull { fd, queued, limit },
                });
            }
        }
        Ok(fd)
    }

    /// Queues a message a task put in the outbox, after those still held. A message
    /// whose channel is at its high-water mark is held (descriptor included) until
    /// [`deliver_held`](Mesh::deliver_held) finds room for it; the outbox counts
    /// it until then, so its tasks meet their own limit.
    #[cfg(feature = "tokio")]
    pub(crate) fn send_outgoing(&mut self, m: crate::outbox::Outgoing) -> Result<(), Error> {
        self.held.push_back(m);
        self.deliver_held()
    }

    /// Queues held outbox messages in order until one still finds its channel full.
    #[cfg(feature = "tokio")]
    pub(crate) fn deliver_held(&mut self) -> Result<(), Error> {
        while let Some(m) = self.held.pop_front() {
            let len = m.payload.len();
            match self.send(m.to, m.target, m.ty, m.peerid, m.fd, &[&m.payload]) {
                Ok(_) => {
                    if let Some(o) = &self.outbox {
                        o.taken(len);
                    }
                }
                Err(Error::Channel {
                    error: imsg_io::Error::QueueFull { fd, .. },
                    ..
                }) => {
                    self.held.push_front(crate::outbox::Outgoing { fd, ..m });
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether outbox messages wait for room (the loop then reads no more of
    /// the outbox).
    #[cfg(feature = "tokio")]
    pub(crate) fn holds_outgoing(&self) -> bool {
        !self.held.is_empty()
    }

    /// The outbox's high-water mark.
    #[cfg(feature = "tokio")]
    pub(crate) fn outbox_limit(&self) -> Option<usize> {
        self.limits.outbox
    }

    fn queue(
        &mut self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        fd: Option<OwnedFd>,
        parts: &[&[u8]],
    ) -> Result<usize, Error> {
        let range = self.resolve(to, target)?;
        let pid = pid_for_instance(self.me.peer.instance);
        let count = range.len();
        // Every duplicate is made before anything is queued: running out of
        // descriptors half way must not leave some instances with the message
        // and others without (the duplicates made are closed on the way out).
        // Without a descriptor nothing is allocated.
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Some(f) = fd {
            fds.reserve_exact(count);
            for _ in 1..count {
                fds.push(f.try_clone().map_err(Error::os("dup"))?);
            }
            fds.push(f);
        }
        let mut fds = fds.into_iter();
        for i in range {
            let peer = Peer::new(to, i);
            let ch = self
                .channels
                .get_mut(&peer)
                .ok_or(Error::NotConnected(peer))?
                .channel_mut();
            ch.composev(ty, peerid, pid, fds.next(), parts)
                .map_err(|error| Error::Channel { peer, error })?;
        }
        Ok(count)
    }

    /// Queues a `PROCFD` to child `to` giving it `fd`, its channel to `about`.
    pub(crate) fn send_procfd(&mut self, to: Peer, about: Peer, fd: OwnedFd) -> Result<(), Error> {
        let payload = control::encode_procfd(about);
        self.queue(
            to.proc,
            Target::Instance(to.instance),
            control::PROCFD,
            u32::MAX,
            Some(fd),
            &[&payload],
        )
        .map(|_| ())
    }

    /// Writes everything queued to (`to`, `target`) now.
    pub fn flush(&mut self, to: ProcId, target: Target) -> Result<(), Error> {
        for i in self.resolve(to, target)? {
            let peer = Peer::new(to, i);
            if let Some(link) = self.channels.get_mut(&peer) {
                link.channel_mut()
                    .flush()
                    .map_err(|error| Error::Channel { peer, error })?;
            }
        }
        Ok(())
    }

    /// One non-blocking write attempt on every channel with something queued
    /// (used at shutdown, where waiting on a peer could hang).
    pub fn write_all_once(&mut self) {
        for link in self.channels.values_mut() {
            let ch = link.channel_mut();
            while ch.queue_len() > 0 {
                match ch.write() {
                    Ok(imsg_io::WriteStatus::Wrote(n)) if n > 0 => continue,
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ProcSpec;
    use std::os::unix::net::UnixStream;

    const SERVER: ProcId = ProcId(1);
    const DUP_CHILD_ENV: &str = "PRIVSEP_MESH_DUP_FAILURE_CHILD";

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
    }

    /// The parent's mesh with three server instances attached, and the servers'
    /// ends of those channels.
    fn parent_with_three_servers() -> (Mesh, Vec<UnixStream>) {
        let table = ProcTable::new("t")
            .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
            .with_proc(ProcSpec::new(SERVER, "server").with_instances(3));
        let me = Identity {
            daemon: "t".into(),
            peer: Peer::PARENT,
            title: "parent".into(),
            pid: std::process::id(),
        };
        let mut mesh = Mesh::new(&table, me).unwrap();
        let mut ends = Vec::new();
        for i in 0..3 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            mesh.attach(Peer::new(SERVER, i), ours.into()).unwrap();
            ends.push(theirs);
        }
        (mesh, ends)
    }

    fn queued(mesh: &Mesh) -> Vec<usize> {
        (0..3)
            .map(|i| mesh.channel(Peer::new(SERVER, i)).unwrap().queue_len())
            .collect()
    }

    /// Run in a child process by `broadcast_with_a_descriptor_is_all_or_nothing`
    /// (it lowers the descriptor limit); does nothing otherwise.
    #[test]
    fn broadcast_dup_failure_child_entry() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        if std::env::var_os(DUP_CHILD_ENV).is_none() {
            return;
        }
        let (mut mesh, _ends) = parent_with_three_servers();
        let devnull = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let fd = devnull();
        let before = open_fds();
        // Lowest free descriptor number: everything below it is in use. A limit
        // one above it leaves one free slot: the first duplicate of `fd` can be
        // made, the second cannot.
        let lowest = rustix::io::fcntl_dupfd_cloexec(&fd, 0).unwrap();
        let n = std::os::fd::AsRawFd::as_raw_fd(&lowest) as u64;
        drop(lowest);
        let old = getrlimit(Resource::Nofile);
        let one_free = Rlimit {
            current: Some(n + 1),
            maximum: old.maximum,
        };
        setrlimit(Resource::Nofile, one_free).unwrap();
        let r = mesh.send(SERVER, Target::All, 100, 7, Some(fd), &[b"x"]);
        setrlimit(Resource::Nofile, old).unwrap();

        assert!(
            matches!(r, Err(Error::Os { what: "dup", .. })),
            "expected a failed dup: {r:?}"
        );
        assert_eq!(queued(&mesh), [0, 0, 0], "nothing queued to anybody");
        assert!(mesh.counts().values().all(|c| c.sent == 0));
        assert_eq!(open_fds(), before - 1, "the descriptor and its dups closed");

        // With descriptors to spare the same broadcast reaches all three.
        assert_eq!(
            mesh.send(SERVER, Target::All, 100, 7, Some(devnull()), &[b"x"])
                .unwrap(),
            3
        );
        assert_eq!(queued(&mesh), [1, 1, 1]);
        assert!(mesh.counts().values().all(|c| c.sent == 1));
        println!("dup-failure child: all or nothing");
    }

    /// What [`Recorder`] saw of one dispatched message.
    #[derive(Debug, PartialEq)]
    struct Seen {
        ty: u32,
        payload: Vec<u8>,
        buffer: usize,
        fd: bool,
    }

    #[derive(Default)]
    struct Recorder(Vec<Seen>);

    impl Handler for Recorder {
        fn dispatch(
            &mut self,
            _ctx: &mut Context<'_>,
            msg: &mut Received,
        ) -> Result<Handled, crate::handler::AppError> {
            self.0.push(Seen {
                ty: msg.msg_type(),
                payload: msg.payload().to_vec(),
                buffer: msg.payload().as_ptr() as usize,
                fd: msg.fd().is_some(),
            });
            Ok(Handled::Yes)
        }
    }

    /// Every received message goes through the one scratch slot: the handler sees
    /// the same payload buffer each time (no allocation per message), and a
    /// descriptor it leaves is closed right after its dispatch.
    #[test]
    fn receive_reuses_one_buffer_and_closes_untaken_descriptors() {
        let (mut mesh, mut ends) = parent_with_three_servers();
        mesh.phase = Phase::Ready;
        let from = Peer::new(SERVER, 1);
        let mut server = Channel::new(ends.remove(1), mesh.config.clone()).unwrap();
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        rustix::fs::fcntl_setfl(&pipe_r, rustix::fs::OFlags::NONBLOCK).unwrap();
        server.compose(1, 0, 0, Some(pipe_w), &[1; 200]).unwrap();
        server.compose(2, 0, 0, None, &[2; 50]).unwrap();
        server.compose(3, 0, 0, None, &[3; 10]).unwrap();
        server.flush().unwrap();

        let mut rec = Recorder::default();
        for _ in 0..100 {
            if rec.0.len() == 3 {
                break;
            }
            assert_eq!(mesh.receive(from, &mut rec).unwrap(), Flow::Continue);
        }
        let buffer = rec.0[0].buffer;
        let seen = |ty: u8, len: usize, fd: bool| Seen {
            ty: ty.into(),
            payload: vec![ty; len],
            buffer,
            fd,
        };
        assert_eq!(
            rec.0,
            [seen(1, 200, true), seen(2, 50, false), seen(3, 10, false)]
        );
        // The write end the handler did not take is closed: end of file.
        assert_eq!(rustix::io::read(&pipe_r, &mut [0u8; 1]).unwrap(), 0);
        assert!(mesh.scratch.fd().is_none());
        assert!(mesh.scratch.payload_capacity() >= 200);

        // A later receive call reuses the same slot, and closes an untaken
        // descriptor of its last message at once (not at the next overwrite).
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        rustix::fs::fcntl_setfl(&pipe_r, rustix::fs::OFlags::NONBLOCK).unwrap();
        server.compose(4, 0, 0, Some(pipe_w), &[4; 100]).unwrap();
        server.flush().unwrap();
        for _ in 0..100 {
            if rec.0.len() == 4 {
                break;
            }
            assert_eq!(mesh.receive(from, &mut rec).unwrap(), Flow::Continue);
        }
        assert_eq!(rec.0[3], seen(4, 100, true));
        assert_eq!(rustix::io::read(&pipe_r, &mut [0u8; 1]).unwrap(), 0);
        assert!(mesh.scratch.fd().is_none());
    }

    /// A broadcast that would take one instance's queue past its high-water mark
    /// queues nothing to anybody and hands the descriptor back; the framework's
    /// own messages are not refused.
    #[test]
    fn queue_limit_is_all_or_nothing_and_spares_control_messages() {
        let (mut mesh, _ends) = parent_with_three_servers();
        mesh.limits.parent_child = Some(1000);
        mesh.send(SERVER, Target::Instance(1), 100, 7, None, &[&[0; 600]])
            .unwrap();
        let before = queued(&mesh);
        let (r, w) = rustix::pipe::pipe().unwrap();
        match mesh.send(SERVER, Target::All, 100, 7, Some(w), &[&[0; 500]]) {
            Err(e @ Error::Channel { peer, .. }) if e.is_queue_full() => {
                assert_eq!(peer, Peer::new(SERVER, 1));
                let Error::Channel {
                    error: imsg_io::Error::QueueFull { fd, queued, limit },
                    ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!((queued, limit), (616, 1000));
                assert!(fd.is_some(), "the descriptor comes back");
            }
            other => panic!("{other:?}"),
        }
        // The write end was closed with the error: the read end sees end of file.
        assert_eq!(rustix::io::read(&r, &mut [0u8; 1]).unwrap(), 0);
        assert_eq!(queued(&mesh), before, "nothing queued to anybody");
        assert_eq!(mesh.counts()[&Peer::new(SERVER, 1)].sent, 1);
        // An empty queue takes any one message; control messages pass the mark.
        mesh.send(SERVER, Target::Instance(0), 100, 7, None, &[&[0; 5000]])
            .unwrap();
        mesh.send_control(SERVER, Target::All, control::VERBOSE, &[0; 4])
            .unwrap();
        assert_eq!(queued(&mesh), [2, 2, 1]);
    }

    #[test]
    fn broadcast_with_a_descriptor_is_all_or_nothing() {
        crate::child_test::run_test_in_child(
            "mesh::tests::broadcast_dup_failure_child_entry",
            DUP_CHILD_ENV,
            "dup-failure child: all or nothing",
        );
    }
}
