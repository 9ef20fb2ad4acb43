//! The send queue: every queued frame in ONE reusable byte buffer, plus a small
//! side queue of the descriptors that travel with some of them.
//!
//! Positions are stream offsets (bytes ever queued on this channel), so dropping
//! sent bytes from the front of the buffer never renumbers anything.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_codec::{Dialect, FrameBuf, CURRENT_FD_MARK, HEADER_SIZE, LEGACY_HASFD};

/// Sent bytes are dropped from the front of the buffer when everything was sent,
/// or once they are at least this many and at least half of the buffer (so each
/// byte is moved at most about once).
const COMPACT_MIN: usize = 64 * 1024;

/// A frame start is noted at least this many bytes after the previous note, so
/// that counting the frames a partial write completed walks at most this many
/// bytes of headers (plus one frame).
const MARK_EVERY: usize = 4096;

/// An idle buffer larger than this is given back to the allocator.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// The storage of a channel's send queue: frames back to back in one reusable
/// allocation. A [`MessageBuilder`](crate::MessageBuilder) writes into it through
/// [`FrameBuf`]; nothing else of it is public.
///
/// All of the allocation is initialised, and `bytes[end..]` is room for the next
/// frames, so a frame is written in place with plain slice copies: no capacity
/// check per append, no call to `memcpy` for a small payload.
#[derive(Debug, Default)]
pub struct SendBuf {
    /// Initialised storage; `bytes[..end]` holds data.
    bytes: Vec<u8>,
    end: usize,
}

impl SendBuf {
    /// `bytes[end..end + n]`, growing the storage if needed (`end` is not moved).
    #[inline]
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.end;
        // `end <= bytes.len()` always; the test is the one the slicing makes.
        if n > self.bytes.len() - end {
            return self.grow(n);
        }
        &mut self.bytes[end..][..n]
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let want = self.end + n;
        let size = want.max(self.bytes.len() * 2).max(4096);
        self.bytes.resize(size, 0);
        &mut self.bytes[self.end..want]
    }

    /// The bytes held.
    #[inline]
    fn filled(&self) -> &[u8] {
        &self.bytes[..self.end]
    }

    /// Drops the first `n` bytes held, moving the rest to the front.
    fn drop_front(&mut self, n: usize) {
        self.bytes.copy_within(n..self.end, 0);
        self.end -= n;
    }

    /// Gives an allocation larger than `above` back to the allocator, keeping
    /// `keep` bytes (only when empty).
    fn shrink(&mut self, above: usize, keep: usize) {
        if self.end == 0 && self.bytes.len() > above {
            self.bytes.truncate(keep);
            self.bytes.shrink_to_fit();
        }
    }
}

impl FrameBuf for SendBuf {
    #[inline]
    fn len(&self) -> usize {
        self.end
    }

    #[inline]
    fn spare(&self) -> usize {
        isize::MAX as usize - self.end
    }

    #[inline]
    fn put(&mut self, data: &[u8]) -> Result<(), imsg_codec::Error> {
        copy_payload(self.room(data.len()), data);
        self.end += data.len();
        Ok(())
    }

    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], imsg_codec::Error> {
        let start = self.end;
        self.room(n).fill(0);
        self.end += n;
        Ok(&mut self.bytes[start..start + n])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.end]
    }

    fn truncate(&mut self, len: usize) {
        self.end = self.end.min(len);
    }
}

