//! The send queue: every queued frame in ONE reusable byte buffer, plus a small
//! side queue of the descriptors that travel with some of them.
//!
//! Positions are stream offsets (bytes ever queued on this channel), so dropping
//! sent bytes from the front of the buffer never renumbers anything.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_codec::{EmitError, FrameBuf, Framing, Header, NoSpace, RawHeader};

/// Sent bytes are dropped from the front of the buffer when everything was sent,
/// or, when a frame is appended, once they are at least this many and at least
/// half of the buffer (so each byte is moved at most about once, and a flush that
/// empties the queue moves nothing: compacting inside the write loop copied half
/// of every 16 MiB batch once more).
const COMPACT_MIN: usize = 64 * 1024;

/// Storage larger than this is given back to the allocator once it stays unused.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Storage above [`SHRINK_ABOVE`] is given back once this many times its size
/// went through the queue with the queue never holding more than a quarter of it.
/// Counted in bytes, not in drains: a channel that sends ahead while queueing
/// (see `Channel::compose`) empties its queue many times within one batch.
const SHRINK_AFTER_CARRIED: usize = 16;

/// A frame starting at least this many bytes after the last marked one is marked
/// (its stream offset and number kept), so a write that ends inside the queue
/// reads the headers of at most this many bytes of frames to count the frames it
/// completed, instead of every header it passed: that walk, one dependent load
/// per frame, took 4-5 % of the samples of a stream of 16-byte payloads written
/// 256 KiB at a time (see the README, bench (a)).
const MARK_EVERY: u64 = 4096;

/// The count of queued frames not completely written, with sparse marks of frame
/// starts: queueing a frame is an increment and a comparison.
#[derive(Debug, Default)]
pub(crate) struct FrameCount {
    /// Frames not completely written.
    frames: usize,
    /// Frames ever queued (the number the next frame gets).
    queued: u64,
    /// Stream offset from which the next frame start is marked.
    next_mark: u64,
    /// Marked frame starts not yet passed by a write: (stream offset, number).
    marks: VecDeque<(u64, u64)>,
}

impl FrameCount {
    /// Counts a frame queued at stream offset `start`.
    #[inline]
    pub fn add(&mut self, start: u64) {
        if start >= self.next_mark {
            self.marks.push_back((start, self.queued));
            self.next_mark = start + MARK_EVERY;
        }
        self.frames += 1;
        self.queued += 1;
    }

