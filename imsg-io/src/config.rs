//! Per-channel settings: framing (dialect and size limit), descriptor passing,
//! own pid.

use imsg_codec::{Dialect, Framing};

use crate::Error;

/// Per-channel settings, built with [`Config::default`] and the `with_*` methods.
///
/// **The frame limit is the total frame size, header included** (16 bytes of
/// header plus at most `max_frame - 16` bytes of payload), as C's `MAX_IMSGSIZE`
/// has always been and as legacy `imsg_init` enforces. Beware: in 2025 OpenBSD
/// changed `imsgbuf_set_maxsize(ibuf, max)` to take the *payload* size and add the
/// header itself, so C's `imsgbuf_set_maxsize(ib, N)` corresponds to
/// `with_max_frame(N + 16)` here. The default, 16384, is C's default total.
///
/// ```
/// use imsg_io::{Config, Dialect};
/// let cfg = Config::default()
///     .with_dialect(Dialect::Current)
///     .with_max_frame(65536 + 16)?
///     .with_fdpass(true)
///     .with_pid(42);
/// assert_eq!((cfg.framing.max_frame(), cfg.fdpass, cfg.pid), (65552, true, 42));
/// assert!(Config::default().with_max_frame(15).is_err());
/// assert!(Config::default().with_max_frame(65536).is_err()); // legacy tops out at 65535
/// # Ok::<(), imsg_io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Wire dialect and limit on a frame's **total** size (default: legacy,
    /// 16384). Always valid: [`Framing`] checks the limit when it is made.
    pub framing: Framing,
    /// Whether descriptors may be passed (`imsgbuf_allow_fdpass`); default `false`.
    /// Without it the channel reads and writes with plain `recv`/`send` (the kernel
    /// discards any descriptor the peer sends) and refuses to queue descriptors.
    pub fdpass: bool,
    /// Put in the header of every frame queued with pid 0; default this process's id.
    pub pid: i32,
    /// High-water mark of the send queue in bytes (default `None`: unbounded). A
    /// frame that would take the bytes queued and not yet written past it is
    /// refused with [`Error::QueueFull`], unless the queue is empty (any one frame
    /// is taken), so a program can push back on a peer that does not read instead
    /// of growing without bound.
    pub queue_limit: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            framing: Framing::default(),
            fdpass: false,
            pid: std::process::id() as i32,
            queue_limit: None,
        }
    }
}

impl Config {
    /// Sets the framing (dialect and frame limit) at once.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Sets the wire dialect, keeping the frame limit; a limit above what `d` can
    /// express becomes `d`'s largest frame.
    pub fn with_dialect(mut self, d: Dialect) -> Self {
        let max = self.framing.max_frame().min(d.max_frame_len());
        self.framing = Framing::new(d, max).unwrap_or(Framing::standard(d));
        self
    }

    /// Sets the limit on a frame's **total** size (header included), checked like
    /// `imsgbuf_set_maxsize`: outside `16..=dialect.max_frame_len()` is
    /// [`Error::Limit`].
    pub fn with_max_frame(mut self, total: usize) -> Result<Self, Error> {
        self.framing = Framing::new(self.framing.dialect(), total)?;
        Ok(self)
    }

    /// Allows or forbids descriptor passing (`imsgbuf_allow_fdpass`).
    pub fn with_fdpass(mut self, on: bool) -> Self {
        self.fdpass = on;
        self
    }

    /// Sets the send queue's high-water mark in bytes ([`Config::queue_limit`]).
    pub fn with_queue_limit(mut self, bytes: Option<usize>) -> Self {
        self.queue_limit = bytes;
        self
    }

    /// Sets the pid written into headers whose pid is left 0.
    pub fn with_pid(mut self, pid: i32) -> Self {
        self.pid = pid;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsg_codec::LimitError;

    #[test]
    fn limits_follow_the_dialect() {
        let legacy = Config::default();
        assert!(legacy.clone().with_max_frame(16).is_ok());
        assert!(legacy.clone().with_max_frame(65535).is_ok());
        assert!(matches!(
            legacy.clone().with_max_frame(65536),
            Err(Error::Limit(LimitError {
                max: 65536,
                dialect: Dialect::Legacy
            }))
        ));
        let current = legacy.with_dialect(Dialect::Current);
        assert!(current.clone().with_max_frame(0x7fff_ffff).is_ok());
        assert!(current.clone().with_max_frame(0x8000_0000).is_err());
        // A limit set for current is capped once the dialect becomes legacy.
        let c = current.with_max_frame(100_000).unwrap();
        assert_eq!(c.framing.max_frame(), 100_000);
        assert_eq!(c.with_dialect(Dialect::Legacy).framing.max_frame(), 65535);
    }
}
