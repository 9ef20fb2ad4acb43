//! Who talks to whom: the connection policy of the mesh, a pure function.
//!
//! The parent always has a channel to every child instance (the socketpair made at
//! start-up, descriptor 3 in the child). Between children, the parent makes one
//! socketpair for every *unordered* pair of instances the policy allows; a policy is
//! asked about pairs of two different instances only, and must be symmetric.
//!
//! The default, [`distinct_processes`], is httpd's rule generalised: no process talks
//! to another instance of itself (httpd: "servers don't talk to each other"; relayd
//! also skips CA↔CA and RELAY↔RELAY). [`everyone`] is iked's rule (every pair of
//! different instances). An application passes its own `fn` for anything else.

use crate::route::Peer;
use crate::route::ProcId;

/// A connection policy: `true` if children `a` and `b` get a channel to each other.
///
/// Called only with `a != b`, both children (never the parent), each unordered pair
/// once. It must be pure: every process of the daemon evaluates it and must get the
/// same answer.
pub type Policy = fn(a: Peer, b: Peer) -> bool;

/// The default policy: instances of different processes talk; instances of the same
/// process don't (httpd's "servers don't talk to each other", for every process).
///
/// ```
/// use privsep_mesh::{policy::distinct_processes, Peer, ProcId};
/// let (server, logger) = (ProcId(1), ProcId(2));
/// assert!(distinct_processes(Peer::new(server, 0), Peer::new(logger, 0)));
/// assert!(!distinct_processes(Peer::new(server, 0), Peer::new(server, 1)));
/// ```
pub fn distinct_processes(a: Peer, b: Peer) -> bool {
    a.proc != b.proc
}

/// iked's policy: every instance talks to every other instance, including other
/// instances of its own process.
pub fn everyone(a: Peer, b: Peer) -> bool {
    a != b
}

/// The children in `procs` (the parent left out), sorted by process id.
fn children(procs: &[(ProcId, u32)]) -> Vec<(ProcId, u32)> {
    let mut children: Vec<(ProcId, u32)> = procs
        .iter()
        .copied()
        .filter(|(id, _)| *id != ProcId::PARENT)
        .collect();
    children.sort_unstable();
    children
}

