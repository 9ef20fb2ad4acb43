//! [`AsyncChannel`]: a [`Channel`] driven by tokio (feature `tokio`).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::channel::{WriteOutcome, NOBUFS_RETRY};
use crate::{Channel, Error, OwnedMessage, ReadStatus};

/// How long [`AsyncChannel::recv`] waits before reading again while the
/// descriptor guard refuses to read (the socket stays readable meanwhile, so
/// waiting for readability would spin).
pub const FD_GUARD_RETRY: Duration = Duration::from_millis(10);

/// A [`Channel`] in tokio's reactor through [`AsyncFd`]: async receive and flush;
/// queueing stays synchronous through [`channel_mut`](AsyncChannel::channel_mut).
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
        Ok(AsyncChannel { ch, io })
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

    /// The next message, reading as needed; `None` at end of file.
    ///
    /// Errors are those of [`Channel::read`] and [`Channel::get`]. After
    /// [`Error::DescriptorsLost`] the channel can still be used; after
    /// [`Error::UnexpectedEof`] or [`Error::Frame`] it cannot. While the
    /// descriptor guard refuses to read, this retries every [`FD_GUARD_RETRY`].
    pub async fn recv(&mut self) -> Result<Option<OwnedMessage>, Error> {
        loop {
            if let Some(m) = self.ch.get_owned()? {
                return Ok(Some(m));
            }
            let mut ready = self.io.readable().await?;
            let ch = &mut self.ch;
            match ch.read() {
                Ok(ReadStatus::Read(_)) => {}
                Ok(ReadStatus::Eof) => return ch.get_owned(),
                Ok(ReadStatus::WouldBlock) if ch.fd_guard_blocked() => {
                    drop(ready);
                    tokio::time::sleep(FD_GUARD_RETRY).await;
                }
                Ok(ReadStatus::WouldBlock) => ready.clear_ready(),
                Err(e @ Error::UnexpectedEof { .. }) => {
                    // Frames held back until the end of the stream come first.
                    return match ch.get_owned()? {
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

    /// Writes until the queue is empty, waiting for writability in between.
    pub async fn flush(&mut self) -> Result<(), Error> {
        loop {
            match self.ch.write_once()? {
                WriteOutcome::Empty => return Ok(()),
                WriteOutcome::Wrote(_) => {}
                WriteOutcome::NoBuffers => tokio::time::sleep(NOBUFS_RETRY).await,
                WriteOutcome::WouldBlock => {
                    let mut ready = self.io.writable().await?;
                    match self.ch.write_once()? {
                        WriteOutcome::Empty => return Ok(()),
                        WriteOutcome::WouldBlock => ready.clear_ready(),
                        WriteOutcome::Wrote(_) | WriteOutcome::NoBuffers => {}
                    }
                }
            }
        }
    }
}
