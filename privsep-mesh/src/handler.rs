//! What an application plugs into a process: its [`Handler`] (dispatch callback,
//! readiness and shutdown hooks), the [`Identity`] it runs as, the [`Received`]
//! messages it is handed, and the [`Context`] through which it acts while it runs
//! (send to (process, target), forward, flush, read its identity, ask to shut
//! down). The trait and the context are one module: each names the other.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use imsg_io::OwnedMessage;

use crate::control;
pub use crate::error::AppError;
use crate::error::Error;
use crate::mesh::{Counts, Mesh};
pub use crate::route::Identity;
use crate::route::{instance_from_pid, Peer, ProcId, Target};
use crate::signals::Signal;
use crate::timer::Timer;
use crate::watch::{Ready, Watch};

/// Whether a handler took care of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The message was understood.
    Yes,
    /// The handler has nothing for this type: a protocol error, as proc.c's
    /// `fatalx("got invalid imsg")` — the process logs it and ends non-zero.
    No,
}

/// The behaviour of one process: proc.c's `p_cb` dispatch callback, plus the
/// readiness and shutdown hooks. Every method has a default; the defaults accept no
/// application message (proc.c's `proc_dispatch_null`).
///
/// A handler runs in one thread of one process; it is built by the process's start
/// function ([`crate::Privsep::with_start`]) after privileges were dropped.
pub trait Handler {
    /// Called once, when every channel of the whole mesh is connected (every child
    /// has acknowledged the readiness barrier). From here on messages can be sent to
    /// any connected peer, and [`dispatch`](Handler::dispatch) is never called before.
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let _ = ctx;
        Ok(())
    }

    /// One application message (type below [`crate::control::CONTROL_BASE`]) from
    /// peer [`Received::from`].
    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        let _ = (ctx, msg);
        Ok(Handled::No)
    }

    /// A signal the process asked for with [`crate::ProcSpec::signals`].
    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        let _ = (ctx, signal);
        Ok(())
    }

    /// A timer this process armed ([`Context::timer_after`],
    /// [`Context::timer_every`]) is due.
    fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), AppError> {
        let _ = (ctx, timer);
        Ok(())
    }

    /// A descriptor this process watches ([`Context::watch`]) is ready for what
    /// `ready` says. Readiness is level-triggered: what is left unread is
    /// reported again.
    fn io(&mut self, ctx: &mut Context<'_>, watch: Watch, ready: Ready) -> Result<(), AppError> {
        let _ = (ctx, watch, ready);
        Ok(())
    }

    /// The process is leaving its event loop (end of file on a channel, SIGTERM or
    /// SIGINT, or [`Context::shutdown`]); proc.c's `p_shutdown`. Messages composed
    /// here get one non-blocking write attempt before the channels close.
    fn shutdown(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }
}

/// The handler of a process without a start function: every application message is
/// a protocol error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullHandler;

impl Handler for NullHandler {}

/// A message received on one of the process's channels.
#[derive(Debug)]
pub struct Received {
    from: Peer,
    msg: OwnedMessage,
}

impl Received {
    /// Wraps a message that arrived on the channel to `from`.
    pub(crate) fn new(from: Peer, msg: OwnedMessage) -> Received {
        Received { from, msg }
    }

    /// The peer whose channel it arrived on.
    pub fn from(&self) -> Peer {
        self.from
    }

    /// The sender's instance as read from the pid field (for a forwarded message
    /// this is the forwarder's, as in proc.c).
    pub fn sender_instance(&self) -> Option<u32> {
        instance_from_pid(self.msg.pid())
    }

    /// The underlying message, moved out (with its descriptor, if not taken).
    pub fn into_message(self) -> OwnedMessage {
        self.msg
    }
}

/// The message's own accessors (`msg_type`, `peerid`, `pid`, `payload`, `reader`,
/// `flagged_fd`, `fd`, `take_fd`) are [`OwnedMessage`]'s.
impl std::ops::Deref for Received {
    type Target = OwnedMessage;
    fn deref(&self) -> &OwnedMessage {
        &self.msg
    }
}

impl std::ops::DerefMut for Received {
    fn deref_mut(&mut self) -> &mut OwnedMessage {
        &mut self.msg
    }
}

