//! The send queue: every queued frame in ONE reusable byte buffer, plus a small
//! side queue of the descriptors that travel with some of them.
//!
//! Positions are stream offsets (bytes ever queued on this channel), so dropping
//! sent bytes from the front of the buffer never renumbers anything.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_codec::{Dialect, CURRENT_FD_MARK, HEADER_SIZE, LEGACY_HASFD};

/// Sent bytes are dropped from the front of the buffer when everything was sent,
/// or once they are at least this many and at least half of the buffer (so each
/// byte is moved at most about once).
const COMPACT_MIN: usize = 64 * 1024;

/// An idle buffer larger than this is given back to the allocator.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Queued frames, not yet fully written.
///
/// Frames are counted without a per-frame record: the queue knows where the first
/// unfinished frame ends and reads the next frame's length from its header when
/// the write position passes that end.
#[derive(Debug)]
pub(crate) struct SendQueue {
    /// Dialect of the headers.
    dialect: Dialect,
    /// Frames back to back; `buf[..sent]` is already written.
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written.
    sent: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Frames not fully written.
    queued: usize,
    /// Stream offset of the end of the first frame not fully written (when
    /// `queued > 0`).
    next_end: u64,
    /// Descriptors not yet sent, each with the stream offset of its frame's first byte.
    fds: VecDeque<(u64, OwnedFd)>,
}

/// The parts of a queue a frame builder appends to (see `MessageBuilder`).
pub(crate) struct QueueParts<'a> {
    pub buf: &'a mut Vec<u8>,
    pub queued: &'a mut usize,
    pub next_end: &'a mut u64,
    pub fds: &'a mut VecDeque<(u64, OwnedFd)>,
    pub base: u64,
}

impl QueueParts<'_> {
    /// Records a frame that was appended to `buf` from `start` (buffer index) to
    /// the current end, with its descriptor.
    #[inline]
    pub fn commit(&mut self, start: usize, fd: Option<OwnedFd>) {
        if *self.queued == 0 {
            *self.next_end = self.base + self.buf.len() as u64;
        }
        *self.queued += 1;
        if let Some(fd) = fd {
            self.fds.push_back((self.base + start as u64, fd));
        }
    }
}

/// The 16 header bytes of a frame (what `imsg_codec::Header::emit` writes; kept
/// here so the send path is a few stores; `header_bytes_match_the_codec` checks).
#[inline]
pub(crate) fn header_bytes(
    dialect: Dialect,
    ty: u32,
    total: usize,
    has_fd: bool,
    peerid: u32,
    pid: u32,
) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[0..4].copy_from_slice(&ty.to_ne_bytes());
    match dialect {
        Dialect::Legacy => {
            h[4..6].copy_from_slice(&(total as u16).to_ne_bytes());
            h[6..8].copy_from_slice(&(if has_fd { LEGACY_HASFD } else { 0 }).to_ne_bytes());
        }
        Dialect::Current => {
            let mark = if has_fd { CURRENT_FD_MARK } else { 0 };
            h[4..8].copy_from_slice(&(total as u32 | mark).to_ne_bytes());
        }
    }
    h[8..12].copy_from_slice(&peerid.to_ne_bytes());
    h[12..16].copy_from_slice(&pid.to_ne_bytes());
    h
}

/// The total length in a header this queue wrote.
#[inline]
fn frame_len(dialect: Dialect, header: &[u8]) -> u64 {
    match dialect {
        Dialect::Legacy => u16::from_ne_bytes([header[4], header[5]]) as u64,
        Dialect::Current => {
            (u32::from_ne_bytes([header[4], header[5], header[6], header[7]]) & !CURRENT_FD_MARK)
                as u64
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
            queued: 0,
            next_end: 0,
            fds: VecDeque::new(),
        }
    }

    /// Frames queued and not fully written.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Appends one frame whose `total` length (checked by the caller against the
    /// limit) is the header plus `parts`.
    #[inline]
    pub fn push(
        &mut self,
        header: [u8; HEADER_SIZE],
        total: usize,
        parts: &[&[u8]],
        fd: Option<OwnedFd>,
    ) {
        let start = self.buf.len();
        self.buf.reserve(total);
        self.buf.extend_from_slice(&header);
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.append_parts().commit(start, fd);
    }

    /// Access for appending one frame with a builder.
    pub fn parts(&mut self) -> QueueParts<'_> {
        self.append_parts()
    }

    fn append_parts(&mut self) -> QueueParts<'_> {
        QueueParts {
            buf: &mut self.buf,
            queued: &mut self.queued,
            next_end: &mut self.next_end,
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
        if self.sent == self.buf.len() {
            self.queued = 0;
        }
        while self.queued > 0 && self.next_end <= pos {
            self.queued -= 1;
            if self.queued > 0 {
                let at = (self.next_end - self.base) as usize;
                self.next_end += frame_len(self.dialect, &self.buf[at..at + HEADER_SIZE]);
            }
        }
        if self.sent == self.buf.len() {
            self.base += self.sent as u64;
            self.sent = 0;
            self.buf.clear();
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf.shrink_to(COMPACT_MIN);
            }
        } else if self.sent >= COMPACT_MIN && self.sent * 2 >= self.buf.len() {
            self.compact();
        }
    }

    /// Drops the sent bytes from the front of the buffer.
    fn compact(&mut self) {
        self.buf.drain(..self.sent);
        self.base += self.sent as u64;
        self.sent = 0;
    }

    /// Discards everything queued, closing the queued descriptors. Returns how many
    /// frames were discarded.
    pub fn clear(&mut self) -> usize {
        let frames = self.queued;
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.sent = 0;
        self.queued = 0;
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
        let h = header_bytes(Dialect::Legacy, 1, len, fd.is_some(), 0, 0);
        q.push(h, len, &[&vec![0; len - HEADER_SIZE]], fd);
    }

    #[test]
    fn header_bytes_match_the_codec() {
        for d in [Dialect::Legacy, Dialect::Current] {
            for has_fd in [false, true] {
                let hdr = imsg_codec::Header::new(0x0102_0304, 0xa0b0_c0d0, u32::MAX)
                    .with_fd(has_fd)
                    .with_len(1234);
                let mut want = [0u8; 16];
                hdr.emit(d, &mut want).unwrap();
                let got = header_bytes(d, 0x0102_0304, 1234, has_fd, 0xa0b0_c0d0, u32::MAX);
                assert_eq!(got, want);
                assert_eq!(frame_len(d, &got), 1234);
            }
        }
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
