//! The receive buffer: bytes read but not yet taken as frames, and the received
//! descriptors waiting for the frame they came with.
//!
//! A descriptor belongs to the frame whose first byte arrived in the same
//! `recvmsg` (the sender starts a `sendmsg` at each frame that carries one). So each
//! received descriptor is kept with the stream range `[start, end)` of the read that
//! brought it, and the last flagged frame that starts in that range takes it (see
//! [`RecvBuffer::take`] for why the last). It is kept until that frame is complete,
//! even when the read ended inside the frame's header, and closed as soon as no
//! frame starting in its range can claim it.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use imsg_codec::{Framing, Header, Status, HEADER_SIZE};

use crate::Error;

/// Size the receive buffer grows to as reads fill it (C's `IBUF_READ_SIZE` rounded
/// up): one read then takes up to 64 KiB, as C's does.
pub(crate) const DEFAULT_RECV_BUFFER: usize = 64 * 1024;

/// Size of the receive buffer's first allocation (or the minimum size if smaller).
/// An idle channel, or one that receives a few small frames, holds no more; each
/// read that fills the buffer doubles it, up to the minimum size.
const FIRST_ALLOCATION: usize = 1024;

/// The largest size the receive buffer can be asked to start at (16 MiB). It
/// still grows past it when frames arrive that need more.
pub const MAX_RECV_BUFFER: usize = 16 * 1024 * 1024;

/// Storage larger than this is given back to the allocator once it stays unused.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// How many times the buffer must empty holding at most a quarter of its storage
/// before storage above [`SHRINK_ABOVE`] is given back.
const SHRINK_AFTER_EMPTIES: u32 = 64;

/// A received descriptor waiting for its frame.
#[derive(Debug)]
struct PendingFd {
    /// Stream offset of the first byte of the read that brought it.
    start: u64,
    /// Stream offset just past the last byte of that read.
    end: u64,
    fd: OwnedFd,
}

/// One frame taken from the buffer.
pub(crate) struct TakenFrame<'a> {
    pub header: Header,
    pub payload: &'a [u8],
    pub fd: Option<OwnedFd>,
}

/// The header and total length of the frame at the start of `held` if all of it
/// is there; `None` if more bytes are needed; the codec's error for a bad header.
#[inline]
fn frame_at(held: &[u8], framing: &Framing) -> Result<Option<(Header, usize)>, Error> {
    Ok(match framing.split(held)? {
        Status::Partial { .. } => None,
        Status::Complete((frame, used)) => Some((frame.header(), used)),
    })
}

#[derive(Debug)]
pub(crate) struct RecvBuffer {
    framing: Framing,
    /// Storage, all of it initialised; `buf[rpos..wpos]` is data not yet taken.
    buf: Vec<u8>,
    rpos: usize,
    wpos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    pending: VecDeque<PendingFd>,
    /// Size the buffer grows to as reads fill it, and is kept at least at once
    /// grown.
    min_size: usize,
    /// The last read filled all the room it was given: the peer may have more.
    filled: bool,
    /// The peer closed the stream.
    eof: bool,
    /// Most bytes held when the buffer emptied since the last shrink check, and
    /// how many times it emptied since.
    peak: usize,
    empties: u32,
}

impl RecvBuffer {
    pub fn new(framing: Framing, min_size: usize) -> RecvBuffer {
        RecvBuffer {
            framing,
            buf: Vec::new(),
            rpos: 0,
            wpos: 0,
            base: 0,
            pending: VecDeque::new(),
            min_size: min_size.clamp(HEADER_SIZE, MAX_RECV_BUFFER),
            eof: false,
            filled: false,
            peak: 0,
            empties: 0,
        }
    }

    /// Changes the minimum size (within `16..=MAX_RECV_BUFFER`); takes effect when
    /// the buffer is next (re)allocated. Returns the size applied.
    pub fn set_min_size(&mut self, n: usize) -> usize {
        self.min_size = n.clamp(HEADER_SIZE, MAX_RECV_BUFFER);
        if self.rpos == self.wpos {
            self.buf = Vec::new();
            self.base += self.wpos as u64;
            self.rpos = 0;
            self.wpos = 0;
        }
        self.min_size
    }

