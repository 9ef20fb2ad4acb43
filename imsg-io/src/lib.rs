//! imsg channels over `AF_UNIX` stream sockets, with descriptor passing.
//!
//! This crate adds sockets and descriptors to the frames of [`imsg_codec`]: a
//! [`Channel`] owns a connected stream socket and gives a Rust program what a C
//! program gets from `imsgbuf_*` and `imsg_*`, with `OwnedFd` for every descriptor,
//! slices for payloads and [`Error`] for every failure.
//!
//! - [`config`]: [`Config`] ([`Framing`]: dialect and size limit as a **total**
//!   frame size; descriptor passing, own pid).
//! - [`channel_core`]: [`ChannelCore`], the channel without I/O (send queue, receive
//!   buffer: bytes and descriptors in, frames out; what to write next), and
//!   [`MessageBuilder`].
//! - [`channel`]: [`Channel`], a core driven by system calls on a socket it owns
//!   (blocking or non-blocking), with [`ReadStatus`] and [`WriteStatus`] saying
//!   what to wait for next.
//! - [`message`]: received [`Message`] (borrowed payload) and [`OwnedMessage`].
//! - [`error`]: the [`Error`] enum.
//! - `async_channel` (feature `tokio`): `AsyncChannel`, a channel in tokio's
//!   reactor through `AsyncFd` (async `recv`, `send`, `flush`, and `poll_read`,
//!   `poll_flush` for event loops).
//! - [`raw`]: raw sends of arbitrary bytes and descriptors, for tests and tools.
//! - the descriptor-exhaustion guard ([`FD_HEADROOM`]).
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use imsg_io::{Channel, Config};
//! let (a, b) = UnixStream::pair()?;
//! let cfg = Config::default().with_fdpass(true);
//! let mut tx = Channel::new(a, cfg.clone())?;
//! let mut rx = Channel::new(b, cfg)?;
//! let file = std::fs::File::open("/dev/null")?;
//! tx.compose(1, 0, 0, Some(file.into()), b"take this")?;
//! tx.flush()?;
//! rx.read()?;
//! let mut msg = rx.get()?.expect("complete");
//! assert!(msg.flagged_fd());
//! let fd = msg.take_fd().expect("the descriptor arrived");
//! # drop(fd);
//! # Ok::<(), imsg_io::Error>(())
//! ```
#![deny(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`) labels every feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
pub mod async_channel;
pub mod channel;
pub mod channel_core;
pub mod config;
pub mod error;
mod fd_guard;
pub mod message;
pub mod raw;
mod recv_buffer;
mod send_queue;
mod socket;
mod sys;

#[cfg(feature = "tokio")]
pub use async_channel::AsyncChannel;
pub use channel::{
    Channel, ReadStatus, WriteStatus, FD_GUARD_RETRY, WRITE_AHEAD, WRITE_DIRECT, WRITE_RETRY,
};
pub use channel_core::{ChannelCore, MessageBuilder, Transmit};
pub use config::Config;
pub use error::{DialectHint, Error};
pub use fd_guard::FD_HEADROOM;
pub use imsg_codec::{Dialect, Framing, Header, Reader, MAX_IMSGSIZE};
pub use message::{Message, OwnedMessage};
pub use recv_buffer::MAX_RECV_BUFFER;