/// The peer id proc.c's `proc_compose` uses (`-1`).
pub const NO_PEERID: u32 = u32::MAX;

/// A handler's view of its process's mesh.
///
/// Every send names a process and a [`Target`]; `Target::All` reaches every instance
/// with one call. Sends are queued: the event loop writes them when the sockets can
/// take them, or [`flush`](Context::flush) writes them now. A send to a process this
/// one has no channel to fails with [`Error::NotConnected`] before anything is
/// queued.
///
/// Queues are bounded ([`QueueKind`](crate::QueueKind)): a send that would
/// take a peer's queue past its high-water mark (a peer that does not read) is
/// refused, [`Error::is_queue_full`] true, with nothing queued to any instance and
/// the descriptor handed back in the error. The handler decides: retry from a
/// timer, stop taking work from its own clients, or give up on the peer. Returning
/// the error with `?` ends the process, as any handler error does.
pub struct Context<'a> {
    mesh: &'a mut Mesh,
}

impl<'a> Context<'a> {
    pub(crate) fn new(mesh: &'a mut Mesh) -> Context<'a> {
        Context { mesh }
    }

    /// Who this process is.
    pub fn me(&self) -> &Identity {
        self.mesh.identity()
    }

    /// The title of a process of the table.
    pub fn title_of(&self, id: ProcId) -> Option<&str> {
        self.mesh.title_of(id)
    }

    /// How many instances a process has (0 for an unknown id).
    pub fn instances(&self, id: ProcId) -> u32 {
        self.mesh.instances(id)
    }

    /// The peers this process has a channel to, sorted.
    pub fn peers(&self) -> Vec<Peer> {
        self.mesh.peers()
    }

    /// Whether this process has a channel to `peer`.
    pub fn is_connected(&self, peer: Peer) -> bool {
        self.mesh.is_connected(peer)
    }

    /// In the parent: the pid of a child instance.
    pub fn child_pid(&self, peer: Peer) -> Option<u32> {
        self.mesh.child_pid(peer)
    }

    /// A handle for tasks spawned in a tokio-run process to send into the mesh
    /// (`None` in the built-in `poll(2)` loop). See [`Outbox`](crate::outbox::Outbox).
    #[cfg(feature = "tokio")]
    pub fn outbox(&self) -> Option<crate::outbox::Outbox> {
        self.mesh.outbox()
    }

    /// Application messages sent to and received from each peer so far.
    pub fn counts(&self) -> &BTreeMap<Peer, Counts> {
        self.mesh.counts()
    }

    /// Queues one message to every instance of `to` in `target`
    /// (`proc_compose_imsg` without a descriptor). Returns how many were queued.
    pub fn compose(
        &mut self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        payload: &[u8],
    ) -> Result<usize, Error> {
        self.mesh.send(to, target, ty, peerid, None, &[payload])
    }

    /// Queues one message to every instance of `to`, peer id [`NO_PEERID`]
    /// (proc.c's `proc_compose`).
    pub fn compose_all(&mut self, to: ProcId, ty: u32, payload: &[u8]) -> Result<usize, Error> {
        self.compose(to, Target::All, ty, NO_PEERID, payload)
    }

    /// Like [`compose`](Context::compose) with the payload in parts
    /// (`proc_composev_imsg`).
    pub fn composev(
        &mut self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        parts: &[&[u8]],
    ) -> Result<usize, Error> {
        self.mesh.send(to, target, ty, peerid, None, parts)
    }

    /// Queues a message carrying a descriptor. With several instances in `target`,
    /// each gets its own duplicate (`F_DUPFD_CLOEXEC`); `fd` itself goes to the last.
    /// proc.c attaches one descriptor number to every instance instead, which the
    /// first send closes.
    pub fn compose_fd(
        &mut self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        fd: OwnedFd,
        payload: &[u8],
    ) -> Result<usize, Error> {
        self.mesh.send(to, target, ty, peerid, Some(fd), &[payload])
    }

    /// Sends a received message on to (`to`, `target`): same type, peer id and
    /// payload, this process's instance in the pid field, and no descriptor — as
    /// proc.c's `proc_forward_imsg`.
    pub fn forward(&mut self, msg: &Received, to: ProcId, target: Target) -> Result<usize, Error> {
        self.mesh.send(
            to,
            target,
            msg.msg_type(),
            msg.peerid(),
            None,
            &[msg.payload()],
        )
    }

    /// Writes everything queued for (`to`, `target`) now, waiting for the sockets as
    /// needed (`proc_flush_imsg`; it waits with `poll`, it does not spin).
    pub fn flush(&mut self, to: ProcId, target: Target) -> Result<(), Error> {
        self.mesh.flush(to, target)
    }

    /// Sets the log verbosity of (`to`, `target`) (proc.c's `IMSG_CTL_VERBOSE`,
    /// see [`control::level_for_verbose`]).
    pub fn set_verbose(&mut self, to: ProcId, target: Target, level: i32) -> Result<usize, Error> {
        self.mesh.send_control(
            to,
            target,
            control::VERBOSE,
            &control::encode_verbose(level),
        )
    }

    /// Arms a one-shot timer: [`Handler::timer`] is called with it once, `after`
    /// from now (in either loop kind).
    pub fn timer_after(&mut self, after: Duration) -> Timer {
        self.mesh.timers().arm(after, None)
    }

    /// Arms a repeating timer: [`Handler::timer`] is called with it every `period`
    /// (first after one period) until [`cancel_timer`](Context::cancel_timer).
    /// A loop that falls behind skips the missed calls rather than bursting.
    pub fn timer_every(&mut self, period: Duration) -> Timer {
        self.mesh.timers().arm(period, Some(period))
    }

    /// Disarms a timer; false if it was not armed (a one-shot timer that fired).
    pub fn cancel_timer(&mut self, timer: Timer) -> bool {
        self.mesh.timers().cancel(timer)
    }

    /// Hands `io` (a listening socket, a client socket: anything with a
    /// descriptor, set non-blocking by the caller) to the event loop, which
    /// watches it for `interest` in either loop kind and calls [`Handler::io`].
    /// The loop owns it from here: reach it with [`io`](Context::io), close it
    /// with [`unwatch`](Context::unwatch).
    pub fn watch<T: std::os::fd::AsFd + 'static>(&mut self, io: T, interest: Ready) -> Watch {
        self.mesh.watches().add(Box::new(io), interest)
    }

