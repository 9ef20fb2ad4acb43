//! [`Channel`]: an imsg stream over a socket (`struct imsgbuf`), a thin driver of
//! [`ChannelCore`] with blocking or non-blocking system calls.

use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::{Errno, IoSlice};

use crate::fd_guard;
use crate::socket::{self, Transport};
use crate::{ChannelCore, Config, Error, Message, MessageBuilder};

/// How long to wait before reading again after [`ReadStatus::FdGuard`]: the
/// socket stays readable meanwhile, so waiting for readability would spin.
pub const FD_GUARD_RETRY: Duration = Duration::from_millis(10);

/// How long to wait before writing again after [`WriteStatus::RetryLater`].
pub const WRITE_RETRY: Duration = Duration::from_millis(1);

/// Bytes waiting in the queue from which [`Channel`] starts sending while frames
/// are still being queued (see [`Channel::compose`]). Above the default socket
/// buffer of Linux (208 KiB), so one send can fill it.
pub const WRITE_AHEAD: usize = 256 * 1024;

/// Payloads of at least this many bytes, queued on an empty queue without a
/// descriptor, are written at once from the caller's buffer instead of being
/// copied into the queue first (see [`Channel::compose`]).
pub const WRITE_DIRECT: usize = 8192;

/// Most payload parts a direct write takes (more go through the queue).
const DIRECT_PARTS: usize = 7;

/// What [`Channel::read`] did. Each answer says what to wait for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadStatus {
    /// This many bytes were received (more frames may be ready for `get`).
    Read(usize),
    /// The peer closed the stream at a frame boundary.
    Eof,
    /// Nothing to read now (non-blocking socket): wait until the socket is
    /// readable.
    WouldBlock,
    /// The descriptor guard refused to read: on a channel with descriptor passing,
    /// fewer than [`FD_HEADROOM`](crate::FD_HEADROOM) descriptors can still be
    /// opened in this process, so a descriptor arriving now could be dropped by the
    /// kernel. Nothing was read and the socket **is still readable**: do not wait
    /// for readability (it would spin); retry after [`FD_GUARD_RETRY`] or once a
    /// descriptor was closed. Happens on blocking sockets too.
    FdGuard,
}

/// What [`Channel::write`] did. Each answer says what to wait for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStatus {
    /// This many bytes were written (more may be queued).
    Wrote(usize),
    /// Nothing is queued.
    Empty,
    /// `EAGAIN`: wait until the socket is writable.
    WouldBlock,
    /// `ENOBUFS` (the kernel is short of memory) or `ETOOMANYREFS` (too many
    /// descriptors in flight to a peer that has not read them yet): nothing was
    /// written, the socket may well be writable; retry after [`WRITE_RETRY`].
    RetryLater,
}

/// An imsg channel over a stream socket: a [`ChannelCore`] (send queue, receive
/// buffer) and the socket itself, which the channel owns (C's `struct imsgbuf`
/// plus its fd). The core's methods (queueing, taking messages) are reached
/// through `Deref`.
///
/// Works with blocking and non-blocking sockets alike. Frames are sent by
/// [`write`](Channel::write) and [`flush`](Channel::flush); once [`WRITE_AHEAD`]
/// bytes wait in the queue, queueing a frame also sends what the socket takes at
/// once, without ever waiting (see [`compose`](Channel::compose)).
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
    transport: Transport,
    core: ChannelCore,
    /// Queued bytes at which the next send ahead is tried: `WRITE_AHEAD` above
    /// what was left queued by the last write or send ahead.
    ahead_at: usize,
    /// The last [`write`](Channel::write) found or left the queue empty, and no
    /// large frame was queued since: the next large frame is sent at once.
    flushed: bool,
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

impl Deref for Channel {
    type Target = ChannelCore;

    #[inline]
    fn deref(&self) -> &ChannelCore {
        &self.core
    }
}

impl DerefMut for Channel {
    #[inline]
    fn deref_mut(&mut self) -> &mut ChannelCore {
        &mut self.core
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
        let is_socket = socket::is_socket(fd.as_fd())?;
        if is_socket {
            crate::sys::prepare_socket(fd.as_fd())?;
        }
        let transport = match (is_socket, config.fdpass) {
            (true, true) => Transport::SocketFdpass,
            (true, false) => Transport::Socket,
            (false, false) => Transport::Plain,
            (false, true) => return Err(Errno::NOTSOCK.into()),
        };
        Ok(Channel {
            fd,
            transport,
            core: ChannelCore::new(config),
            ahead_at: WRITE_AHEAD,
            flushed: true,
        })
    }

