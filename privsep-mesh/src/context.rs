//! [`Context`]: what a handler can do while it runs — send to (process, target),
//! forward, flush, read its identity, ask to shut down.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use crate::control;
use crate::error::Error;
use crate::handler::{Identity, Received};
use crate::mesh::{Counts, Mesh};
use crate::route::{Peer, Target};
use crate::table::ProcId;

/// The peer id proc.c's `proc_compose` uses (`-1`).
pub const NO_PEERID: u32 = u32::MAX;

/// A handler's view of its process's mesh.
///
/// Every send names a process and a [`Target`]; `Target::All` reaches every instance
/// with one call. Sends are queued: the event loop writes them when the sockets can
/// take them, or [`flush`](Context::flush) writes them now. A send to a process this
/// one has no channel to fails with [`Error::NotConnected`] before anything is
/// queued.
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
    /// (`None` in the built-in `poll(2)` loop). See [`crate::tokio_run`].
    #[cfg(feature = "tokio")]
    pub fn outbox(&self) -> Option<crate::tokio_run::Outbox> {
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

    /// Leaves the event loop after the current message: the shutdown hook runs, the
    /// channels close, and the peers see end of file. In the parent this brings the
    /// whole mesh down.
    pub fn shutdown(&mut self) {
        self.mesh.request_shutdown();
    }
}
