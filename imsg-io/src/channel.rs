//! [`Channel`]: an imsg stream over a socket (`struct imsgbuf`).

use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use std::collections::VecDeque;

use imsg_codec::detect::{detect_stream, Detection};
use imsg_codec::{Dialect, FrameBuilder, Framing, Header, Writer};

use crate::fd_guard;
use crate::recv_buffer::{RecvBuffer, DEFAULT_RECV_BUFFER};
pub use crate::send_queue::SendBuf;
use crate::send_queue::{QueueParts, SendQueue};
use crate::socket::{self, Transport};
use crate::{Config, Error, Message, OwnedMessage};
use rustix::io::Errno;

/// What [`Channel::read`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// This many bytes were received (more frames may be ready for `get`).
    Read(usize),
    /// The peer closed the stream at a frame boundary.
    Eof,
    /// Nothing to read now (non-blocking socket), or the descriptor guard refused
    /// to read (see [`Channel::fd_guard_blocked`]).
    WouldBlock,
}

/// What one write attempt did (private: `write` folds the last two into `Ok(0)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    Wrote(usize),
    /// `EAGAIN`: wait for the socket to become writable.
    WouldBlock,
    /// `ENOBUFS`: the socket may be writable, the kernel is short of memory.
    NoBuffers,
    Empty,
}

