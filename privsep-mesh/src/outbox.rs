//! [`Outbox`]: how tasks spawned in a tokio-run process send into its mesh.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
///
/// **Bounded.** The bytes handed to the outbox and not yet queued on a channel are
/// limited ([`QueueKind::Outbox`](crate::QueueKind::Outbox), default
/// `table::OUTBOX_LIMIT`). A message whose channel is at its
/// high-water mark waits in the outbox, and the messages after it wait behind it
/// (order is kept), until that channel has written enough; meanwhile the outbox
/// fills, and past its limit [`compose`](Outbox::compose) refuses with
/// [`OutboxError::QueueFull`]: nothing was queued, the descriptor comes back in the
/// error. Nothing is dropped to make room. What is still in the outbox when the loop
/// ends is not sent, like what is still queued on a channel then.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: UnboundedSender<Outgoing>,
    /// Payload bytes sent by tasks and not yet queued on a channel by the loop.
    pending: Arc<AtomicUsize>,
    limit: Option<usize>,
}

/// Why [`Outbox::compose`] did not take a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutboxError {
    /// The loop the outbox fed has ended; the message was not queued (its
    /// descriptor, if any, was closed).
    LoopGone,
    /// The outbox holds its limit of bytes not yet queued on a channel (a peer does
    /// not read fast enough). Nothing was queued; try again later.
    QueueFull {
        /// The descriptor that was to travel with the message.
        fd: Option<OwnedFd>,
        /// Payload bytes waiting in the outbox.
        queued: usize,
        /// The outbox's limit.
        limit: usize,
    },
}

impl std::fmt::Display for OutboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboxError::LoopGone => f.write_str("the mesh's event loop has ended"),
            OutboxError::QueueFull { queued, limit, .. } => write!(
                f,
                "outbox full: {queued} bytes not yet queued on a channel, limit {limit}; \
                 nothing queued"
            ),
        }
    }
}

impl std::error::Error for OutboxError {}

impl Outbox {
    pub(crate) fn new(tx: UnboundedSender<Outgoing>, limit: Option<usize>) -> Outbox {
        Outbox {
            tx,
            pending: Arc::default(),
            limit,
        }
    }

    /// Queues a message to (`to`, `target`) (see [`Context::compose`](crate::Context::compose)).
    pub fn compose(
        &self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        payload: &[u8],
    ) -> Result<(), OutboxError> {
        self.send(to, target, ty, peerid, None, payload)
    }

    /// Queues a message with a descriptor (see [`Context::compose_fd`](crate::Context::compose_fd)). If the loop
    /// has ended, the descriptor is closed; if the outbox is full, it is handed back.
    pub fn compose_fd(
        &self,
        to: ProcId,
        target: Target,
        ty: u32,
        peerid: u32,
        fd: OwnedFd,
        payload: &[u8],
    ) -> Result<(), OutboxError> {
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
    ) -> Result<(), OutboxError> {
        let len = payload.len();
        // An empty outbox takes any one message, as a channel does.
        let fits = |queued: usize| match self.limit {
            Some(limit) if queued > 0 && queued.saturating_add(len) > limit => None,
            _ => Some(queued.saturating_add(len)),
        };
        // Reserve the bytes with a compare-and-swap loop (what `fetch_update` does;
        // newer Rust deprecates it for a method the supported versions lack).
        let mut queued = self.pending.load(Ordering::Acquire);
        loop {
            let Some(next) = fits(queued) else {
                let limit = self.limit.unwrap_or(usize::MAX);
                return Err(OutboxError::QueueFull { fd, queued, limit });
            };
            match self.pending.compare_exchange_weak(
                queued,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => queued = now,
            }
        }
        let m = Outgoing {
            to,
            target,
            ty,
            peerid,
            fd,
            payload: payload.to_vec(),
        };
        self.tx.send(m).map_err(|_| {
            self.taken(len);
            OutboxError::LoopGone
        })
    }

    /// The loop queued a message of `len` payload bytes on its channel.
    pub(crate) fn taken(&self, len: usize) {
        self.pending.fetch_sub(len, Ordering::AcqRel);
    }
}
