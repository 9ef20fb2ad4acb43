//! The framework's own messages and their payloads.
//!
//! Message types from [`CONTROL_BASE`] up are reserved for the mesh; an application's
//! types must be below it. All payload integers are in the host's byte order, like
//! the imsg header itself (every process of the mesh runs on one host).
//!
//! | type | direction | payload | descriptor |
//! |---|---|---|---|
//! | [`PROCFD`] | parent → child | peer process id `u32`, peer instance `u32` (8 bytes) | the channel to that peer |
//! | [`PROCREADY`] | parent → child | (process id `u32`, instances `u32`) for every process of the table | none |
//! | [`PROCREADY`] | child → parent | empty: "every expected channel is attached" | none |
//! | [`READY`] | parent → child | empty: "the whole mesh is connected" | none |
//! | [`VERBOSE`] | any | `i32` verbosity (C's `int` of `IMSG_CTL_VERBOSE`) | none |
//!
//! proc.c sends `struct privsep_fd { enum privsep_procid pf_procid; unsigned int
//! pf_instance; }` for PROCFD: two 4-byte host-order integers, the same 8 bytes on
//! every platform where `enum` is an `int`. Here the layout is spelled out instead of
//! depending on a C struct's ABI.

use core::fmt;

use crate::route::Peer;
use crate::route::ProcId;

/// First message type reserved for the framework; application types must be below.
pub const CONTROL_BASE: u32 = 0xffff_ff00;
/// A new channel to a peer (proc.c's `IMSG_CTL_PROCFD`).
pub const PROCFD: u32 = CONTROL_BASE + 1;
/// Readiness barrier (iked's `IMSG_CTL_PROCREADY`): parent → child "every PROCFD has
/// been sent", child → parent "every expected channel is attached".
pub const PROCREADY: u32 = CONTROL_BASE + 2;
/// Parent → child: every child has attached its channels; the application may start.
pub const READY: u32 = CONTROL_BASE + 3;
/// Set the log verbosity (proc.c's `IMSG_CTL_VERBOSE`).
pub const VERBOSE: u32 = CONTROL_BASE + 4;

/// `true` for a type reserved by the framework.
pub fn is_control(ty: u32) -> bool {
    ty >= CONTROL_BASE
}

/// A human name for a framework type, for log lines.
pub fn name(ty: u32) -> Option<&'static str> {
    match ty {
        PROCFD => Some("PROCFD"),
        PROCREADY => Some("PROCREADY"),
        READY => Some("READY"),
        VERBOSE => Some("VERBOSE"),
        _ => None,
    }
}

/// A framework payload of the wrong shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadError {
    /// The message type.
    pub ty: u32,
    /// The payload length received.
    pub len: usize,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} payload of {} bytes is malformed",
            name(self.ty).unwrap_or("control"),
            self.len
        )
    }
}

impl std::error::Error for PayloadError {}

/// Length of a [`PROCFD`] payload.
pub const PROCFD_LEN: usize = 8;

/// Encodes a [`PROCFD`] payload naming `peer`.
///
/// ```
/// use privsep_mesh::{control, Peer, ProcId};
/// let p = Peer::new(ProcId(2), 5);
/// assert_eq!(control::decode_procfd(&control::encode_procfd(p)), Ok(p));
/// ```
pub fn encode_procfd(peer: Peer) -> [u8; PROCFD_LEN] {
    let mut out = [0; PROCFD_LEN];
    out[..4].copy_from_slice(&peer.proc.0.to_ne_bytes());
    out[4..].copy_from_slice(&peer.instance.to_ne_bytes());
    out
}

/// Decodes a [`PROCFD`] payload: exactly 8 bytes.
pub fn decode_procfd(payload: &[u8]) -> Result<Peer, PayloadError> {
    let err = PayloadError {
        ty: PROCFD,
        len: payload.len(),
    };
    let bytes: &[u8; PROCFD_LEN] = payload.try_into().map_err(|_| err)?;
    let (p, i) = bytes.split_at(4);
    Ok(Peer::new(
        ProcId(u32::from_ne_bytes(p.try_into().map_err(|_| err)?)),
        u32::from_ne_bytes(i.try_into().map_err(|_| err)?),
    ))
}

