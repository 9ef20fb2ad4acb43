//! [`Outbox`]: how tasks spawned in a tokio-run process send into its mesh.

use std::os::fd::OwnedFd;

use tokio::sync::mpsc::UnboundedSender;

use crate::route::{ProcId, Target};

/// A message a task hands to the loop.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) to: ProcId,
    pub(crate) target: Target,
    pub(crate) ty: u32,
    pub(crate) peerid: u32,
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) payload: Vec<u8>,
}

/// A `Send + Clone` handle for tasks to queue messages into the mesh; the loop
/// sends them in order, as if the handler had composed them. A send the mesh
/// refuses (no such channel, reserved type) ends the process like a handler error.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: UnboundedSender<Outgoing>,
}

/// The loop the outbox fed has ended; the message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGone;

impl std::fmt::Display for LoopGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the mesh's event loop has ended")
    }
}

impl std::error::Error for LoopGone {}

impl Outbox {
    pub(crate) fn new(tx: UnboundedSender<Outgoing>) -> Outbox {
        Outbox { tx }
    }

    /// Queues a message to (`to`, `target`) (see [`Context::compose`](crate::Context::compose)).
    pub fn compose(
        &self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        payload: &[u8],
    ) -> Result<(), LoopGone> {
        self.send(to, target, ty, peerid, None, payload)
    }

    /// Queues a message with a descriptor (see [`Context::compose_fd`](crate::Context::compose_fd)). If the loop
    /// has ended, the descriptor is closed.
    pub fn compose_fd(
        &self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        fd: OwnedFd,
        payload: &[u8],
    ) -> Result<(), LoopGone> {
        self.send(to, target, ty, peerid, Some(fd), payload)
    }

    fn send(
        &self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        fd: Option<OwnedFd>,
        payload: &[u8],
    ) -> Result<(), LoopGone> {
        self.tx
            .send(Outgoing {
                to,
                target,
                ty,
                peerid,
                fd,
                payload: payload.to_vec(),
            })
            .map_err(|_| LoopGone)
    }
}
