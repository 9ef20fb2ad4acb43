//! [`ChannelCore`]: the protocol state of a channel without any I/O: the send
//! queue and the receive buffer. Bytes and descriptors go in, frames come out; it
//! says what to write next and is told how much was written.
//!
//! [`Channel`](crate::Channel) (blocking or non-blocking system calls) and
//! `AsyncChannel` (tokio) are thin drivers over it; another event loop can drive it
//! the same way.

use std::ops::{Deref, DerefMut};
use std::os::fd::{BorrowedFd, OwnedFd};

use imsg_codec::detect::{detect_stream, Detection};
use imsg_codec::{Dialect, FrameBuilder, Framing, Header, Writer};

use crate::recv_buffer::{RecvBuffer, DEFAULT_RECV_BUFFER};
pub use crate::send_queue::SendBuf;
use crate::send_queue::{FrameRecord, QueueParts, SendQueue};
use crate::{Config, Error, Message, OwnedMessage};

/// What to write next: bytes and at most one descriptor to send with their first
/// byte ([`ChannelCore::transmit`]).
#[derive(Debug)]
pub struct Transmit<'a> {
    /// The bytes; a driver may write any prefix of them.
    pub bytes: &'a [u8],
    /// The descriptor to send (`SCM_RIGHTS`) with the first byte, if any.
    pub fd: Option<BorrowedFd<'a>>,
}

/// The state of an imsg channel without its socket (C's `struct imsgbuf` less the
/// fd): the send queue, the receive buffer and the descriptors travelling with
/// frames.
///
/// A driver moves the bytes:
///
/// - **sending**: frames are queued with [`compose`](ChannelCore::compose) and
///   friends; [`transmit`](ChannelCore::transmit) says what to write next (stopping
///   before the next frame that carries a descriptor, so each descriptor goes with
///   its frame's first byte), [`written`](ChannelCore::written) records how much
///   was. [`wants_write`](ChannelCore::wants_write) tells an event loop whether to
///   wait for writability.
/// - **receiving**: [`recv_space`](ChannelCore::recv_space) is where the next read
///   goes, [`received`](ChannelCore::received) records it (with the descriptor that
///   came with it), [`end_of_stream`](ChannelCore::end_of_stream) the peer's close;
///   [`get`](ChannelCore::get) takes complete frames.
///
/// ```
/// use imsg_io::{ChannelCore, Config};
/// let mut tx = ChannelCore::new(Config::default());
/// let mut rx = ChannelCore::new(Config::default());
/// tx.compose(100, 7, 0, None, b"hello")?;
/// // "The wire": copy what tx wants to write into rx's receive space.
/// while let Some(t) = tx.transmit() {
///     let space = rx.recv_space()?;
///     let n = t.bytes.len().min(space.len());
///     space[..n].copy_from_slice(&t.bytes[..n]);
///     tx.written(n);
///     rx.received(n, None);
/// }
/// let msg = rx.get()?.expect("a whole frame");
/// assert_eq!((msg.msg_type(), msg.peerid(), msg.payload()), (100, 7, &b"hello"[..]));
/// # Ok::<(), imsg_io::Error>(())
/// ```
#[derive(Debug)]
pub struct ChannelCore {
    config: Config,
    send: SendQueue,
    recv: RecvBuffer,
    /// Still learning the peer's dialect (see [`ChannelCore::set_detect_dialect`]).
    detecting: bool,
    /// The dialect learnt, to send in once the queue is empty.
    learnt: Option<Dialect>,
    /// The peer's dialect was learnt from its frames.
    detected: bool,
    /// The last write carried a descriptor and nothing was received since.
    fd_unanswered: bool,
}

impl ChannelCore {
    /// An empty channel state with `config`.
    pub fn new(config: Config) -> ChannelCore {
        ChannelCore {
            send: SendQueue::new(config.framing),
            recv: RecvBuffer::new(config.framing, DEFAULT_RECV_BUFFER),
            detecting: false,
            learnt: None,
            detected: false,
            fd_unanswered: false,
            config,
        }
    }

    /// Whether anything is queued to write: what a poll loop asks before
    /// waiting for `POLLOUT`.
    #[inline]
    pub fn wants_write(&self) -> bool {
        self.send.pending_bytes() > 0
    }

