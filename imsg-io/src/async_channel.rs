//! [`AsyncChannel`]: a [`Channel`] driven by tokio (feature `tokio`).

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

use crate::{Channel, Error, OwnedMessage, ReadStatus, WriteStatus, FD_GUARD_RETRY, WRITE_RETRY};

/// A [`Channel`] in tokio's reactor through [`AsyncFd`]: async receive and flush;
/// queueing stays synchronous through [`channel_mut`](AsyncChannel::channel_mut).
///
/// For an event loop over several channels (and other sources),
/// [`poll_read`](AsyncChannel::poll_read) and [`poll_flush`](AsyncChannel::poll_flush)
/// wait for readable and writable, or, when the descriptor guard refuses to read
/// or the kernel asks to retry a write, for the retry delay. The runtime must have
/// I/O and time enabled.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), imsg_io::Error> {
/// use std::os::unix::net::UnixStream;
/// use imsg_io::{AsyncChannel, Channel, Config};
/// let (a, b) = UnixStream::pair()?;
/// let mut tx = AsyncChannel::new(Channel::new(a, Config::default())?)?;
/// let mut rx = AsyncChannel::new(Channel::new(b, Config::default())?)?;
/// tx.channel_mut().compose(5, 0, 0, None, b"ping")?;
/// tx.flush().await?;
/// let msg = rx.recv().await?.expect("a message");
/// assert_eq!((msg.msg_type(), msg.payload()), (5, &b"ping"[..]));
/// drop(tx);
/// assert!(rx.recv().await?.is_none());
/// # Ok(()) }
/// ```
///
/// The reactor watches a duplicate of the channel's socket that this type owns, so
/// nothing done through [`channel_mut`](AsyncChannel::channel_mut) (even replacing
/// the channel) can close a descriptor the reactor still watches. This costs one
/// descriptor per `AsyncChannel`.
#[derive(Debug)]
pub struct AsyncChannel {
    ch: Channel,
    io: AsyncFd<OwnedFd>,
    /// Armed while a read waits out the descriptor guard.
    read_retry: Option<Pin<Box<Sleep>>>,
    /// Armed while a write waits out `ENOBUFS`/`ETOOMANYREFS`.
    write_retry: Option<Pin<Box<Sleep>>>,
}

/// Polls the retry timer in `slot`, arming it first if needed; `Ready` (and the
/// slot emptied) once it fired.
fn poll_retry(
    slot: &mut Option<Pin<Box<Sleep>>>,
    delay: std::time::Duration,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
    ready!(sleep.as_mut().poll(cx));
    *slot = None;
    Poll::Ready(())
}

impl AsyncChannel {
    /// Puts the channel's socket in non-blocking mode and registers it with the
    /// current tokio runtime (which must have I/O enabled).
    pub fn new(ch: Channel) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&ch, true)?;
        let watched = rustix::io::fcntl_dupfd_cloexec(&ch, 0)?;
        // SAFETY: `watched` is an open descriptor owned by the `AsyncFd` from here
        // on; this type never closes, replaces or hands it out while registered.
        let io = unsafe { AsyncFd::register(watched) }.map_err(|e| e.into_parts().1)?;
        Ok(AsyncChannel {
            ch,
            io,
            read_retry: None,
            write_retry: None,
        })
    }

    /// The channel, e.g. for its settings or queue length.
    pub fn channel(&self) -> &Channel {
        &self.ch
    }

    /// The channel, to queue messages (`compose`, `create`, `forward`) or take
    /// messages already buffered (`get`).
    pub fn channel_mut(&mut self) -> &mut Channel {
        &mut self.ch
    }

    /// Unregisters the socket and gives the channel back (still non-blocking).
    pub fn into_inner(self) -> Channel {
        self.ch
    }

    /// One read as soon as one can proceed: waits until the socket is readable
    /// (or, while the descriptor guard refuses, for [`FD_GUARD_RETRY`]) and answers
    /// [`ReadStatus::Read`] or [`ReadStatus::Eof`]; never `WouldBlock` or
    /// `FdGuard`. Take the messages with [`get`](crate::ChannelCore::get) after.
    /// Errors are those of [`Channel::read`].
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<ReadStatus, Error>> {
        loop {
            if self.read_retry.is_some() {
                ready!(poll_retry(&mut self.read_retry, FD_GUARD_RETRY, cx));
            }
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match self.ch.read() {
                Ok(ReadStatus::WouldBlock) => guard.clear_ready(),
                // The socket is still readable: keep the readiness, wait on the
                // timer instead.
                Ok(ReadStatus::FdGuard) => {
                    drop(guard);
                    ready!(poll_retry(&mut self.read_retry, FD_GUARD_RETRY, cx));
                }
                other => return Poll::Ready(other),
            }
        }
    }

    /// [`poll_read`](AsyncChannel::poll_read) as a future.
    pub async fn read(&mut self) -> Result<ReadStatus, Error> {
        poll_fn(|cx| self.poll_read(cx)).await
    }

    /// Writes until the queue is empty, waiting for writability in between (and
    /// for [`WRITE_RETRY`] after [`WriteStatus::RetryLater`]). Errors are those of
    /// [`Channel::write`].
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.write_retry.is_some() {
                ready!(poll_retry(&mut self.write_retry, WRITE_RETRY, cx));
            }
            match self.ch.write()? {
                WriteStatus::Empty => return Poll::Ready(Ok(())),
                WriteStatus::Wrote(_) => {}
                WriteStatus::RetryLater => {
                    ready!(poll_retry(&mut self.write_retry, WRITE_RETRY, cx));
                }
                WriteStatus::WouldBlock => {
                    let mut guard = ready!(self.io.poll_write_ready(cx))?;
                    match self.ch.write()? {
                        WriteStatus::Empty => return Poll::Ready(Ok(())),
                        WriteStatus::WouldBlock => guard.clear_ready(),
                        WriteStatus::Wrote(_) | WriteStatus::RetryLater => {}
                    }
                }
            }
        }
    }

    /// [`poll_flush`](AsyncChannel::poll_flush) as a future.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// The next message, reading as needed; `None` at end of file.
    ///
    /// Errors are those of [`Channel::read`] and [`get`](crate::ChannelCore::get).
    /// After [`Error::DescriptorsLost`] the channel can still be used; after
    /// [`Error::UnexpectedEof`] or [`Error::Frame`] it cannot.
    pub async fn recv(&mut self) -> Result<Option<OwnedMessage>, Error> {
        loop {
            if let Some(m) = self.ch.get_owned()? {
                return Ok(Some(m));
            }
            match self.read().await {
                Ok(ReadStatus::Eof) => return self.ch.get_owned(),
                Ok(_) => {}
                Err(e @ Error::UnexpectedEof { .. }) => {
                    // Frames held back until the end of the stream come first.
                    return match self.ch.get_owned()? {
                        Some(m) => Ok(Some(m)),
                        None => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues one message and writes the whole queue: `compose` + [`flush`](Self::flush).
    pub async fn send(
        &mut self,
        ty: u32,
        peerid: u32,
        pid: i32,
        fd: Option<OwnedFd>,
        payload: &[u8],
    ) -> Result<(), Error> {
        self.channel_mut().compose(ty, peerid, pid, fd, payload)?;
        self.flush().await
    }
}