/// How long to wait before retrying after `ENOBUFS`.
pub(crate) const NOBUFS_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// An imsg channel over a stream socket: a send queue, a receive buffer and the
/// socket itself, which the channel owns (C's `struct imsgbuf` plus its fd).
///
/// Works with blocking and non-blocking sockets alike. Nothing is sent until
/// [`write`](Channel::write) or [`flush`](Channel::flush).
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use imsg_io::{Channel, Config, ReadStatus};
/// let (a, b) = UnixStream::pair()?;
/// let mut tx = Channel::new(a, Config::default())?;
/// let mut rx = Channel::new(b, Config::default())?;
/// tx.compose(100, 7, 0, None, b"hello")?;
/// tx.flush()?;
/// assert!(matches!(rx.read()?, ReadStatus::Read(21)));
/// let msg = rx.get()?.expect("a whole frame");
/// assert_eq!((msg.msg_type(), msg.peerid(), msg.payload()), (100, 7, &b"hello"[..]));
/// assert_eq!(msg.pid(), std::process::id() as i32);
/// # Ok::<(), imsg_io::Error>(())
/// ```
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    config: Config,
    transport: Transport,
    send: SendQueue,
    recv: RecvBuffer,
    guard_blocked: bool,
    /// Still learning the peer's dialect (see [`Channel::set_detect_dialect`]).
    detecting: bool,
    /// The dialect learnt, to send in once the queue is empty.
    learnt: Option<Dialect>,
    /// The peer's dialect was learnt from its frames.
    detected: bool,
    /// The last write carried a descriptor and nothing was received since.
    fd_unanswered: bool,
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Channel {
    /// A channel over `fd`, a connected `AF_UNIX` stream socket (`imsgbuf_init`;
    /// `imsgbuf_allow_fdpass` and `imsgbuf_set_maxsize` are in `config`).
    ///
    /// Errors: [`Error::Io`] (`ENOTSOCK`) if `fd` is not a socket but descriptor
    /// passing is asked for. Other descriptors (a pipe, say) work without
    /// descriptor passing, with `read`/`write`.
    pub fn new(fd: impl Into<OwnedFd>, config: Config) -> Result<Channel, Error> {
        let fd = fd.into();
        let transport = match (socket::is_socket(fd.as_fd())?, config.fdpass) {
            (true, true) => Transport::SocketFdpass,
            (true, false) => Transport::Socket,
            (false, false) => Transport::Plain,
            (false, true) => return Err(Errno::NOTSOCK.into()),
        };
        Ok(Channel {
            fd,
            transport,
            send: SendQueue::new(config.framing),
            recv: RecvBuffer::new(config.framing, DEFAULT_RECV_BUFFER),
            guard_blocked: false,
            detecting: false,
            learnt: None,
            detected: false,
            fd_unanswered: false,
            config,
        })
    }

    /// The settings this channel was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gives the socket back, discarding anything queued or buffered.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sets the size the receive buffer starts at and is kept at least at (default
    /// 64 KiB, C's read buffer; one `read` receives at most what is free in it). It
    /// still grows to hold a frame up to `max_frame`. Takes effect when the buffer
    /// is empty.
    pub fn set_recv_buffer_size(&mut self, bytes: usize) {
        self.recv.set_min_size(bytes);
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
    /// current. [`dialect`](Channel::dialect) tells what was learnt.
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
    /// (see [`set_detect_dialect`](Channel::set_detect_dialect)).
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
            if self.send.len() == 0 {
                self.send.set_framing(
                    self.config
                        .framing
                        .with_dialect(d)
                        .unwrap_or(Framing::standard(d)),
                );
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
    /// Errors leave the queue unchanged and close `fd`:
    /// [`Error::FdPassingDisabled`], or [`Error::TooLong`] if `16 + payload.len()`
    /// is above the frame limit ([`Config::framing`]).
    #[inline]
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
    /// (`imsg_composev`). Same rules as [`compose`](Channel::compose).
    #[inline]
    pub fn composev(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        parts: &[&[u8]],
    ) -> Result<(), Error> {
        self.check_fd(&fd)?;
        self.send_in_learnt_dialect();
        let header = self.header(ty, peerid, pid);
        self.send.compose(header, parts, fd)?;
        Ok(())
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
        let QueueParts {
            framing,
            buf,
            lens,
            fds,
            base,
        } = self.send.parts();
        let start = imsg_codec::FrameBuf::len(buf);
        let builder = match framing.builder(buf, header) {
            Ok(b) => b,
            // The send buffer grows as needed: it always has room for a header.
            Err(e) => unreachable!("the send buffer refused a header: {e}"),
        };
        MessageBuilder {
            builder,
            lens,
            fds,
            base,
            start,
            fdpass,
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

    /// One system call's worth of writing (`imsgbuf_write`): as many queued frames as
    /// one `sendmsg` takes, stopping before the next frame that carries a
    /// descriptor (each descriptor goes with its frame's first byte, one per call).
    /// A partial write resumes exactly where it stopped.
    ///
    /// Returns the bytes written, or `Ok(0)` when the queue is empty or the socket
    /// would block (`EAGAIN`, `ENOBUFS`). [`Error::PeerClosed`] on `EPIPE` or
    /// `ECONNRESET` (the queue is then discarded, its descriptors closed); never
    /// `SIGPIPE`.
    pub fn write(&mut self) -> Result<usize, Error> {
        match self.write_once()? {
            WriteOutcome::Wrote(n) => Ok(n),
            WriteOutcome::WouldBlock | WriteOutcome::NoBuffers | WriteOutcome::Empty => Ok(0),
        }
    }

    pub(crate) fn write_once(&mut self) -> Result<WriteOutcome, Error> {
        let Some((chunk, pass)) = self.send.next_chunk() else {
            return Ok(WriteOutcome::Empty);
        };
        let with_fd = pass.is_some();
        match socket::send(self.fd.as_fd(), self.transport, chunk, pass) {
            Ok(n) => {
                self.send.advance(n, with_fd && n > 0);
                self.fd_unanswered |= with_fd && n > 0;
                Ok(WriteOutcome::Wrote(n))
            }
            Err(Errno::AGAIN) => Ok(WriteOutcome::WouldBlock),
            Err(Errno::NOBUFS) => Ok(WriteOutcome::NoBuffers),
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                let n = self.send.clear();
                log::debug!("peer closed: {n} queued frames discarded");
                Err(Error::PeerClosed)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes until the queue is empty (`imsgbuf_flush`). On a non-blocking socket
    /// it waits for `POLLOUT` between writes instead of spinning.
    pub fn flush(&mut self) -> Result<(), Error> {
        loop {
            match self.write_once()? {
                WriteOutcome::Empty => return Ok(()),
                WriteOutcome::Wrote(_) => {}
                WriteOutcome::WouldBlock => socket::wait_writable(self.fd.as_fd())?,
                WriteOutcome::NoBuffers => std::thread::sleep(NOBUFS_RETRY),
            }
        }
    }

    // ---- receive side ----

    /// One receive into the buffer (`imsgbuf_read`); then call
    /// [`get`](Channel::get) until it answers `None`.
    ///
    /// - `Read(n)`: `n` bytes arrived.
    /// - `Eof`: the peer closed the stream after a whole frame.
    /// - `WouldBlock`: nothing to read on a non-blocking socket, **or** the
    ///   descriptor guard refused to read: on a channel with descriptor passing,
    ///   fewer than [`FD_HEADROOM`](crate::FD_HEADROOM) descriptors can still be
    ///   opened in this process, so a descriptor arriving now could be dropped by
    ///   the kernel. The socket is left untouched (and stays readable: do not wait
    ///   for readability, which would spin); [`fd_guard_blocked`](Channel::fd_guard_blocked)
    ///   tells the two apart. Wait for a descriptor to be closed, or retry after a
    ///   delay. This happens on blocking sockets too.
    ///
    /// Errors: [`Error::UnexpectedEof`] when the stream ended inside a frame;
    /// [`Error::DescriptorsLost`] on `MSG_CTRUNC` (the bytes are kept, see there);
    /// [`Error::Frame`] if the frame being received has a bad header (also reported
    /// by `get`); [`Error::Io`] for other failures.
    pub fn read(&mut self) -> Result<ReadStatus, Error> {
        self.guard_blocked = false;
        if self.detecting {
            self.learn_dialect(0);
        }
        if self.transport == Transport::SocketFdpass && fd_guard::exhausted(self.fd.as_fd()) {
            log::debug!("descriptor guard: too few free descriptors, not reading");
            self.guard_blocked = true;
            return Ok(ReadStatus::WouldBlock);
        }
        let space = self.recv.spare()?;
        let got = match socket::recv(self.fd.as_fd(), self.transport, space) {
            Ok(got) => got,
            Err(Errno::AGAIN) => return Ok(ReadStatus::WouldBlock),
            Err(Errno::CONNRESET) => return self.end_of_stream(),
            Err(e) => return Err(e.into()),
        };
        if got.bytes == 0 {
            return self.end_of_stream();
        }
        self.fd_unanswered = false;
        if self.detecting {
            self.learn_dialect(got.bytes);
        }
        if got.truncated {
            // The descriptors that did arrive are closed: which frame they belong
            // to is uncertain once some were lost.
            drop(got.fd);
            self.recv.commit(got.bytes, None);
            return Err(Error::DescriptorsLost);
        }
        self.recv.commit(got.bytes, got.fd);
        Ok(ReadStatus::Read(got.bytes))
    }

    fn end_of_stream(&mut self) -> Result<ReadStatus, Error> {
        self.recv.set_eof();
        match self.recv.incomplete_tail() {
            0 => Ok(ReadStatus::Eof),
            buffered => Err(Error::UnexpectedEof { buffered }),
        }
    }

    /// Whether the last [`read`](Channel::read) answered `WouldBlock` because of the
    /// descriptor guard rather than an empty socket.
    pub fn fd_guard_blocked(&self) -> bool {
        self.guard_blocked
    }

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

    /// Same as [`get`](Channel::get), with the payload copied into a new buffer
    /// (see [`get_into`](Channel::get_into) to reuse one).
    #[inline]
    pub fn get_owned(&mut self) -> Result<Option<OwnedMessage>, Error> {
        let mut msg = OwnedMessage::default();
        Ok(self.get_into(&mut msg)?.then_some(msg))
    }

    /// Same as [`get_owned`](Channel::get_owned), into a message the caller keeps:
    /// a receive loop that reuses one `OwnedMessage` allocates only when a payload
    /// is larger than any before it.
    ///
    /// Answers `true` when the next complete message was taken: `msg`'s header,
    /// payload and descriptor are replaced by it (the payload is copied into
    /// `msg`'s buffer, keeping its capacity; a descriptor `msg` still held from
    /// before is closed). Answers `false`, leaving `msg` untouched, when no whole
    /// frame is buffered. Errors are those of [`get`](Channel::get); `msg` is then
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

/// A frame being written in pieces; see [`Channel::create`].
///
/// Dereferences to [`imsg_codec::Writer`] for the `add_*`/`set_*` methods.
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    builder: FrameBuilder<'a, SendBuf>,
    lens: &'a mut VecDeque<usize>,
    fds: &'a mut VecDeque<(u64, OwnedFd)>,
    base: u64,
    start: usize,
    fdpass: bool,
}

impl MessageBuilder<'_> {
    /// Queues the frame (`imsg_close`), with `fd` travelling with it.
    /// [`Error::FdPassingDisabled`] if `fd` is given on a channel without
    /// descriptor passing: nothing is queued and `fd` is closed.
    pub fn close(self, fd: Option<OwnedFd>) -> Result<(), Error> {
        if fd.is_some() && !self.fdpass {
            return Err(Error::FdPassingDisabled);
        }
        let MessageBuilder {
            mut builder,
            lens,
            fds,
            base,
            start,
            ..
        } = self;
        builder.set_has_fd(fd.is_some());
        lens.push_back(builder.finish());
        if let Some(fd) = fd {
            fds.push_back((base + start as u64, fd));
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

    use super::*;

    fn pair() -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        let config = Config::default().with_fdpass(true);
        (
            Channel::new(a, config.clone()).unwrap(),
            Channel::new(b, config).unwrap(),
        )
    }

    /// `get_into` reuses the message's buffer, moves header, flag and descriptor in,
    /// and closes a descriptor the message still held from before.
    #[test]
    fn get_into_reuses_buffer_and_replaces_descriptor() {
        let (mut tx, mut rx) = pair();
        // The write end of a pipe travels with the first frame; once every copy of
        // it is closed, the read end sees end of file (no fd counting needed).
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        let fl = fcntl_getfl(&pipe_r).unwrap();
        fcntl_setfl(&pipe_r, fl | OFlags::NONBLOCK).unwrap();
        tx.compose(1, 11, 21, Some(pipe_w), &[0xa5; 100]).unwrap();
        tx.compose(2, 12, 22, None, b"0123456789").unwrap();
        tx.flush().unwrap();
        while rx.buffered() < 2 * 16 + 110 {
            assert!(matches!(rx.read().unwrap(), ReadStatus::Read(_)));
        }

        let mut msg = OwnedMessage::default();
        assert!(rx.get_into(&mut msg).unwrap());
        let h = msg.header();
        assert_eq!((h.ty, h.peerid, h.pid, h.len), (1, 11, 21, 116));
        assert!(msg.flagged_fd());
        assert!(msg.fd().is_some());
        assert_eq!(msg.payload(), &[0xa5; 100][..]);
        let mut byte = [0u8; 1];
        // The received copy of the write end is still open.
        assert_eq!(
            rustix::io::read(&pipe_r, &mut byte).unwrap_err(),
            Errno::AGAIN
        );
        let (ptr, cap) = (msg.payload().as_ptr(), msg.payload_capacity());
        assert!(cap >= 100);

        assert!(rx.get_into(&mut msg).unwrap());
        let h = msg.header();
        assert_eq!((h.ty, h.peerid, h.pid, h.len), (2, 12, 22, 26));
        assert!(!msg.flagged_fd());
        assert!(msg.fd().is_none());
        assert_eq!(msg.payload(), b"0123456789");
        // Same buffer: no allocation for the second message.
        assert_eq!(msg.payload().as_ptr(), ptr);
        assert_eq!(msg.payload_capacity(), cap);
        // The unclaimed descriptor of the first message was closed on overwrite.
        assert_eq!(rustix::io::read(&pipe_r, &mut byte).unwrap(), 0);

        // Nothing more buffered: `false`, and the message is left as it was.
        assert!(!rx.get_into(&mut msg).unwrap());
        assert_eq!(msg.msg_type(), 2);
        assert_eq!(msg.payload(), b"0123456789");
    }

    /// `get_owned` goes through the same path and hands over the descriptor.
    #[test]
    fn get_owned_moves_descriptor() {
        let (mut tx, mut rx) = pair();
        let (_pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        tx.compose(3, 0, 5, Some(pipe_w), b"x").unwrap();
        tx.flush().unwrap();
        while rx.buffered() < 17 {
            assert!(matches!(rx.read().unwrap(), ReadStatus::Read(_)));
        }
        let mut m = rx.get_owned().unwrap().expect("a message");
        assert_eq!((m.msg_type(), m.pid(), m.payload()), (3, 5, &b"x"[..]));
        assert!(m.flagged_fd());
        assert!(m.take_fd().is_some());
        assert!(rx.get_owned().unwrap().is_none());
    }
}