    /// Starts over at the front of the storage once every byte was taken. The
    /// storage is kept; above [`SHRINK_ABOVE`] (and the minimum size) it goes back
    /// to the allocator only when it emptied [`SHRINK_AFTER_EMPTIES`] times in a
    /// row holding at most a quarter of it.
    fn emptied(&mut self) {
        self.peak = self.peak.max(self.wpos);
        self.base += self.wpos as u64;
        self.rpos = 0;
        self.wpos = 0;
        self.empties += 1;
        if self.empties < SHRINK_AFTER_EMPTIES {
            return;
        }
        let len = self.buf.len();
        if len > SHRINK_ABOVE.max(self.min_size) && self.peak <= len / 4 {
            self.buf.truncate((self.peak * 2).max(self.min_size));
            self.buf.shrink_to_fit();
        }
        self.peak = 0;
        self.empties = 0;
    }

    /// Reads the frames not yet taken with `framing` (the peer's dialect was learnt).
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// Bytes received and not yet taken as frames.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.wpos - self.rpos
    }

    /// The bytes not yet taken, plus the next `extra` bytes of spare room that a
    /// read has just filled (not yet committed).
    pub fn unread_with(&self, extra: usize) -> &[u8] {
        &self.buf[self.rpos..self.wpos + extra]
    }

    /// Received descriptors not yet given to a frame.
    pub fn pending_fds(&self) -> usize {
        self.pending.len()
    }

    /// The total length of the frame at the read position, if its header is there.
    fn current_frame_len(&self) -> Result<Option<usize>, Error> {
        let held = &self.buf[self.rpos..self.wpos];
        Ok(self
            .framing
            .parse_header(held)?
            .complete()
            .map(|h| h.len as usize))
    }

    /// Makes room for the next read and returns it: compacts, and, when the buffer
    /// is full, doubles it, no further than the frame being received needs. So the
    /// buffer grows with the bytes that actually arrived (at most twice them, past
    /// the minimum size), never to a length a header merely announces. A bad header
    /// at the read position is reported here too, so a broken stream cannot make
    /// the buffer grow.
    pub fn spare(&mut self) -> Result<&mut [u8], Error> {
        if self.rpos == self.wpos {
            self.emptied();
        }
        // Memory follows the bytes that arrive: a small first allocation, doubled
        // each time a read fills it, up to the minimum size.
        if self.buf.len() < self.min_size && (self.buf.is_empty() || self.filled) {
            let size = match self.buf.len() {
                0 => FIRST_ALLOCATION,
                n => n * 2,
            };
            self.buf.resize(size.min(self.min_size), 0);
        }
        let want = self.current_frame_len()?.unwrap_or(HEADER_SIZE);
        let free = self.buf.len() - self.wpos;
        if self.rpos > 0 && (free < self.buf.len() / 2 || self.buf.len() - self.rpos < want) {
            self.buf.copy_within(self.rpos..self.wpos, 0);
            self.base += self.rpos as u64;
            self.wpos -= self.rpos;
            self.rpos = 0;
        }
        if self.wpos == self.buf.len() {
            let mut size = self.buf.len().saturating_mul(2);
            if self.rpos + want > self.buf.len() {
                // Inside a frame: no more than it needs.
                size = size.min(self.rpos + want);
            }
            self.buf.resize(size, 0);
        }
        Ok(&mut self.buf[self.wpos..])
    }

    /// Records a read of `n` bytes into the spare space and the descriptor it
    /// brought. A descriptor that no frame can claim is closed at once.
    pub fn commit(&mut self, n: usize, fd: Option<OwnedFd>) {
        let start = self.wpos;
        self.wpos += n;
        self.filled = self.wpos == self.buf.len();
        if let Some(fd) = fd {
            if self.frame_starts_within(start, self.wpos) {
                self.pending.push_back(PendingFd {
                    start: self.base + start as u64,
                    end: self.base + self.wpos as u64,
                    fd,
                });
            } else {
                log::debug!("closing a descriptor that arrived with no frame start");
            }
        }
    }

    /// Whether a frame starts in `buf[from..to]`, walking the headers from the read
    /// position. An invalid header answers no (the stream is broken from there).
    fn frame_starts_within(&self, from: usize, to: usize) -> bool {
        let mut s = self.rpos;
        while s < from {
            // An incomplete header at s: the next frame starts past everything
            // received.
            match self.framing.parse_header(&self.buf[s..self.wpos]) {
                Ok(Status::Complete(h)) => s += h.len as usize,
                Ok(Status::Partial { .. }) | Err(_) => return false,
            }
        }
        s < to
    }

    /// Takes the next complete frame, with its descriptor if it carries one.
    ///
    /// Which frame a descriptor belongs to: Linux ends a receive with the
    /// descriptor-carrying chunk of the sender (it stops after detaching its
    /// descriptors), and a sender starts a `sendmsg` at each frame with a
    /// descriptor, so the descriptor's frame is the **last** flagged frame that
    /// starts in the read that brought it. Earlier flagged frames in the same read
    /// came without one (a peer that marks frames without passing descriptors).
    /// When a later frame starting in that read has an incomplete header, this
    /// frame is held back (`None`) until the header is complete or the stream ends.
    #[inline]
    pub fn take(&mut self) -> Result<Option<TakenFrame<'_>>, Error> {
        if !self.pending.is_empty() {
            return self.take_with_fds();
        }
        // No descriptor waiting (the common case): no descriptor bookkeeping.
        let start = self.rpos;
        let held = &self.buf[start..self.wpos];
        let Some((header, used)) = frame_at(held, &self.framing)? else {
            return Ok(None);
        };
        self.rpos = start + used;
        Ok(Some(TakenFrame {
            header,
            payload: &held[HEADER_SIZE..used],
            fd: None,
        }))
    }

    /// [`take`](RecvBuffer::take) while received descriptors wait for their frame.
    #[inline(never)]
    fn take_with_fds(&mut self) -> Result<Option<TakenFrame<'_>>, Error> {
        let start = self.rpos;
        let Some((header, used)) = frame_at(&self.buf[start..self.wpos], &self.framing)? else {
            return Ok(None);
        };
        let Some(fd) = self.claim(header.has_fd, used) else {
            return Ok(None);
        };
        self.rpos = start + used;
        if !self.pending.is_empty() {
            self.close_strays(self.base + self.rpos as u64);
        }
        Ok(Some(TakenFrame {
            header,
            payload: &self.buf[start + HEADER_SIZE..start + used],
            fd,
        }))
    }

    /// The descriptor of the frame of `used` bytes at the read position:
    /// `Some(Some(fd))`, `Some(None)` for none, `None` to hold the frame back.
    fn claim(&mut self, flagged: bool, used: usize) -> Option<Option<OwnedFd>> {
        let at = self.base + self.rpos as u64;
        self.close_strays(at);
        let Some(end) = self
            .pending
            .front()
            .filter(|p| flagged && p.start <= at)
            .map(|p| p.end)
        else {
            return Some(None);
        };
        match self.later_flagged_frame(self.rpos + used, end) {
            Some(true) => Some(None),
            Some(false) => Some(self.pending.pop_front().map(|p| p.fd)),
            None => None,
        }
    }

    /// Closes the descriptors whose read held no frame start at or after `at`.
    fn close_strays(&mut self, at: u64) {
        while self.pending.front().is_some_and(|p| p.end <= at) {
            log::debug!("closing a descriptor no flagged frame claimed");
            self.pending.pop_front();
        }
    }

    /// Whether a flagged frame starts in `[from, end)` (`from` a buffer index of a
    /// frame start, `end` a stream offset): `None` if a header there is incomplete
    /// and the stream may still complete it.
    fn later_flagged_frame(&self, from: usize, end: u64) -> Option<bool> {
        let mut s = from;
        while self.base + (s as u64) < end {
            match self.framing.parse_header(&self.buf[s..self.wpos]) {
                Ok(Status::Partial { .. }) => return if self.eof { Some(false) } else { None },
                Ok(Status::Complete(h)) if h.has_fd => return Some(true),
                Ok(Status::Complete(h)) => s += h.len as usize,
                Err(_) => return Some(false),
            }
        }
        Some(false)
    }

    /// Records that the stream ended: frames are no longer held back.
    pub fn set_eof(&mut self) {
        self.eof = true;
    }

    /// Bytes of an incomplete frame at the end of the buffer (0 if the buffer holds
    /// only complete frames or an invalid header, which `take` reports).
    pub fn incomplete_tail(&self) -> usize {
        let mut s = self.rpos;
        loop {
            match self.framing.split(&self.buf[s..self.wpos]) {
                Ok(Status::Complete((_, used))) => s += used,
                Ok(Status::Partial { .. }) => return self.wpos - s,
                Err(_) => return 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsg_codec::Dialect;

    /// Puts `frames` frames of `len` bytes into the buffer as reads would, and
    /// takes them.
    fn round(rb: &mut RecvBuffer, frames: usize, len: usize) {
        let framing = Framing::new(Dialect::Current, 1 << 24).unwrap();
        let mut bytes = Vec::new();
        for _ in 0..frames {
            framing
                .emit(
                    &mut bytes,
                    Header::new(1, 0, 0),
                    &vec![0; len - HEADER_SIZE],
                )
                .unwrap();
        }
        let mut rest = &bytes[..];
        let mut taken = 0;
        while taken < frames {
            if !rest.is_empty() {
                let space = rb.spare().unwrap();
                let n = space.len().min(rest.len());
                space[..n].copy_from_slice(&rest[..n]);
                rb.commit(n, None);
                rest = &rest[n..];
            }
            while rb.take().unwrap().is_some() {
                taken += 1;
            }
        }
    }

    /// A new buffer allocates 1 KiB, not its 64 KiB minimum size, and grows to
    /// that size only as reads fill it.
    #[test]
    fn starts_small_and_grows_as_reads_fill_it() {
        let framing = Framing::new(Dialect::Current, 16384).unwrap();
        let mut rb = RecvBuffer::new(framing, DEFAULT_RECV_BUFFER);
        round(&mut rb, 3, 100);
        assert_eq!(rb.buf.len(), FIRST_ALLOCATION);
        // 2,000 bytes: one read fills the 1 KiB, the buffer doubles for the rest.
        round(&mut rb, 20, 100);
        assert_eq!(rb.buf.len(), 2048);
        // 100 KB: reads fill the buffer until it is 64 KiB, and no further.
        round(&mut rb, 1000, 100);
        assert_eq!(rb.buf.len(), DEFAULT_RECV_BUFFER);
        round(&mut rb, 1000, 100);
        assert_eq!(rb.buf.len(), DEFAULT_RECV_BUFFER);
        // A smaller minimum size is also the first allocation.
        let mut rb = RecvBuffer::new(framing, 100);
        round(&mut rb, 1, 50);
        assert_eq!(rb.buf.len(), 100);
    }

    /// The storage grown for large frames is kept across rounds, and given back
    /// once it stays unused.
    #[test]
    fn storage_is_kept_and_given_back_when_unused() {
        let framing = Framing::new(Dialect::Current, 1 << 24).unwrap();
        let mut rb = RecvBuffer::new(framing, DEFAULT_RECV_BUFFER);
        round(&mut rb, 1, 8 << 20);
        let big = (rb.buf.as_ptr(), rb.buf.len());
        assert!(big.1 >= 8 << 20);
        for _ in 0..10 {
            round(&mut rb, 1, 8 << 20);
            assert_eq!((rb.buf.as_ptr(), rb.buf.len()), big);
        }
        for _ in 0..(2 * SHRINK_AFTER_EMPTIES) {
            round(&mut rb, 1, 100);
        }
        assert_eq!(rb.buf.len(), DEFAULT_RECV_BUFFER);
    }
}
