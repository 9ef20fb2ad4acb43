//! The send queue: every queued frame in ONE reusable byte buffer, plus a small
//! side queue of the descriptors that travel with some of them.
//!
//! Positions are stream offsets (bytes ever queued on this channel), so dropping
//! sent bytes from the front of the buffer never renumbers anything.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_codec::{emitv, Dialect, Frame, FrameBuf, Header, HEADER_SIZE};

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
/// frames, so the codec reserves a whole frame with one check
/// ([`FrameBuf::put_unfilled`], no zero fill) and writes it in place.
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
        // Unbounded: the storage grows (allocation failure aborts).
        usize::MAX
    }

    #[inline]
    fn put(&mut self, data: &[u8]) -> Result<(), imsg_codec::Error> {
        self.room(data.len()).copy_from_slice(data);
        self.end += data.len();
        Ok(())
    }

    #[inline]
    fn put_unfilled(&mut self, n: usize) -> Result<&mut [u8], imsg_codec::Error> {
        let start = self.end;
        let end = start.wrapping_add(n);
        // The two comparisons are the whole room check and let the slicing go
        // unchecked; growing is the cold path.
        if end < start || end > self.bytes.len() {
            self.grow(n);
            self.end = start + n;
            return Ok(&mut self.bytes[start..start + n]);
        }
        self.end = end;
        Ok(&mut self.bytes[start..end])
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

impl SendQueue {
    /// The dialect frames are queued in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Queues later frames in `dialect`. Only when the queue is empty: the frames
    /// already queued are walked in the dialect they were written in.
    pub fn set_dialect(&mut self, dialect: Dialect) {
        debug_assert_eq!(self.len(), 0);
        self.dialect = dialect;
    }

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

    /// Appends one frame whose payload is the concatenation of `parts`, refusing
    /// one above `max` bytes in total (the codec's [`emitv`]); the queue is
    /// unchanged on error (and `fd` closed).
    #[inline]
    pub fn compose(
        &mut self,
        max: usize,
        header: Header,
        parts: &[&[u8]],
        fd: Option<OwnedFd>,
    ) -> Result<(), imsg_codec::Error> {
        let start = self.buf.end;
        emitv(
            &mut self.buf,
            self.dialect,
            max,
            header.with_fd(fd.is_some()),
            parts,
        )?;
        self.append_parts().commit(start, fd);
        Ok(())
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
    pub fn next_chunk(&mut self) -> Option<(&[u8], Option<BorrowedFd<'_>>)> {
        if self.sent == self.buf.end {
            return None;
        }
        let pos = self.base + self.sent as u64;
        let end = self.base + self.buf.end as u64;
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
                    let head = &self.buf.filled()[at..at + HEADER_SIZE];
                    let end =
                        self.head + Frame::new_unchecked(head, self.dialect).total_len() as u64;
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
        let payload = vec![0; len - HEADER_SIZE];
        q.compose(16384, Header::new(1, 0, 0), &[&payload], fd)
            .unwrap();
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
            q.compose(16384, Header::new(i as u32, 0, 0), &slices, None)
                .unwrap();
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
