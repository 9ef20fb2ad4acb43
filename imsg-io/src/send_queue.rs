//! The send queue: every queued frame in ONE reusable byte buffer, plus a small
//! side queue of the descriptors that travel with some of them.
//!
//! Positions are stream offsets (bytes ever queued on this channel), so dropping
//! sent bytes from the front of the buffer never renumbers anything.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_codec::{Dialect, CURRENT_FD_MARK, LEGACY_HASFD};

/// Sent bytes are dropped from the front of the buffer once they are at least
/// this many and at least half of it (plus whenever everything was sent).
const COMPACT_MIN: usize = 64 * 1024;

/// An idle buffer larger than this is given back to the allocator.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Queued frames, not yet fully written.
#[derive(Debug)]
pub(crate) struct SendQueue {
    /// Dialect of the headers (to stamp descriptor flags).
    dialect: Dialect,
    /// Frames back to back; `buf[..sent]` is already written.
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written.
    sent: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Stream offset of the end of each frame not fully written, in order.
    ends: VecDeque<u64>,
    /// Descriptors not yet sent, each with the stream offset of its frame's first byte.
    fds: VecDeque<(u64, OwnedFd)>,
}

/// The parts of a queue a frame builder appends to (see `MessageBuilder`).
pub(crate) struct QueueParts<'a> {
    pub buf: &'a mut Vec<u8>,
    pub ends: &'a mut VecDeque<u64>,
    pub fds: &'a mut VecDeque<(u64, OwnedFd)>,
    pub base: u64,
}

impl QueueParts<'_> {
    /// Records a frame that was appended to `buf` from `start` (buffer index) to
    /// the current end, with its descriptor.
    pub fn commit(&mut self, start: usize, fd: Option<OwnedFd>) {
        let start = self.base + start as u64;
        self.ends.push_back(self.base + self.buf.len() as u64);
        if let Some(fd) = fd {
            self.fds.push_back((start, fd));
        }
    }
}

impl SendQueue {
    /// An empty queue for frames of `dialect`.
    pub fn new(dialect: Dialect) -> SendQueue {
        SendQueue {
            dialect,
            buf: Vec::new(),
            sent: 0,
            base: 0,
            ends: VecDeque::new(),
            fds: VecDeque::new(),
        }
    }

    /// Frames queued and not fully written.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Access for appending one frame.
    pub fn parts(&mut self) -> QueueParts<'_> {
        QueueParts {
            buf: &mut self.buf,
            ends: &mut self.ends,
            fds: &mut self.fds,
            base: self.base,
        }
    }

    /// What the next system call should send: bytes from the first unsent one up to
    /// (not including) the next frame that carries a descriptor, or, if the first
    /// unsent byte starts such a frame, that frame and everything after it up to the
    /// following descriptor, with the descriptor. None when empty.
    ///
    /// The header of a frame sent with a descriptor gets its descriptor flag here
    /// (frames closed by a builder are queued before their descriptor is known).
    pub fn next_chunk(&mut self) -> Option<(&[u8], Option<BorrowedFd<'_>>)> {
        if self.sent == self.buf.len() {
            return None;
        }
        let pos = self.base + self.sent as u64;
        let end = self.base + self.buf.len() as u64;
        if self.fds.front().is_some_and(|(start, _)| *start == pos) {
            stamp_fd_flag(self.dialect, &mut self.buf[self.sent..]);
        }
        let mut fds = self.fds.iter();
        let (limit, pass) = match fds.next() {
            Some((start, fd)) if *start == pos => {
                (fds.next().map_or(end, |(next, _)| *next), Some(fd.as_fd()))
            }
            Some((start, _)) => (*start, None),
            None => (end, None),
        };
        let limit = (limit - self.base) as usize;
        Some((&self.buf[self.sent..limit], pass))
    }

    /// Records that `n` bytes of the last chunk were written, and whether its
    /// descriptor went with them (it is then closed here).
    pub fn advance(&mut self, n: usize, fd_sent: bool) {
        self.sent += n;
        if fd_sent {
            self.fds.pop_front();
        }
        let pos = self.base + self.sent as u64;
        while self.ends.front().is_some_and(|&e| e <= pos) {
            self.ends.pop_front();
        }
        if self.sent == self.buf.len() {
            self.base += self.sent as u64;
            self.sent = 0;
            self.buf.clear();
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf.shrink_to(COMPACT_MIN);
            }
        } else if self.sent >= COMPACT_MIN && self.sent * 2 >= self.buf.len() {
            self.buf.drain(..self.sent);
            self.base += self.sent as u64;
            self.sent = 0;
        }
    }

    /// Discards everything queued, closing the queued descriptors. Returns how many
    /// frames were discarded.
    pub fn clear(&mut self) -> usize {
        let frames = self.ends.len();
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.sent = 0;
        self.ends.clear();
        self.fds.clear();
        frames
    }
}

/// Sets the descriptor flag in the header at the start of `frame`.
fn stamp_fd_flag(dialect: Dialect, frame: &mut [u8]) {
    match dialect {
        Dialect::Legacy => {
            let flags = u16::from_ne_bytes([frame[6], frame[7]]) | LEGACY_HASFD;
            frame[6..8].copy_from_slice(&flags.to_ne_bytes());
        }
        Dialect::Current => {
            let word = u32::from_ne_bytes([frame[4], frame[5], frame[6], frame[7]]);
            frame[4..8].copy_from_slice(&(word | CURRENT_FD_MARK).to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> OwnedFd {
        rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
    }

    fn push(q: &mut SendQueue, len: usize, fd: Option<OwnedFd>) {
        let mut p = q.parts();
        let start = p.buf.len();
        p.buf.extend(std::iter::repeat_n(0, len));
        p.commit(start, fd);
    }

    #[test]
    fn chunks_stop_at_descriptor_frames() {
        let mut q = SendQueue::new(Dialect::Legacy);
        push(&mut q, 20, None);
        push(&mut q, 30, None);
        push(&mut q, 40, Some(devnull()));
        push(&mut q, 50, None);
        push(&mut q, 60, Some(devnull()));
        assert_eq!(q.len(), 5);
        let (c, fd) = q.next_chunk().unwrap();
        assert_eq!((c.len(), fd.is_some()), (50, false));
        q.advance(10, false);
        let (c, fd) = q.next_chunk().unwrap();
        assert_eq!((c.len(), fd.is_some()), (40, false));
        q.advance(40, false);
        assert_eq!(q.len(), 3);
        // The descriptor frame comes first, with its descriptor, up to the next one.
        let (c, fd) = q.next_chunk().unwrap();
        assert_eq!((c.len(), fd.is_some()), (90, true));
        q.advance(1, true);
        let (c, fd) = q.next_chunk().unwrap();
        assert_eq!((c.len(), fd.is_some()), (89, false));
        q.advance(89, false);
        let (c, fd) = q.next_chunk().unwrap();
        assert_eq!((c.len(), fd.is_some()), (60, true));
        q.advance(60, true);
        assert!(q.next_chunk().is_none());
        assert_eq!(q.len(), 0);
        assert_eq!(q.buf.len(), 0);
    }
}
