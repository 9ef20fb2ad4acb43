//! Per-channel settings: dialect, size limit, descriptor passing, own pid.

use imsg_codec::{Dialect, HEADER_SIZE, MAX_IMSGSIZE};

use crate::Error;

/// Per-channel settings, built with [`Config::default`] and the `with_*` methods.
///
/// **`max_frame` is the total frame size, header included** (16 bytes of header plus
/// at most `max_frame - 16` bytes of payload), as C's `MAX_IMSGSIZE` has always been
/// and as legacy `imsg_init` enforces. Beware: in 2025 OpenBSD changed
/// `imsgbuf_set_maxsize(ibuf, max)` to take the *payload* size and add the header
/// itself, so C's `imsgbuf_set_maxsize(ib, N)` corresponds to
/// `with_max_frame(N + 16)` here. The default, 16384, is C's default total.
///
/// ```
/// use imsg_io::{Config, Dialect};
/// let cfg = Config::default()
///     .with_dialect(Dialect::Current)
///     .with_max_frame(65536 + 16)?
///     .with_fdpass(true)
///     .with_pid(42);
/// assert_eq!((cfg.max_frame, cfg.fdpass, cfg.pid), (65552, true, 42));
/// assert!(Config::default().with_max_frame(15).is_err());
/// assert!(Config::default().with_max_frame(65536).is_err()); // legacy tops out at 65535
/// # Ok::<(), imsg_io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Wire dialect of the peer (default [`Dialect::Legacy`]).
    pub dialect: Dialect,
    /// Largest frame accepted and sent, **total size including the 16-byte header**;
    /// default 16384 (`MAX_IMSGSIZE`). Must lie in `16..=dialect.max_frame_len()`.
    pub max_frame: usize,
    /// Whether descriptors may be passed (`imsgbuf_allow_fdpass`); default `false`.
    /// Without it the channel reads and writes with plain `recv`/`send` (the kernel
    /// discards any descriptor the peer sends) and refuses to queue descriptors.
    pub fdpass: bool,
    /// Put in the header of every frame queued with pid 0; default this process's id.
    pub pid: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dialect: Dialect::Legacy,
            max_frame: MAX_IMSGSIZE,
            fdpass: false,
            pid: std::process::id() as i32,
        }
    }
}

impl Config {
    /// Sets the wire dialect. The size limit is checked again by [`Channel::new`]
    /// (a limit valid in the current dialect may be too big for the legacy one).
    ///
    /// [`Channel::new`]: crate::Channel::new
    pub fn with_dialect(mut self, d: Dialect) -> Self {
        self.dialect = d;
        self
    }

    /// Sets the limit on a frame's **total** size (header included), checked like
    /// `imsgbuf_set_maxsize`: below 16 is [`imsg_codec::Error::TooShort`], above
    /// what the dialect can express is [`imsg_codec::Error::TooLong`], both wrapped
    /// in [`Error::Codec`].
    pub fn with_max_frame(mut self, total: usize) -> Result<Self, Error> {
        check_max_frame(self.dialect, total)?;
        self.max_frame = total;
        Ok(self)
    }

    /// Allows or forbids descriptor passing (`imsgbuf_allow_fdpass`).
    pub fn with_fdpass(mut self, on: bool) -> Self {
        self.fdpass = on;
        self
    }

    /// Sets the pid written into headers whose pid is left 0.
    pub fn with_pid(mut self, pid: i32) -> Self {
        self.pid = pid;
        self
    }

    /// Checks the settings as a whole (done by [`Channel::new`](crate::Channel::new)).
    pub fn validate(&self) -> Result<(), Error> {
        check_max_frame(self.dialect, self.max_frame)
    }
}

fn check_max_frame(dialect: Dialect, total: usize) -> Result<(), Error> {
    if total < HEADER_SIZE {
        return Err(Error::Codec(imsg_codec::Error::TooShort { len: total }));
    }
    if total > dialect.max_frame_len() {
        return Err(Error::Codec(imsg_codec::Error::TooLong {
            len: total,
            max: dialect.max_frame_len(),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_dialect() {
        let legacy = Config::default();
        assert!(legacy.clone().with_max_frame(16).is_ok());
        assert!(legacy.clone().with_max_frame(65535).is_ok());
        assert!(matches!(
            legacy.clone().with_max_frame(65536),
            Err(Error::Codec(imsg_codec::Error::TooLong {
                len: 65536,
                max: 65535
            }))
        ));
        let current = legacy.with_dialect(Dialect::Current);
        assert!(current.clone().with_max_frame(0x7fff_ffff).is_ok());
        assert!(current.clone().with_max_frame(0x8000_0000).is_err());
        // A limit set for current is refused once the dialect becomes legacy.
        let c = current.with_max_frame(100_000).unwrap();
        assert!(c.clone().validate().is_ok());
        assert!(c.with_dialect(Dialect::Legacy).validate().is_err());
    }
}