    /// Every frame was written or dropped; the next one starts at stream offset
    /// `next`.
    fn clear(&mut self, next: u64) {
        self.frames = 0;
        self.marks.clear();
        self.next_mark = next;
    }
}

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
    /// Most bytes held at a drain since the last shrink check, and bytes that went
    /// through since.
    peak: usize,
    carried: usize,
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
        self.peak = self.peak.max(self.end);
        self.carried = self.carried.saturating_add(n);
        self.bytes.copy_within(n..self.end, 0);
        self.end -= n;
    }

    /// Empties the buffer after everything in it was written. The storage is kept
    /// for the next batch; storage above [`SHRINK_ABOVE`] goes back to the
    /// allocator only once [`SHRINK_AFTER_CARRIED`] times its size went through
    /// with at most a quarter of it in use.
    fn drain(&mut self) {
        self.peak = self.peak.max(self.end);
        self.carried = self.carried.saturating_add(self.end);
        self.end = 0;
        if self.carried / SHRINK_AFTER_CARRIED < self.bytes.len() {
            return;
        }
        if self.bytes.len() > SHRINK_ABOVE && self.peak <= self.bytes.len() / 4 {
            self.bytes.truncate((self.peak * 2).max(COMPACT_MIN));
            self.bytes.shrink_to_fit();
        }
        self.peak = 0;
        self.carried = 0;
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
    fn put(&mut self, data: &[u8]) -> Result<(), NoSpace> {
        self.room(data.len()).copy_from_slice(data);
        self.end += data.len();
        Ok(())
    }

    #[inline]
    fn put_unfilled(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
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

    fn put_zeroed(&mut self, n: usize) -> Result<&mut [u8], NoSpace> {
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

/// Queued frames, not yet fully written.
///
/// Only the frames that carry a descriptor have their position recorded (in
/// `fds`); the others are counted, with a mark every [`MARK_EVERY`] bytes. When a
/// write ends inside the queue, the frames it completed are found from the last
/// mark it reached by reading the headers after it (at most [`MARK_EVERY`] bytes
/// of them), so queueing a frame costs an increment and a comparison; a write
/// that empties the queue reads none.
#[derive(Debug)]
pub(crate) struct SendQueue {
    /// Dialect and frame limit of the frames queued; changed only when the queue
    /// is empty, so every queued header is read in it.
    framing: Framing,
    /// Frames back to back; `buf[..sent]` is already written.
    buf: SendBuf,
    /// Bytes at the front of `buf` already written.
    sent: usize,
    /// Buffer index of the first byte of the oldest frame not completely written
    /// (at most `sent`; `buf.end` when every frame is). Sent bytes are dropped from
    /// the front only up to here, so its header stays readable.
    head: usize,
    /// Frames from `head` on: the frames not completely written.
    count: FrameCount,
    /// The last write left enough sent bytes before `head` to compact at the
    /// next append (see [`SendQueue::compact`]).
    compact_due: bool,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Descriptors not yet sent, each with the stream offset of its frame's first byte.
    fds: VecDeque<(u64, OwnedFd)>,
}

/// The parts of a queue a frame builder appends to (see `MessageBuilder`).
pub(crate) struct QueueParts<'a> {
    pub framing: Framing,
    pub buf: &'a mut SendBuf,
    pub record: FrameRecord<'a>,
}

/// What the queue records of each frame appended: its count, and the position of
/// the frame's descriptor if it has one.
#[derive(Debug)]
pub(crate) struct FrameRecord<'a> {
    frames: &'a mut FrameCount,
    fds: &'a mut VecDeque<(u64, OwnedFd)>,
    base: u64,
}

impl FrameRecord<'_> {
    /// Records a frame appended from buffer index `start`, with its descriptor.
    #[inline]
    pub fn commit(self, start: usize, fd: Option<OwnedFd>) {
        self.frames.add(self.base + start as u64);
        if let Some(fd) = fd {
            self.fds.push_back((self.base + start as u64, fd));
        }
    }
}

impl SendQueue {
    /// Queues later frames with `framing`, if the queue is empty (answers whether
    /// it was applied): the frames queued are counted by reading their headers,
    /// which must all be in one dialect.
    pub fn set_framing(&mut self, framing: Framing) -> bool {
        let empty = self.count.frames == 0;
        if empty {
            self.framing = framing;
        }
        empty
    }

    /// The dialect and frame limit frames are queued with.
    #[inline]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// An empty queue for frames of `framing`.
    pub fn new(framing: Framing) -> SendQueue {
        SendQueue {
            framing,
            buf: SendBuf::default(),
            sent: 0,
            head: 0,
            count: FrameCount::default(),
            compact_due: false,
            base: 0,
            fds: VecDeque::new(),
        }
    }

    /// Frames queued and not fully written.
    #[inline]
    pub fn len(&self) -> usize {
        self.count.frames
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn pending_bytes(&self) -> usize {
        self.buf.end - self.sent
    }

    /// Appends one frame whose payload is the concatenation of `parts`, refusing
    /// one above the frame limit; the queue is unchanged on error (and `fd`
    /// closed).
    #[inline(always)]
    pub fn compose(
        &mut self,
        header: Header,
        parts: &[&[u8]],
        fd: Option<OwnedFd>,
    ) -> Result<(), EmitError> {
        self.compact();
        let start = self.buf.end;
        self.framing
            .emitv(&mut self.buf, header.with_fd(fd.is_some()), parts)?;
        self.parts_here().record.commit(start, fd);
        Ok(())
    }

    /// Access for appending one frame with a builder.
    pub fn parts(&mut self) -> QueueParts<'_> {
        self.compact();
        self.parts_here()
    }