    /// Gives the socket back, discarding anything queued or buffered.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// One system call's worth of writing (`imsgbuf_write`): as many queued frames
    /// as one `sendmsg` takes, stopping before the next frame that carries a
    /// descriptor (each descriptor goes with its frame's first byte, one per call).
    /// A partial write resumes exactly where it stopped.
    ///
    /// [`Error::PeerClosed`] on `EPIPE` or `ECONNRESET` (the queue is then
    /// discarded, its descriptors closed); never `SIGPIPE`.
    pub fn write(&mut self) -> Result<WriteStatus, Error> {
        let Some(t) = self.core.transmit() else {
            self.ahead_at = WRITE_AHEAD;
            self.flushed = true;
            return Ok(WriteStatus::Empty);
        };
        match socket::send(self.fd.as_fd(), self.transport, t.bytes, t.fd) {
            Ok(n) => {
                self.core.written(n);
                self.ahead_at = self.core.queued_bytes() + WRITE_AHEAD;
                self.flushed = self.core.queued_bytes() == 0;
                Ok(WriteStatus::Wrote(n))
            }
            Err(Errno::AGAIN) => Ok(WriteStatus::WouldBlock),
            Err(Errno::NOBUFS) | Err(Errno::TOOMANYREFS) => Ok(WriteStatus::RetryLater),
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                let n = self.core.clear_queue();
                log::debug!("peer closed: {n} queued frames discarded");
                Err(Error::PeerClosed)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Queues one frame (`imsg_compose`), as [`ChannelCore::compose`] does, same
    /// arguments and errors.
    ///
    /// When [`WRITE_AHEAD`] bytes or more were already waiting, it first sends what
    /// the socket takes at once (one `sendmsg` with `MSG_DONTWAIT`, on a blocking
    /// socket too; never on a pipe). A program that queues a large batch before
    /// flushing thus has the reader working while it queues, instead of copying
    /// the whole batch first: 16 KiB frames flushed every 1,000 went from 0.82 of
    /// the raw socket's bytes/s to past it (see the crate README). A failure of
    /// that send changes nothing: the bytes stay queued and the next
    /// [`write`](Channel::write) or [`flush`](Channel::flush) reports it.
    ///
    /// A payload of [`WRITE_DIRECT`] bytes or more without a descriptor, queued
    /// right after a write or flush that emptied the queue, is sent the same way
    /// straight from `payload` (header and payload in one `sendmsg`), so it is not
    /// copied into the queue; only what the socket did not take is queued. A
    /// program that flushes after every large frame thus sends each without a copy,
    /// while one that queues a batch sends its first frame so and queues the rest
    /// (one send per frame would cost more than the copies it saves).
    // Always inlined, down to the send queue: left out of line by the compiler in
    // the process benchmark's writer, a 16-byte frame took 107 instructions to
    // queue and flush instead of 60 (callgrind).
    #[inline(always)]
    pub fn compose(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        payload: &[u8],
    ) -> Result<(), Error> {
        if payload.len() >= WRITE_DIRECT {
            return self.compose_large(ty, peerid, pid, fd, &[payload], payload.len());
        }
        self.write_ahead();
        self.core.compose(ty, peerid, pid, fd, payload)
    }

    /// Queues one frame whose payload is the concatenation of `parts`
    /// (`imsg_composev`), as [`ChannelCore::composev`], sending ahead and
    /// directly as [`compose`](Channel::compose) does.
    #[inline]
    pub fn composev(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        parts: &[&[u8]],
    ) -> Result<(), Error> {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if len >= WRITE_DIRECT {
            return self.compose_large(ty, peerid, pid, fd, parts, len);
        }
        self.write_ahead();
        self.core.composev(ty, peerid, pid, fd, parts)
    }

    /// Queues a frame of `len` ([`WRITE_DIRECT`] or more) payload bytes. Without a
    /// descriptor, right after a write that emptied the queue, it is sent in one
    /// `sendmsg` that does not wait, from the caller's buffers, and queued only if
    /// the socket took less than all of it (recording the part sent). As with
    /// sending ahead, a failure is left for the next write or flush, which meets
    /// it again.
    #[inline(never)]
    fn compose_large(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        parts: &[&[u8]],
        len: usize,
    ) -> Result<(), Error> {
        let flushed = std::mem::replace(&mut self.flushed, false);
        if !flushed || fd.is_some() || parts.len() > DIRECT_PARTS || self.core.wants_write() {
            self.write_ahead();
            return self.core.composev(ty, peerid, pid, fd, parts);
        }
        let header = self.core.frame_header(ty, peerid, pid, len)?;
        let mut iov = [IoSlice::new(&[]); DIRECT_PARTS + 1];
        iov[0] = IoSlice::new(&header);
        for (slot, p) in iov[1..].iter_mut().zip(parts) {
            *slot = IoSlice::new(p);
        }
        let sent =
            socket::send_vectored_nowait(self.fd.as_fd(), self.transport, &iov[..=parts.len()])
                .unwrap_or(0);
        if sent == header.len() + len {
            return Ok(());
        }
        self.core.composev(ty, peerid, pid, None, parts)?;
        self.core.written(sent);
        self.ahead_at = self.core.queued_bytes() + WRITE_AHEAD;
        Ok(())
    }

    /// Starts a frame written in pieces (`imsg_create`), as
    /// [`ChannelCore::create`], sending ahead as [`compose`](Channel::compose)
    /// does.
    #[inline]
    pub fn create(&mut self, ty: u32, peerid: u32, pid: i32) -> MessageBuilder<'_> {
        self.write_ahead();
        self.core.create(ty, peerid, pid)
    }

    /// Queues a received message again without its descriptor (`imsg_forward`),
    /// as [`ChannelCore::forward`], sending ahead as [`compose`](Channel::compose)
    /// does.
    #[inline]
    pub fn forward(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        self.write_ahead();
        self.core.forward(msg)
    }

    /// One send that does not wait, once [`WRITE_AHEAD`] more bytes were queued
    /// since the last write or send ahead (so a full socket costs one failed call
    /// per `WRITE_AHEAD` bytes, not one per frame). One comparison per frame.
    #[inline]
    fn write_ahead(&mut self) {
        if self.core.queued_bytes() >= self.ahead_at {
            self.send_now();
        }
    }

    #[cold]
    #[inline(never)]
    fn send_now(&mut self) {
        if let Some(t) = self.core.transmit() {
            // Any error is left for the next write or flush, which meets it again.
            if let Ok(n) = socket::send_nowait(self.fd.as_fd(), self.transport, t.bytes, t.fd) {
                self.core.written(n);
            }
        }
        self.ahead_at = self.core.queued_bytes() + WRITE_AHEAD;
    }

    /// Writes until the queue is empty (`imsgbuf_flush`). On a non-blocking socket
    /// it waits for `POLLOUT` between writes instead of spinning.
    pub fn flush(&mut self) -> Result<(), Error> {
        loop {
            match self.write()? {
                WriteStatus::Empty => return Ok(()),
                WriteStatus::Wrote(_) => {}
                WriteStatus::WouldBlock => socket::wait_writable(self.fd.as_fd())?,
                WriteStatus::RetryLater => std::thread::sleep(WRITE_RETRY),
            }
        }
    }

    /// One receive into the buffer (`imsgbuf_read`); then call
    /// [`get`](ChannelCore::get) until it answers `None`. See [`ReadStatus`] for
    /// the answers and what to wait for after each.
    ///
    /// Errors: [`Error::UnexpectedEof`] when the stream ended inside a frame;
    /// [`Error::DescriptorsLost`] on `MSG_CTRUNC` (the bytes are kept, see there);
    /// [`Error::Frame`] if the frame being received has a bad header (also reported
    /// by `get`); [`Error::Io`] for other failures.
    pub fn read(&mut self) -> Result<ReadStatus, Error> {
        if self.transport == Transport::SocketFdpass && fd_guard::refuse(self.fd.as_fd()) {
            log::debug!("descriptor guard: too few free descriptors, not reading");
            return Ok(ReadStatus::FdGuard);
        }
        let space = self.core.recv_space()?;
        let got = match socket::recv(self.fd.as_fd(), self.transport, space) {
            Ok(got) => got,
            Err(Errno::AGAIN) => return Ok(ReadStatus::WouldBlock),
            Err(Errno::CONNRESET) => return self.core.end_of_stream().map(|()| ReadStatus::Eof),
            Err(e) => return Err(e.into()),
        };
        if got.bytes == 0 {
            return self.core.end_of_stream().map(|()| ReadStatus::Eof);
        }
        if got.truncated {
            // The descriptors that did arrive are closed: which frame they belong
            // to is uncertain once some were lost.
            drop(got.fd);
            self.core.received(got.bytes, None);
            return Err(Error::DescriptorsLost);
        }
        self.core.received(got.bytes, got.fd);
        Ok(ReadStatus::Read(got.bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

    use super::*;
    use crate::OwnedMessage;

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
