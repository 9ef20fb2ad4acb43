//! Readiness bookkeeping (iked's `PROCREADY` idea), pure.
//!
//! - A child keeps an [`ExpectedChannels`]: the peers the policy says it will get a
//!   `PROCFD` for. A `PROCFD` for a peer outside that set, or a second one for the same
//!   peer, is refused (the caller logs a warning and closes the descriptor). When the
//!   parent's `PROCREADY` arrives every expected peer must be attached; the child then
//!   acknowledges with its own `PROCREADY`.
//! - The parent keeps an [`AckBarrier`] over its child instances; when the last one has
//!   acknowledged, the mesh is connected: the parent's application learns it and every
//!   child is told with `READY`.

use core::fmt;
use std::collections::BTreeSet;

use crate::route::Peer;

/// Why a `PROCFD` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The policy gives this process no channel to that peer.
    Unexpected(Peer),
    /// A channel to that peer is already attached.
    Duplicate(Peer),
    /// The barrier has passed: no channel may be added any more.
    Late(Peer),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unexpected(p) => write!(f, "unexpected descriptor for peer {p}"),
            Refusal::Duplicate(p) => write!(f, "duplicated descriptor for peer {p}"),
            Refusal::Late(p) => write!(f, "descriptor for peer {p} after the mesh was ready"),
        }
    }
}

/// Where a process is in the start-up of its mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Channels arrive (`PROCFD`); in the parent, children acknowledge.
    Connecting,
    /// A child has acknowledged the parent's `PROCREADY` and waits for `READY`:
    /// no channel may be added any more.
    Acked,
    /// The barrier has passed: `ready` ran, application messages flow.
    Ready,
}

/// The channels a child waits for, and those it has.
#[derive(Clone, Debug)]
pub struct ExpectedChannels {
    expected: BTreeSet<Peer>,
    attached: BTreeSet<Peer>,
}

impl ExpectedChannels {
    /// Expects one channel to each of `peers`.
    pub fn new(peers: impl IntoIterator<Item = Peer>) -> ExpectedChannels {
        ExpectedChannels {
            expected: peers.into_iter().collect(),
            attached: BTreeSet::new(),
        }
    }

    /// Records a `PROCFD` for `peer` arriving in `phase`, or says why it must be
    /// refused (after [`Phase::Connecting`] the parent has said it sent them all).
    pub(crate) fn accept(&mut self, peer: Peer, phase: Phase) -> Result<(), Refusal> {
        if phase != Phase::Connecting {
            Err(Refusal::Late(peer))
        } else if !self.expected.contains(&peer) {
            Err(Refusal::Unexpected(peer))
        } else if !self.attached.insert(peer) {
            Err(Refusal::Duplicate(peer))
        } else {
            Ok(())
        }
    }

    /// Every expected channel is attached.
    pub fn is_complete(&self) -> bool {
        self.attached.len() == self.expected.len()
    }

    /// The expected peers not attached yet.
    pub fn missing(&self) -> Vec<Peer> {
        self.expected.difference(&self.attached).copied().collect()
    }
}

/// A second acknowledgement, or one from a process that owes none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// That child is not one the barrier waits for.
    Unexpected(Peer),
    /// That child has acknowledged already.
    Duplicate(Peer),
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::Unexpected(p) => write!(f, "PROCREADY from {p}, which owes none"),
            AckError::Duplicate(p) => write!(f, "second PROCREADY from {p}"),
        }
    }
}

/// The parent's count of children that have not acknowledged yet.
#[derive(Clone, Debug)]
pub struct AckBarrier {
    pending: BTreeSet<Peer>,
    done: BTreeSet<Peer>,
}

impl AckBarrier {
    /// Waits for one acknowledgement from each of `children`.
    pub fn new(children: impl IntoIterator<Item = Peer>) -> AckBarrier {
        AckBarrier {
            pending: children.into_iter().collect(),
            done: BTreeSet::new(),
        }
    }

    /// Records `from`'s acknowledgement; `Ok(true)` when it was the last one.
    pub fn ack(&mut self, from: Peer) -> Result<bool, AckError> {
        if self.pending.remove(&from) {
            self.done.insert(from);
            Ok(self.pending.is_empty())
        } else if self.done.contains(&from) {
            Err(AckError::Duplicate(from))
        } else {
            Err(AckError::Unexpected(from))
        }
    }

    /// Every child has acknowledged (true at once for a table without children).
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ProcId;

    const S0: Peer = Peer::new(ProcId(1), 0);
    const S1: Peer = Peer::new(ProcId(1), 1);
    const L0: Peer = Peer::new(ProcId(2), 0);

    #[test]
    fn expected_channels() {
        let mut e = ExpectedChannels::new([S0, S1]);
        assert!(!e.is_complete());
        let c = Phase::Connecting;
        assert_eq!(e.accept(L0, c), Err(Refusal::Unexpected(L0)));
        assert_eq!(e.accept(S1, c), Ok(()));
        assert_eq!(e.missing(), vec![S0]);
        assert_eq!(e.accept(S1, c), Err(Refusal::Duplicate(S1)));
        assert_eq!(e.accept(S0, c), Ok(()));
        assert!(e.is_complete());
        assert!(e.missing().is_empty());
        assert_eq!(e.accept(S0, Phase::Acked), Err(Refusal::Late(S0)));
        assert_eq!(e.accept(S0, Phase::Ready), Err(Refusal::Late(S0)));
    }

    #[test]
    fn empty_expectation_is_complete() {
        assert!(ExpectedChannels::new([]).is_complete());
        assert!(AckBarrier::new([]).is_complete());
    }

    #[test]
    fn barrier_fires_exactly_once() {
        let mut b = AckBarrier::new([S0, S1, L0]);
        let mut fired = 0;
        for p in [L0, S0, S1] {
            if b.ack(p).unwrap() {
                fired += 1;
            }
        }
        assert_eq!(fired, 1);
        assert!(b.is_complete());
        for p in [L0, S0, S1] {
            assert_eq!(b.ack(p), Err(AckError::Duplicate(p)));
        }
        assert_eq!(
            b.ack(Peer::new(ProcId(9), 0)),
            Err(AckError::Unexpected(Peer::new(ProcId(9), 0)))
        );
    }
}