/// Encodes the parent's [`PROCREADY`]: the instance count of every process, so that a
/// child whose table differs (built from different arguments) says so clearly.
pub fn encode_layout(layout: &[(ProcId, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout.len() * 8);
    for (id, n) in layout {
        out.extend_from_slice(&id.0.to_ne_bytes());
        out.extend_from_slice(&n.to_ne_bytes());
    }
    out
}

/// Decodes the parent's [`PROCREADY`] payload (a multiple of 8 bytes).
pub fn decode_layout(payload: &[u8]) -> Result<Vec<(ProcId, u32)>, PayloadError> {
    if !payload.len().is_multiple_of(8) {
        return Err(PayloadError {
            ty: PROCREADY,
            len: payload.len(),
        });
    }
    Ok(payload
        .chunks_exact(8)
        .map(|c| {
            let (a, b) = c.split_at(4);
            let word = |s: &[u8]| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
            (ProcId(word(a)), word(b))
        })
        .collect())
}

/// Encodes a [`VERBOSE`] payload.
pub fn encode_verbose(level: i32) -> [u8; 4] {
    level.to_ne_bytes()
}

/// Decodes a [`VERBOSE`] payload: exactly 4 bytes.
pub fn decode_verbose(payload: &[u8]) -> Result<i32, PayloadError> {
    payload
        .try_into()
        .map(i32::from_ne_bytes)
        .map_err(|_| PayloadError {
            ty: VERBOSE,
            len: payload.len(),
        })
}

/// The `log` level for a C-style verbosity: below 0 warnings only, 0 info, 1 debug,
/// 2 and more trace.
pub fn level_for_verbose(v: i32) -> log::LevelFilter {
    match v {
        i32::MIN..=-1 => log::LevelFilter::Warn,
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfd_layout_is_two_host_order_words() {
        let p = Peer::new(ProcId(0x0102_0304), 0x0a0b_0c0d);
        let b = encode_procfd(p);
        assert_eq!(&b[..4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&b[4..], &0x0a0b_0c0du32.to_ne_bytes());
        assert_eq!(decode_procfd(&b), Ok(p));
    }

    #[test]
    fn procfd_wrong_sizes() {
        for len in [0, 1, 4, 7, 9, 16] {
            assert_eq!(
                decode_procfd(&vec![0; len]),
                Err(PayloadError { ty: PROCFD, len })
            );
        }
    }

    #[test]
    fn layout_round_trip() {
        let l = vec![(ProcId(0), 1), (ProcId(1), 3), (ProcId(7), 32)];
        assert_eq!(decode_layout(&encode_layout(&l)), Ok(l));
        assert_eq!(decode_layout(&[]), Ok(vec![]));
        assert!(decode_layout(&[0; 12]).is_err());
    }

    #[test]
    fn verbose() {
        assert_eq!(decode_verbose(&encode_verbose(-3)), Ok(-3));
        assert!(decode_verbose(&[1, 2, 3]).is_err());
        assert_eq!(level_for_verbose(0), log::LevelFilter::Info);
        assert_eq!(level_for_verbose(9), log::LevelFilter::Trace);
        assert_eq!(level_for_verbose(-1), log::LevelFilter::Warn);
    }

    #[test]
    fn reserved_range() {
        for t in [PROCFD, PROCREADY, READY, VERBOSE, u32::MAX] {
            assert!(is_control(t));
        }
        assert!(!is_control(CONTROL_BASE - 1));
        assert!(!is_control(0));
        assert_eq!(name(READY), Some("READY"));
        assert_eq!(name(CONTROL_BASE), None);
    }
}