/// `dst.copy_from_slice(src)`, with payloads of up to 32 bytes copied inline by
/// overlapping word moves (a call to `memcpy` costs more than such a copy).
///
/// Words, not 16-byte slice copies: LLVM merges the branches' constant-size copies
/// into one `memcpy` call of variable length, which is what this avoids.
#[inline(always)]
fn copy_payload(dst: &mut [u8], src: &[u8]) {
    #[inline(always)]
    fn w64(dst: &mut [u8], d: usize, src: &[u8], s: usize) {
        let w = u64::from_ne_bytes(src[s..s + 8].try_into().unwrap());
        dst[d..d + 8].copy_from_slice(&w.to_ne_bytes());
    }
    #[inline(always)]
    fn w32(dst: &mut [u8], d: usize, src: &[u8], s: usize) {
        let w = u32::from_ne_bytes(src[s..s + 4].try_into().unwrap());
        dst[d..d + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let n = src.len();
    assert_eq!(dst.len(), n);
    if n > 32 {
        dst.copy_from_slice(src);
    } else if n >= 16 {
        w64(dst, 0, src, 0);
        w64(dst, 8, src, 8);
        w64(dst, n - 16, src, n - 16);
        w64(dst, n - 8, src, n - 8);
    } else if n >= 8 {
        w64(dst, 0, src, 0);
        w64(dst, n - 8, src, n - 8);
    } else if n >= 4 {
        w32(dst, 0, src, 0);
        w32(dst, n - 4, src, n - 4);
    } else if n > 0 {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

/// The count of frames queued, and a sparse index of their starts.
#[derive(Debug, Default)]
pub(crate) struct FrameLog {
    /// Frames ever queued on this channel.
    pushed: u64,
    /// Some frame starts, at least [`MARK_EVERY`] bytes apart and not yet
    /// written past: (stream offset, frames queued before that frame).
    marks: VecDeque<(u64, u64)>,
    /// Buffer index from which the next frame start is noted (kept as an index,
    /// so the test per frame is one comparison).
    mark_from: usize,
}

impl FrameLog {
    /// Records a frame queued at buffer index `start`, the buffer starting at
    /// stream offset `base`.
    #[inline]
    pub fn record(&mut self, start: usize, base: u64) {
        if start >= self.mark_from {
            self.mark(start, base);
        }
        self.pushed += 1;
    }

    #[inline(never)]
    fn mark(&mut self, start: usize, base: u64) {
        self.marks.push_back((base + start as u64, self.pushed));
        self.mark_from = start + MARK_EVERY;
    }

    /// The first `n` bytes of the buffer were dropped.
    fn dropped(&mut self, n: usize) {
        self.mark_from = self.mark_from.saturating_sub(n);
    }
}

/// Queued frames, not yet fully written.
///
/// Frames are counted without a per-frame record: queueing one is a counter
/// increment (and, every [`MARK_EVERY`] bytes, a note of where a frame starts);
/// a write that empties the queue completes them all, and a partial write jumps
/// to the last noted frame start it passed and walks the headers from there.
#[derive(Debug)]
pub(crate) struct SendQueue {
    /// Dialect of the headers.
    dialect: Dialect,
    /// Frames back to back; `buf[..sent]` is already written.
    buf: SendBuf,
    /// Bytes at the front of `buf` already written.
    sent: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Frames ever queued, and where some start.
    log: FrameLog,
    /// Frames ever completely written (or discarded).
    done: u64,
    /// Stream offset of the first frame not completely written (the end of the
    /// stream when there is none).
    head: u64,
    /// Stream offset of that frame's end, once read from its header (always known
    /// when its header may have been dropped from the buffer).
    head_end: Option<u64>,
    /// Descriptors not yet sent, each with the stream offset of its frame's first byte.
    fds: VecDeque<(u64, OwnedFd)>,
}

/// The parts of a queue a frame builder appends to (see `MessageBuilder`).
pub(crate) struct QueueParts<'a> {
    pub buf: &'a mut SendBuf,
    pub log: &'a mut FrameLog,
    pub fds: &'a mut VecDeque<(u64, OwnedFd)>,
    pub base: u64,
}

impl QueueParts<'_> {
    /// Records a frame that was appended to `buf` from `start` (buffer index) to
    /// the current end, with its descriptor.
    #[inline]
    pub fn commit(&mut self, start: usize, fd: Option<OwnedFd>) {
        self.log.record(start, self.base);
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
            buf: SendBuf::default(),
            sent: 0,
            base: 0,
            log: FrameLog::default(),
            done: 0,
            head: 0,
            head_end: None,
            fds: VecDeque::new(),
        }
    }

    /// Frames queued and not fully written.
    pub fn len(&self) -> usize {
        (self.log.pushed - self.done) as usize
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn pending_bytes(&self) -> usize {
        self.buf.end - self.sent
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
        let start = self.buf.end;
        let dst = self.buf.room(total);
        dst[..HEADER_SIZE].copy_from_slice(&header);
        let mut at = HEADER_SIZE;
        for p in parts {
            copy_payload(&mut dst[at..at + p.len()], p);
            at += p.len();
        }
        self.buf.end = start + total;
        self.append_parts().commit(start, fd);
    }

    /// Access for appending one frame with a builder.
    pub fn parts(&mut self) -> QueueParts<'_> {
        self.append_parts()
    }

    fn append_parts(&mut self) -> QueueParts<'_> {
        QueueParts {
            buf: &mut self.buf,
            log: &mut self.log,
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
        if self.sent == self.buf.end {
            return None;
        }
        let pos = self.base + self.sent as u64;
        let end = self.base + self.buf.end as u64;
        if self.fds.front().is_some_and(|(start, _)| *start == pos) {
            stamp_fd_flag(self.dialect, &mut self.buf.bytes_mut()[self.sent..]);
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
        Some((&self.buf.filled()[self.sent..limit], pass))
    }

    /// Records that `n` bytes of the last chunk were written, and whether its
    /// descriptor went with them (it is then closed here).
    pub fn advance(&mut self, n: usize, fd_sent: bool) {
        self.sent += n;
        if fd_sent {
            self.fds.pop_front();
        }
        if self.sent == self.buf.end {
            // Everything went: no header walk.
            self.done = self.log.pushed;
            self.log.marks.clear();
            self.log.dropped(self.sent);
            self.base += self.sent as u64;
            self.head = self.base;
            self.head_end = None;
            self.sent = 0;
            self.buf.end = 0;
            self.buf.shrink(SHRINK_ABOVE, COMPACT_MIN);
            return;
        }
        // Count the frames the write completed: jump to the last noted frame
        // start the write reached, then walk the headers. The frame at `head`
        // starts before `pos`, which is inside the buffer, so its header is there
        // unless its end is already known. (A noted start is never before `head`:
        // the notes up to the previous `pos` were consumed then, and compaction
        // keeps the bytes after that.)
        let pos = self.base + self.sent as u64;
        let mut jump = None;
        while let Some(&(start, before)) = self.log.marks.front() {
            if start > pos {
                break;
            }
            jump = Some((start, before));
            self.log.marks.pop_front();
        }
        if let Some((start, before)) = jump {
            if start > self.head {
                self.head = start;
                self.done = before;
                self.head_end = None;
            }
        }
        loop {
            let end = match self.head_end {
                Some(end) => end,
                None => {
                    let at = (self.head - self.base) as usize;
                    let end = self.head
                        + frame_len(self.dialect, &self.buf.filled()[at..at + HEADER_SIZE]);
                    self.head_end = Some(end);
                    end
                }
            };
            if end > pos {
                break;
            }
            self.done += 1;
            self.head = end;
            self.head_end = None;
        }
        if self.sent >= COMPACT_MIN && self.sent * 2 >= self.buf.end {
            self.compact();
        }
    }

    /// Drops the sent bytes from the front of the buffer.
    fn compact(&mut self) {
        self.buf.drop_front(self.sent);
        self.log.dropped(self.sent);
        self.base += self.sent as u64;
        self.sent = 0;
    }

    /// Discards everything queued, closing the queued descriptors. Returns how many
    /// frames were discarded.
    pub fn clear(&mut self) -> usize {
        let frames = self.len();
        self.log.dropped(self.buf.end);
        self.base += self.buf.end as u64;
        self.buf.end = 0;
        self.sent = 0;
        self.done = self.log.pushed;
        self.log.marks.clear();
        self.head = self.base;
        self.head_end = None;
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
    fn payload_copies_of_every_small_size() {
        let src: Vec<u8> = (1..=80).collect();
        for n in 0..=80 {
            let mut dst = vec![0xeeu8; n + 2];
            copy_payload(&mut dst[1..n + 1], &src[..n]);
            assert_eq!(&dst[1..n + 1], &src[..n], "n = {n}");
            assert_eq!((dst[0], dst[n + 1]), (0xee, 0xee), "n = {n}");
        }
    }

    #[test]
    fn frames_land_whole_across_growth_and_builder_use() {
        use imsg_codec::{split, FrameBuilder, Header, Status};
        let mut q = SendQueue::new(Dialect::Current);
        let mut want: Vec<Vec<u8>> = Vec::new();
        for i in 0..3000usize {
            let parts: Vec<Vec<u8>> = (0..i % 4)
                .map(|k| vec![(i + k) as u8; (i * 7 + k) % 45])
                .collect();
            let slices: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            let total = HEADER_SIZE + slices.iter().map(|p| p.len()).sum::<usize>();
            q.push(
                header_bytes(Dialect::Current, i as u32, total, false, 0, 0),
                total,
                &slices,
                None,
            );
            want.push(parts.concat());
            if i % 100 == 0 {
                // An abandoned builder leaves nothing; a finished one leaves its frame.
                drop(FrameBuilder::new(
                    &mut q.buf,
                    Dialect::Current,
                    16384,
                    Header::new(1, 0, 0),
                ));
                let mut b =
                    FrameBuilder::new(&mut q.buf, Dialect::Current, 16384, Header::new(2, 0, 0))
                        .unwrap();
                b.add(&[9; 40]).unwrap();
                b.finish().unwrap();
                want.push(vec![9; 40]);
            }
        }
        let mut held = q.buf.filled();
        for w in &want {
            let Status::Complete((frame, used)) = split(held, Dialect::Current, 16384).unwrap()
            else {
                panic!("incomplete frame");
            };
            assert_eq!(frame.payload(), &w[..]);
            held = &held[used..];
        }
        assert!(held.is_empty());
    }

    #[test]
    fn frame_count_follows_partial_writes_and_compaction() {
        let mut q = SendQueue::new(Dialect::Legacy);
        let mut ends = std::collections::VecDeque::new(); // stream end of each queued frame
        let (mut queued_to, mut written) = (0u64, 0u64);
        let mut step = 7usize;
        for round in 0..400 {
            for k in 0..(round % 37) {
                // Large frames, and rounds of small ones (many noted starts).
                let spread = if round % 3 == 0 { 3000 } else { 40 };
                let len = HEADER_SIZE + (round * 13 + k * 101) % spread;
                push(&mut q, len, None);
                queued_to += len as u64;
                ends.push_back(queued_to);
            }
            if let Some((chunk, _)) = q.next_chunk() {
                step = (step * 31 + 17) % 9000;
                let n = chunk.len().min(step + 1);
                q.advance(n, false);
                written += n as u64;
            }
            while ends.front().is_some_and(|&e| e <= written) {
                ends.pop_front();
            }
            assert_eq!(q.len(), ends.len(), "round {round}");
            assert_eq!(q.pending_bytes() as u64, queued_to - written);
        }
        assert_eq!(q.clear(), ends.len());
        assert_eq!((q.len(), q.pending_bytes()), (0, 0));
        push(&mut q, 20, None);
        assert_eq!(q.len(), 1);
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
        assert_eq!(q.buf.end, 0);
    }
}