    /// What to write next, or `None` when nothing is queued: bytes from the first
    /// unsent one up to (not including) the next frame that carries a descriptor,
    /// or, if the first unsent byte starts such a frame, from there up to the
    /// following one, with its descriptor. Report what was written with
    /// [`written`](ChannelCore::written).
    #[inline]
    pub fn transmit(&self) -> Option<Transmit<'_>> {
        self.send
            .next_chunk()
            .map(|(bytes, fd)| Transmit { bytes, fd })
    }

    /// Records that the first `n` bytes of the last [`transmit`](ChannelCore::transmit)
    /// were written, its descriptor with them if `n > 0` (the descriptor is closed
    /// here). A partial write resumes exactly where it stopped.
    #[inline]
    pub fn written(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let with_fd = self.send.next_chunk().is_some_and(|(_, fd)| fd.is_some());
        self.send.advance(n, with_fd);
        self.fd_unanswered |= with_fd;
    }

    /// Where the next read goes: room after the bytes buffered (grown or compacted
    /// as needed). A bad header already buffered is reported here too
    /// ([`Error::Frame`]), so a broken stream cannot make the buffer grow.
    #[inline]
    pub fn recv_space(&mut self) -> Result<&mut [u8], Error> {
        if self.detecting {
            self.learn_dialect(0);
        }
        self.recv.spare()
    }

    /// Records that `n` bytes were read into [`recv_space`](ChannelCore::recv_space)
    /// (`n` at most its length), and the descriptor that came with them. A
    /// descriptor that no frame can claim is closed at once.
    #[inline]
    pub fn received(&mut self, n: usize, fd: Option<OwnedFd>) {
        if n == 0 {
            return;
        }
        self.fd_unanswered = false;
        if self.detecting {
            self.learn_dialect(n);
        }
        self.recv.commit(n, fd);
    }

    /// Records that the peer closed the stream. Frames held back until the end of
    /// the stream can then be taken; [`Error::UnexpectedEof`] if the stream ended
    /// inside a frame (the complete frames before it can still be taken).
    pub fn end_of_stream(&mut self) -> Result<(), Error> {
        self.recv.set_eof();
        match self.recv.incomplete_tail() {
            0 => Ok(()),
            buffered => Err(Error::UnexpectedEof { buffered }),
        }
    }

    /// The settings this channel was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the size the receive buffer grows to as reads fill it, and is kept at
    /// least at once grown (default 64 KiB, C's read buffer; one `read` receives at
    /// most what is free in it), within `16..=`[`MAX_RECV_BUFFER`](crate::MAX_RECV_BUFFER);
    /// returns the size applied. The buffer starts at 1 KiB (or this size if
    /// smaller) and doubles each time a read fills it, so memory follows the bytes
    /// that arrive; it still grows past this size, as bytes arrive, to hold a frame
    /// up to the frame limit. Takes effect when the buffer is empty.
    pub fn set_recv_buffer_size(&mut self, bytes: usize) -> usize {
        self.recv.set_min_size(bytes)
    }

    /// Learns the peer's dialect from what it sends (`on`), instead of trusting
    /// the dialect of [`Config::framing`], which is then only the dialect used until
    /// a frame tells. A frame limit the learnt dialect cannot express is capped at
    /// its largest frame.
    ///
    /// Frames without a descriptor read the same in both dialects; the first frame
    /// the peer sends with one decides (see [`imsg_codec::detect()`]). From then on
    /// the channel reads in that dialect and sends in it too (frames queued before
    /// are sent as they were encoded). With a limit of 65,552 bytes or more a legacy
    /// descriptor frame could also be a long current frame: it is then read as
    /// current. [`dialect`](ChannelCore::dialect) tells what was learnt.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use imsg_io::{Channel, Config, Dialect};
    /// let (a, b) = UnixStream::pair()?;
    /// let cfg = Config::default().with_fdpass(true);
    /// let mut peer = Channel::new(a, cfg.clone().with_dialect(Dialect::Current))?;
    /// let mut rx = Channel::new(b, cfg)?; // starts as legacy
    /// rx.set_detect_dialect(true);
    /// peer.compose(1, 0, 0, Some(std::fs::File::open("/dev/null")?.into()), b"")?;
    /// peer.flush()?;
    /// rx.read()?;
    /// assert!(rx.get()?.expect("a frame").flagged_fd());
    /// assert_eq!(rx.dialect(), Dialect::Current);
    /// # Ok::<(), imsg_io::Error>(())
    /// ```
    pub fn set_detect_dialect(&mut self, on: bool) {
        self.detecting = on;
    }

    /// The dialect frames are read in now: the configured one, or the one learnt
    /// (see [`set_detect_dialect`](ChannelCore::set_detect_dialect)).
    pub fn dialect(&self) -> Dialect {
        self.config.framing.dialect()
    }

    /// Looks for a header that decides the peer's dialect in the unread bytes and
    /// the `extra` just received.
    fn learn_dialect(&mut self, extra: usize) {
        let max = self.config.framing.max_frame();
        let found = match detect_stream(self.recv.unread_with(extra), max) {
            Detection::Dialect(d) => d,
            Detection::Ambiguous => Dialect::Current,
            Detection::Undecided | Detection::Invalid => return,
        };
        log::debug!("peer speaks the {found} imsg dialect");
        self.detecting = false;
        self.detected = true;
        self.config = self.config.clone().with_dialect(found);
        self.recv.set_framing(self.config.framing);
        self.learnt = Some(found);
        self.send_in_learnt_dialect();
    }

    /// Switches the send queue to the learnt dialect once it is empty.
    fn send_in_learnt_dialect(&mut self) {
        if let Some(d) = self.learnt {
            let framing = self
                .config
                .framing
                .with_dialect(d)
                .unwrap_or(Framing::standard(d));
            if self.send.set_framing(framing) {
                self.learnt = None;
            }
        }
    }

    /// The dialect the peer may speak instead of this channel's, when the stream
    /// ended (or a write failed with [`Error::PeerClosed`]) right after this channel
    /// sent a frame that carried a descriptor, with nothing received since: what a
    /// peer of the other dialect does when it cannot parse that frame (a tmux 3.6
    /// server drops a 3.5 client at its first descriptor). `None` otherwise, and
    /// once the dialect was learnt from the peer.
    ///
    /// [`DialectHint`](crate::DialectHint) words it for an error message.
    pub fn peer_may_speak(&self) -> Option<Dialect> {
        (self.fd_unanswered && !self.detected).then(|| self.dialect().other())
    }

    fn header(&self, ty: u32, peerid: u32, pid: i32) -> Header {
        let pid = if pid == 0 { self.config.pid } else { pid };
        Header::new(ty, peerid, pid as u32)
    }

    fn check_fd(&self, fd: &Option<OwnedFd>) -> Result<(), Error> {
        if fd.is_some() && !self.config.fdpass {
            return Err(Error::FdPassingDisabled);
        }
        Ok(())
    }

    // ---- send side ----

    /// Queues one frame (`imsg_compose`). `pid` 0 means the channel's pid
    /// ([`Config::pid`]). `fd`, if given, travels with this frame's first byte and
    /// is closed once sent.
    ///
    /// Errors leave the queue unchanged: [`Error::FdPassingDisabled`] or
    /// [`Error::TooLong`] (if `16 + payload.len()` is above the frame limit,
    /// [`Config::framing`]) close `fd`; [`Error::QueueFull`] (past the high-water
    /// mark, [`Config::queue_limit`]) hands it back.
    #[inline(always)]
    pub fn compose(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        payload: &[u8],
    ) -> Result<(), Error> {
        self.composev(ty, peerid, pid, fd, &[payload])
    }

    /// Queues one frame whose payload is the concatenation of `parts`
    /// (`imsg_composev`). Same rules as [`compose`](ChannelCore::compose).
    #[inline(always)]
    pub fn composev(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        parts: &[&[u8]],
    ) -> Result<(), Error> {
        self.check_fd(&fd)?;
        let len = parts
            .iter()
            .fold(imsg_codec::HEADER_SIZE, |n, p| n.saturating_add(p.len()));
        let fd = queue_room(self.send.pending_bytes(), len, self.config.queue_limit, fd)?;
        self.send_in_learnt_dialect();
        let header = self.header(ty, peerid, pid);
        self.send.compose(header, parts, fd)?;
        Ok(())
    }

    /// The 16 header bytes of a frame with `payload_len` payload bytes as
    /// [`compose`](ChannelCore::compose) would queue it now (same dialect, pid
    /// rule and limit; no descriptor), for a driver that writes a frame straight
    /// from the caller's buffers while nothing is queued, so the payload is not
    /// copied into the queue. If the write takes only part of the frame, the
    /// driver queues the whole frame with `compose` and records the part sent
    /// with [`written`](ChannelCore::written). [`Error::TooLong`] above the frame
    /// limit.
    pub fn frame_header(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        payload_len: usize,
    ) -> Result<[u8; imsg_codec::HEADER_SIZE], Error> {
        self.send_in_learnt_dialect();
        let framing = self.send.framing();
        let (len, max) = (
            payload_len.saturating_add(imsg_codec::HEADER_SIZE),
            framing.max_frame(),
        );
        if len > max {
            return Err(Error::TooLong { len, max });
        }
        let mut out = [0; imsg_codec::HEADER_SIZE];
        // 16 <= len <= max, which the dialect can express: emit cannot refuse it.
        self.header(ty, peerid, pid)
            .with_len(len as u32)
            .emit(framing.dialect(), &mut out)
            .map_err(|_| Error::TooLong { len, max })?;
        Ok(out)
    }

    /// Starts a frame whose payload is written in pieces (`imsg_create`); the
    /// builder dereferences to an [`imsg_codec::Writer`] (`imsg_add`, `ibuf_add_*`)
    /// capped at the frame limit ([`Config::framing`]). [`MessageBuilder::close`] queues it
    /// (`imsg_close`); dropping the builder without closing queues nothing.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use imsg_io::{Channel, Config};
    /// # let (a, _b) = UnixStream::pair()?;
    /// let mut ch = Channel::new(a, Config::default())?;
    /// let mut m = ch.create(12, 0, 0);
    /// m.add_h32(7)?;
    /// m.add(b"abc")?;
    /// m.close(None)?;
    /// drop(ch.create(13, 0, 0)); // abandoned: nothing queued
    /// assert_eq!(ch.queue_len(), 1);
    /// # Ok::<(), imsg_io::Error>(())
    /// ```
    pub fn create(&mut self, ty: u32, peerid: u32, pid: i32) -> MessageBuilder<'_> {
        self.send_in_learnt_dialect();
        let header = self.header(ty, peerid, pid);
        let fdpass = self.config.fdpass;
        let (queued, limit) = (self.send.pending_bytes(), self.config.queue_limit);
        let QueueParts {
            framing,
            buf,
            record,
        } = self.send.parts();
        let start = imsg_codec::FrameBuf::len(buf);
        let builder = match framing.builder(buf, header) {
            Ok(b) => b,
            // The send buffer grows as needed: it always has room for a header.
            Err(e) => unreachable!("the send buffer refused a header: {e}"),
        };
        MessageBuilder {
            builder,
            record,
            start,
            fdpass,
            queued,
            limit,
        }
    }

    /// Queues a received message again, unchanged (type, peer id, pid, payload),
    /// without its descriptor, as `imsg_forward` does. A pid of 0 becomes this
    /// channel's pid, as in C.
    pub fn forward(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        self.compose(msg.msg_type(), msg.peerid(), msg.pid(), None, msg.payload())
    }

    /// Frames queued and not yet completely written (`imsgbuf_queuelen`, counted
    /// in frames).
    #[inline]
    pub fn queue_len(&self) -> usize {
        self.send.len()
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn queued_bytes(&self) -> usize {
        self.send.pending_bytes()
    }

    /// Discards the send queue, closing queued descriptors (the write half of
    /// `imsgbuf_clear`). Returns the number of frames discarded.
    pub fn clear_queue(&mut self) -> usize {
        self.send.clear()
    }

    // ---- receive side ----

    /// The next complete message, its payload borrowed from the receive buffer
    /// (`imsgbuf_get`); `None` when no whole frame is buffered.
    ///
    /// A descriptor that arrived with the frame is in the message; a frame flagged
    /// for a descriptor that did not arrive has `flagged_fd()` true and no
    /// descriptor. Errors: [`Error::Frame`] for a frame with a bad header
    /// (length below 16 or above the frame limit, or a frame of the other
    /// dialect: [`DialectMismatch`](imsg_codec::FrameError::DialectMismatch)). The stream
    /// cannot be resynchronised after that.
    #[inline]
    pub fn get(&mut self) -> Result<Option<Message<'_>>, Error> {
        let Some(f) = self.recv.take()? else {
            return Ok(None);
        };
        Ok(Some(Message {
            header: f.header,
            payload: f.payload,
            fd: f.fd,
        }))
    }

    /// Same as [`get`](ChannelCore::get), with the payload copied into a new buffer
    /// (see [`get_into`](ChannelCore::get_into) to reuse one).
    #[inline]
    pub fn get_owned(&mut self) -> Result<Option<OwnedMessage>, Error> {
        let mut msg = OwnedMessage::default();
        Ok(self.get_into(&mut msg)?.then_some(msg))
    }

    /// Same as [`get_owned`](ChannelCore::get_owned), into a message the caller keeps:
    /// a receive loop that reuses one `OwnedMessage` allocates only when a payload
    /// is larger than any before it.
    ///
    /// Answers `true` when the next complete message was taken: `msg`'s header,
    /// payload and descriptor are replaced by it (the payload is copied into
    /// `msg`'s buffer, keeping its capacity; a descriptor `msg` still held from
    /// before is closed). Answers `false`, leaving `msg` untouched, when no whole
    /// frame is buffered. Errors are those of [`get`](ChannelCore::get); `msg` is then
    /// untouched too.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use imsg_io::{Channel, Config, OwnedMessage};
    ///
    /// let (a, b) = UnixStream::pair().unwrap();
    /// let mut tx = Channel::new(a, Config::default()).unwrap();
    /// let mut rx = Channel::new(b, Config::default()).unwrap();
    /// tx.compose(1, 0, 0, None, b"first").unwrap();
    /// tx.compose(2, 0, 0, None, b"second").unwrap();
    /// tx.flush().unwrap();
    /// rx.read().unwrap();
    ///
    /// let mut msg = OwnedMessage::default();
    /// while rx.get_into(&mut msg).unwrap() {
    ///     println!("type {} payload {:?}", msg.msg_type(), msg.payload());
    /// }
    /// assert_eq!(msg.payload(), b"second");
    /// ```
    pub fn get_into(&mut self, msg: &mut OwnedMessage) -> Result<bool, Error> {
        match self.get()? {
            Some(m) => {
                msg.fill_from(m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Bytes received and not yet taken as messages.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.recv.buffered()
    }

    /// Received descriptors waiting for the frame they came with to be complete.
    pub fn pending_fds(&self) -> usize {
        self.recv.pending_fds()
    }
}

/// Whether a frame of `len` bytes may join `queued` bytes under the high-water
/// mark `limit`: an empty queue takes any frame; otherwise the total must stay
/// within `limit`. On refusal `fd` comes back inside the error.
fn queue_room(
    queued: usize,
    len: usize,
    limit: Option<usize>,
    fd: Option<OwnedFd>,
) -> Result<Option<OwnedFd>, Error> {
    match limit {
        Some(limit) if queued > 0 && queued.saturating_add(len) > limit => {
            Err(Error::QueueFull { fd, queued, limit })
        }
        _ => Ok(fd),
    }
}

/// A frame being written in pieces; see [`ChannelCore::create`].
///
/// Dereferences to [`imsg_codec::Writer`] for the `add_*`/`set_*` methods.
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    builder: FrameBuilder<'a, SendBuf>,
    /// Where the queue records the frame once it is complete.
    record: FrameRecord<'a>,
    start: usize,
    fdpass: bool,
    /// Bytes queued before this frame, and the channel's high-water mark.
    queued: usize,
    limit: Option<usize>,
}

impl MessageBuilder<'_> {
    /// Queues the frame (`imsg_close`), with `fd` travelling with it.
    /// [`Error::FdPassingDisabled`] if `fd` is given on a channel without
    /// descriptor passing (`fd` is closed); [`Error::QueueFull`] past the
    /// channel's high-water mark (`fd` handed back). Nothing is queued on error.
    pub fn close(self, fd: Option<OwnedFd>) -> Result<(), Error> {
        if fd.is_some() && !self.fdpass {
            return Err(Error::FdPassingDisabled);
        }
        let len = imsg_codec::HEADER_SIZE + self.builder.len();
        let fd = queue_room(self.queued, len, self.limit, fd)?;
        let MessageBuilder {
            mut builder,
            record,
            start,
            ..
        } = self;
        builder.set_has_fd(fd.is_some());
        builder.finish();
        record.commit(start, fd);
        Ok(())
    }
}

impl<'a> Deref for MessageBuilder<'a> {
    type Target = Writer<'a, SendBuf>;

    fn deref(&self) -> &Writer<'a, SendBuf> {
        &self.builder
    }
}

impl<'a> DerefMut for MessageBuilder<'a> {
    fn deref_mut(&mut self) -> &mut Writer<'a, SendBuf> {
        &mut self.builder
    }
}