    /// The object watched as `watch`, if it is a `T`.
    pub fn io<T: 'static>(&mut self, watch: Watch) -> Option<&mut T> {
        let e = self.mesh.watches().entries.get_mut(&watch)?;
        e.io.as_any_mut().downcast_mut::<T>()
    }

    /// Changes what `watch` waits for; false if it is not watched.
    pub fn set_interest(&mut self, watch: Watch, interest: Ready) -> bool {
        match self.mesh.watches().entries.get_mut(&watch) {
            Some(e) => {
                e.interest = interest;
                true
            }
            None => false,
        }
    }

    /// In the control process (instance 0 of a process with
    /// [`ProcSpec::with_control_socket`](crate::ProcSpec::with_control_socket)): its control
    /// sockets, created before the privilege drop and listening since, as watches
    /// of [`ControlSocket`](crate::control_socket::ControlSocket)s that wait for
    /// nothing yet; a `control_server::ControlServer`
    /// starts accepting on them. Empty in any other process.
    pub fn control_sockets(&mut self) -> Vec<Watch> {
        self.mesh
            .watches()
            .entries
            .iter_mut()
            .filter_map(|(w, e)| {
                e.io.as_any_mut()
                    .is::<crate::control_socket::ControlSocket>()
                    .then_some(*w)
            })
            .collect()
    }

    /// Stops watching `watch` and closes its object; false if it was not watched.
    pub fn unwatch(&mut self, watch: Watch) -> bool {
        self.mesh.watches().entries.remove(&watch).is_some()
    }

    /// Leaves the event loop after the current message: the shutdown hook runs, the
    /// channels close, and the peers see end of file. In the parent this brings the
    /// whole mesh down.
    pub fn shutdown(&mut self) {
        self.mesh.request_shutdown();
    }
}