/// Every channel between children that `policy` allows, each unordered pair once, in
/// proc.c's order (source process ≤ destination process, then instances in order).
/// `procs` lists the children as (process id, instance count); the parent, if listed,
/// is skipped: its channels are not mesh pairs.
pub(crate) fn pairs(procs: &[(ProcId, u32)], policy: Policy) -> Vec<(Peer, Peer)> {
    let children = children(procs);
    let mut out = Vec::new();
    for (s, &(src, src_n)) in children.iter().enumerate() {
        for &(dst, dst_n) in &children[s..] {
            for i in 0..src_n {
                // Within one process, (i, j) and (j, i) are the same pair: take j > i.
                let first_j = if src == dst { i + 1 } else { 0 };
                for j in first_j..dst_n {
                    let (a, b) = (Peer::new(src, i), Peer::new(dst, j));
                    if policy(a, b) {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    out
}

/// The peers `me` has a channel to, sorted: for the parent every child instance, for
/// a child the parent plus every mesh peer the policy allows.
pub(crate) fn channels_of(procs: &[(ProcId, u32)], policy: Policy, me: Peer) -> Vec<Peer> {
    let mut out = Vec::new();
    if me.proc == ProcId::PARENT {
        for (id, n) in children(procs) {
            out.extend((0..n).map(|i| Peer::new(id, i)));
        }
        return out;
    }
    out.push(Peer::PARENT);
    for (a, b) in pairs(procs, policy) {
        if a == me {
            out.push(b);
        } else if b == me {
            out.push(a);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_one_logger() {
        // 2 servers, 1 logger: each server gets one channel to the logger.
        let p = pairs(&[(ProcId(1), 2), (ProcId(2), 1)], distinct_processes);
        assert_eq!(p.len(), 2);
    }
    use std::collections::BTreeSet;

    const SERVER: ProcId = ProcId(1);
    const LOGGER: ProcId = ProcId(2);

    fn httpd(servers: u32) -> Vec<(ProcId, u32)> {
        vec![(ProcId::PARENT, 1), (SERVER, servers), (LOGGER, 1)]
    }

    #[test]
    fn httpd_servers_only_talk_to_the_logger() {
        let p = pairs(&httpd(3), distinct_processes);
        assert_eq!(
            p,
            vec![
                (Peer::new(SERVER, 0), Peer::new(LOGGER, 0)),
                (Peer::new(SERVER, 1), Peer::new(LOGGER, 0)),
                (Peer::new(SERVER, 2), Peer::new(LOGGER, 0)),
            ]
        );
        assert_eq!(
            channels_of(&httpd(3), distinct_processes, Peer::new(LOGGER, 0)),
            vec![
                Peer::PARENT,
                Peer::new(SERVER, 0),
                Peer::new(SERVER, 1),
                Peer::new(SERVER, 2)
            ]
        );
        assert_eq!(
            channels_of(&httpd(3), distinct_processes, Peer::new(SERVER, 1)),
            vec![Peer::PARENT, Peer::new(LOGGER, 0)]
        );
        assert_eq!(
            channels_of(&httpd(3), distinct_processes, Peer::PARENT),
            vec![
                Peer::new(SERVER, 0),
                Peer::new(SERVER, 1),
                Peer::new(SERVER, 2),
                Peer::new(LOGGER, 0)
            ]
        );
    }

    #[test]
    fn everyone_counts() {
        // n instances in total: n(n-1)/2 pairs.
        let procs = [(ProcId::PARENT, 1), (ProcId(1), 3), (ProcId(2), 2)];
        assert_eq!(pairs(&procs, everyone).len(), 10);
        assert_eq!(pairs(&procs, distinct_processes).len(), 6);
    }

    #[test]
    fn pairs_are_unique_unordered_and_never_self() {
        let procs = [
            (ProcId(3), 4),
            (ProcId(1), 2),
            (ProcId(2), 3),
            (ProcId::PARENT, 1),
        ];
        for policy in [everyone as Policy, distinct_processes] {
            let p = pairs(&procs, policy);
            let mut seen = BTreeSet::new();
            for &(a, b) in &p {
                assert_ne!(a, b);
                assert_ne!(a.proc, ProcId::PARENT);
                assert_ne!(b.proc, ProcId::PARENT);
                let key = if a < b { (a, b) } else { (b, a) };
                assert!(seen.insert(key), "pair {a} {b} twice");
            }
            // Each channel shows up at both ends, and nowhere else.
            let mut ends = 0;
            for &(id, n) in &procs {
                for i in 0..n {
                    let me = Peer::new(id, i);
                    let mine = channels_of(&procs, policy, me);
                    if id != ProcId::PARENT {
                        ends += mine.len() - 1;
                        assert!(!mine.contains(&me));
                    }
                }
            }
            assert_eq!(ends, 2 * p.len());
        }
    }

    #[test]
    fn custom_policy() {
        // Only servers ↔ logger; a third process talks to nobody but the parent.
        fn only_logger(a: Peer, b: Peer) -> bool {
            let mut ids = [a.proc.0, b.proc.0];
            ids.sort_unstable();
            ids == [1, 2]
        }
        let procs = [
            (ProcId::PARENT, 1),
            (SERVER, 2),
            (LOGGER, 1),
            (ProcId(3), 2),
        ];
        assert_eq!(pairs(&procs, only_logger).len(), 2);
        assert_eq!(
            channels_of(&procs, only_logger, Peer::new(ProcId(3), 1)),
            vec![Peer::PARENT]
        );
    }

    #[test]
    fn large_mesh_size() {
        // 4 process types × 8 instances, default policy: every instance talks to the
        // 24 instances of the other three types.
        let procs: Vec<(ProcId, u32)> = (1..=4).map(|i| (ProcId(i), 8)).collect();
        assert_eq!(pairs(&procs, distinct_processes).len(), 32 * 24 / 2);
        assert_eq!(
            channels_of(&procs, distinct_processes, Peer::new(ProcId(2), 5)).len(),
            25
        );
    }
}