    /// The parts, without compacting (buffer indexes stay valid).
    fn parts_here(&mut self) -> QueueParts<'_> {
        QueueParts {
            framing: self.framing,
            buf: &mut self.buf,
            record: FrameRecord {
                frames: &mut self.count,
                fds: &mut self.fds,
                base: self.base,
            },
        }
    }

    /// What the next system call should send: bytes from the first unsent one up to
    /// (not including) the next frame that carries a descriptor, or, if the first
    /// unsent byte starts such a frame, that frame and everything after it up to the
    /// following descriptor, with the descriptor. None when empty.
    pub fn next_chunk(&self) -> Option<(&[u8], Option<BorrowedFd<'_>>)> {
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
            // Everything went: every frame is complete.
            self.base += self.sent as u64;
            self.sent = 0;
            self.head = 0;
            self.count.clear(self.base);
            self.compact_due = false;
            self.buf.drain();
        } else {
            self.pass_complete_frames();
            self.compact_due = self.head >= COMPACT_MIN && self.head * 2 >= self.buf.end;
        }
    }

    /// Moves `head` past the frames now completely written. `head` is a frame
    /// start, and every header from there on was written by this queue in its
    /// current dialect (at least 16 bytes each), so the walk ends.
    fn pass_complete_frames(&mut self) {
        let sent_at = self.base + self.sent as u64;
        let mut reached = None;
        while let Some(&(at, number)) = self.count.marks.front() {
            if at > sent_at {
                break;
            }
            reached = Some((at, number));
            self.count.marks.pop_front();
        }
        if let Some((at, number)) = reached {
            let at = (at - self.base) as usize;
            if at > self.head {
                self.head = at;
                self.count.frames = (self.count.queued - number) as usize;
            }
        }
        let dialect = self.framing.dialect();
        let sent = &self.buf.filled()[..self.sent];
        let mut head = self.head;
        let mut done = 0;
        while let Some(header) = sent.get(head..).and_then(|b| b.first_chunk()) {
            let end = head + RawHeader::from_array(header).total_len(dialect);
            if end > sent.len() {
                break;
            }
            head = end;
            done += 1;
        }
        self.head = head;
        self.count.frames -= done;
    }

    /// Drops the written bytes from the front of the buffer, up to the oldest frame
    /// not completely written, when the last write left them at least
    /// [`COMPACT_MIN`] and at least half of what the buffer holds (decided by
    /// [`advance`](SendQueue::advance): appending only lowers that share, so the
    /// first append after a write is the one to do it). Done before a frame is
    /// appended, never inside a write loop.
    #[inline]
    fn compact(&mut self) {
        if self.compact_due {
            self.compact_due = false;
            let head = self.head;
            self.buf.drop_front(head);
            self.base += head as u64;
            self.sent -= head;
            self.head = 0;
        }
    }

    /// Discards everything queued, closing the queued descriptors. Returns how many
    /// frames were discarded.
    pub fn clear(&mut self) -> usize {
        let frames = self.count.frames;
        self.base += self.buf.end as u64;
        self.buf.end = 0;
        self.sent = 0;
        self.head = 0;
        self.count.clear(self.base);
        self.compact_due = false;
        self.fds.clear();
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsg_codec::{Dialect, HEADER_SIZE};

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
        q.compose(Header::new(1, 0, 0), &[&payload], fd).unwrap();
    }

    #[test]
    fn frames_land_whole_across_growth_and_builder_use() {
        use imsg_codec::Status;
        let framing = Framing::standard(Dialect::Current);
        let mut q = SendQueue::new(framing);
        let mut want: Vec<Vec<u8>> = Vec::new();
        for i in 0..3000usize {
            let parts: Vec<Vec<u8>> = (0..i % 4)
                .map(|k| vec![(i + k) as u8; (i * 7 + k) % 45])
                .collect();
            let slices: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            q.compose(Header::new(i as u32, 0, 0), &slices, None)
                .unwrap();
            want.push(parts.concat());
            if i % 100 == 0 {
                // An abandoned builder leaves nothing; a finished one leaves its frame.
                drop(framing.builder(&mut q.buf, Header::new(1, 0, 0)));
                let mut b = framing.builder(&mut q.buf, Header::new(2, 0, 0)).unwrap();
                b.add(&[9; 40]).unwrap();
                b.finish();
                want.push(vec![9; 40]);
            }
        }
        let mut held = q.buf.filled();
        for w in &want {
            let Status::Complete((frame, used)) = framing.split(held).unwrap() else {
                panic!("incomplete frame");
            };
            assert_eq!(frame.payload(), &w[..]);
            held = &held[used..];
        }
        assert!(held.is_empty());
    }

    #[test]
    fn frame_count_follows_partial_writes_and_compaction() {
        let mut q = SendQueue::new(Framing::standard(Dialect::Legacy));
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
        let mut q = SendQueue::new(Framing::standard(Dialect::Legacy));
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

    /// Partial writes of every size, with descriptor frames, builder frames and
    /// compaction between them: the frame count stays exact, every descriptor goes
    /// with the first byte of its own frame, and the bytes written are the frames
    /// queued.
    #[test]
    fn partial_writes_keep_frames_and_descriptors_together() {
        use imsg_codec::Status;
        let framing = Framing::standard(Dialect::Current);
        let mut q = SendQueue::new(framing);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // What went out: the bytes, and the stream offset of each descriptor.
        let (mut wire, mut fds_at) = (Vec::<u8>::new(), Vec::<usize>::new());
        let mut ends = VecDeque::new(); // stream end of each frame not fully written
        let mut queued_to = 0usize;
        let mut ty = 0u32;
        for round in 0..3000 {
            for _ in 0..next(6) {
                let fd = (next(4) == 0).then(devnull);
                let len = HEADER_SIZE + next(if round % 5 == 0 { 5000 } else { 48 }) as usize;
                ty += 1;
                if next(3) == 0 {
                    let parts = q.parts();
                    let start = parts.buf.len();
                    let mut b = framing
                        .builder(&mut *parts.buf, Header::new(ty, 0, 0))
                        .unwrap();
                    b.add(&vec![ty as u8; len - HEADER_SIZE]).unwrap();
                    b.set_has_fd(fd.is_some());
                    b.finish();
                    parts.record.commit(start, fd);
                } else {
                    let payload = vec![ty as u8; len - HEADER_SIZE];
                    let header = Header::new(ty, 0, 0).with_fd(fd.is_some());
                    q.compose(header, &[&payload], fd).unwrap();
                }
                queued_to += len;
                ends.push_back(queued_to);
            }
            for _ in 0..next(3) {
                let Some((chunk, fd)) = q.next_chunk() else {
                    break;
                };
                let n = (1 + next(9000) as usize).min(chunk.len());
                if fd.is_some() {
                    fds_at.push(wire.len());
                }
                wire.extend_from_slice(&chunk[..n]);
                q.advance(n, fd.is_some());
            }
            while ends.front().is_some_and(|&e| e <= wire.len()) {
                ends.pop_front();
            }
            assert_eq!(q.len(), ends.len(), "round {round}");
            assert_eq!(q.pending_bytes(), queued_to - wire.len());
        }
        while let Some((chunk, fd)) = q.next_chunk() {
            let n = chunk.len();
            if fd.is_some() {
                fds_at.push(wire.len());
            }
            wire.extend_from_slice(chunk);
            q.advance(n, fd.is_some());
        }
        assert_eq!((q.len(), q.pending_bytes(), q.fds.len()), (0, 0, 0));
        let (mut at, mut flagged, mut want_ty) = (0, Vec::new(), 1);
        while at < wire.len() {
            let Status::Complete((frame, used)) = framing.split(&wire[at..]).unwrap() else {
                panic!("incomplete frame at {at}");
            };
            assert_eq!(frame.header().ty, want_ty);
            assert!(frame.payload().iter().all(|&b| b == want_ty as u8));
            if frame.header().has_fd {
                flagged.push(at);
            }
            want_ty += 1;
            at += used;
        }
        assert_eq!(want_ty, ty + 1);
        assert_eq!(
            fds_at, flagged,
            "descriptors left with their frames' first bytes"
        );
    }

    /// The dialect changes only when the queue is empty: a legacy descriptor
    /// frame read as current would announce a frame of 65,552 bytes or more, so
    /// counting the queued frames needs the dialect they were written in.
    #[test]
    fn dialect_changes_only_on_an_empty_queue() {
        let mut q = SendQueue::new(Framing::standard(Dialect::Legacy));
        push(&mut q, 40, Some(devnull()));
        push(&mut q, 30, None);
        assert!(!q.set_framing(Framing::standard(Dialect::Current)));
        q.advance(20, true); // partway into the first frame
        assert_eq!(q.len(), 2);
        q.advance(25, false); // the first frame and 5 bytes of the second
        assert_eq!(q.len(), 1);
        push(&mut q, 20, None);
        let legacy = q.buf.filled()[q.buf.end - 16..].to_vec();
        q.advance(25, false);
        assert_eq!(q.len(), 1);
        q.advance(20, false);
        assert_eq!(q.len(), 0);
        assert!(q.set_framing(Framing::standard(Dialect::Current)));
        push(&mut q, 20, Some(devnull()));
        push(&mut q, 20, None);
        assert_ne!(
            q.buf.filled()[..16],
            legacy[..],
            "written in the new dialect"
        );
        q.advance(21, true);
        assert_eq!(q.len(), 1);
    }

    /// A queue that sends large batches keeps its storage from one batch to the
    /// next (no allocation and no fresh pages per batch), and gives it back only
    /// once it stays unused.
    #[test]
    fn storage_is_kept_across_batches_and_given_back_when_unused() {
        let mut q = SendQueue::new(Framing::standard(Dialect::Legacy));
        let write_all = |q: &mut SendQueue| {
            while let Some((chunk, _)) = q.next_chunk() {
                let n = chunk.len();
                q.advance(n, false);
            }
        };
        let mut storage = None;
        for _ in 0..20 {
            // 1000 frames of 16 KiB: 16 MiB queued before a flush.
            for _ in 0..1000 {
                push(&mut q, 16384, None);
            }
            write_all(&mut q);
            let now = (q.buf.bytes.as_ptr(), q.buf.bytes.len());
            assert!(now.1 >= 16_384_000);
            assert_eq!(
                *storage.get_or_insert(now),
                now,
                "storage replaced between batches"
            );
        }
        // Batches of a quarter of the storage at most from then on: the large
        // storage goes back once 16 times its size went through in such batches
        // (the count started during the large batches may have to run out
        // first), not before.
        let size = q.buf.bytes.len();
        let mut carried = 0;
        while q.buf.bytes.len() == size {
            for _ in 0..100 {
                push(&mut q, 16384, None);
            }
            write_all(&mut q);
            carried += 100 * 16384;
        }
        assert!(q.buf.bytes.len() <= SHRINK_ABOVE, "{}", q.buf.bytes.len());
        assert!(
            (SHRINK_AFTER_CARRIED * size..2 * SHRINK_AFTER_CARRIED * size + 2_000_000)
                .contains(&carried),
            "given back after {carried} bytes, storage {size}"
        );
    }
}
