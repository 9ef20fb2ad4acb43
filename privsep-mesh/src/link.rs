//! One channel of the mesh as the event loop drives it: a plain
//! [`Channel`] for the `poll(2)` waiter, or, once the tokio waiter has taken
//! it over, an [`AsyncChannel`] registered with the runtime.

#[cfg(feature = "tokio")]
use imsg_io::AsyncChannel;
use imsg_io::Channel;

/// A channel to one peer.
#[derive(Debug)]
pub(crate) enum Link {
    /// Read and written with non-blocking calls; readiness comes from `poll(2)`.
    Plain(Channel),
    /// Driven by tokio through imsg-io's [`AsyncChannel`].
    #[cfg(feature = "tokio")]
    Async(AsyncChannel),
}

impl Link {
    /// The channel.
    pub(crate) fn channel(&self) -> &Channel {
        match self {
            Link::Plain(ch) => ch,
            #[cfg(feature = "tokio")]
            Link::Async(a) => a.channel(),
        }
    }

    /// The channel, to queue, read or write without waiting.
    pub(crate) fn channel_mut(&mut self) -> &mut Channel {
        match self {
            Link::Plain(ch) => ch,
            #[cfg(feature = "tokio")]
            Link::Async(a) => a.channel_mut(),
        }
    }

    /// The link driven by tokio (registered with the current runtime on first
    /// use, which must have I/O and time enabled).
    #[cfg(feature = "tokio")]
    pub(crate) fn driven(self) -> std::io::Result<Link> {
        match self {
            Link::Plain(ch) => AsyncChannel::new(ch).map(Link::Async),
            driven => Ok(driven),
        }
    }
}
