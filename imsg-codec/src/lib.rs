//! A `no_std`, allocation-free, zero-copy codec for OpenBSD's imsg frames.
//!
//! imsg is the message protocol of OpenBSD's privilege-separated daemons and of
//! tmux: a stream of frames, each a 16-byte header in the host's byte order and a
//! payload. Two wire dialects exist (see [`Dialect`]); a channel must choose one.
//!
//! This crate does no I/O. It turns bytes into frames and frames into bytes:
//!
//! - [`framing`]: [`Framing`], a dialect and a frame limit checked once; it owns
//!   the splitter ([`Framing::split`], [`Framing::frames`]: `Complete`,
//!   `Partial { needed }` or an error), the header parser and the encoders
//!   ([`Framing::emit`], [`Framing::emitv`], [`Framing::builder`]).
//! - [`header`]: the header as bytes ([`RawHeader`], one accessor per field) and
//!   as meaning ([`Header`]).
//! - [`frame`]: a checked view over one frame ([`Frame`]) and [`Status`].
//! - [`writer`]: the frame builder ([`FrameBuilder`]) and ibuf-style payload
//!   writers ([`Writer`]).
//! - [`reader`]: ibuf-style payload readers ([`Reader`], [`exact`]).
//! - [`storage`]: the [`FrameBuf`] trait over `&mut [u8]`, `heapless::Vec`,
//!   `arrayvec::ArrayVec` and, with the `alloc` feature, `Vec<u8>`.
//! - [`error`]: one error type per concern.
//! - [`detect`](mod@detect): which dialect a peer speaks, from the frames it sends
//!   ([`detect()`]).
//! - [`dump`]: the one-line text form of a frame that the `imsg-tools` programs
//!   print ([`Frame::dump_line`]).
//!
//! Limits are always the frame's **total** size, header included, as C's
//! `MAX_IMSGSIZE` is.
//!
//! ```
//! use imsg_codec::{Dialect, Framing, Header, Status};
//! let framing = Framing::standard(Dialect::Legacy);
//! let mut wire = heapless::Vec::<u8, 64>::new();
//! framing.emit(&mut wire, Header::new(200, 8, u32::MAX), b"hello").unwrap();
//! match framing.split(&wire).unwrap() {
//!     Status::Complete((frame, used)) => {
//!         assert_eq!((frame.msg_type(), frame.peerid(), frame.payload()), (200, 8, &b"hello"[..]));
//!         assert_eq!(used, wire.len());
//!     }
//!     Status::Partial { .. } => unreachable!(),
//! }
//! ```
#![no_std]
#![deny(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`) labels every feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod detect;
pub mod dump;
pub mod error;
pub mod frame;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod reader;
pub mod storage;
pub mod writer;

pub use detect::{detect, Detection};
pub use error::{
    EmitError, FrameError, LimitError, NoSpace, OutOfBounds, ReadError, ShortRead, SizeMismatch,
    WriteError,
};
pub use frame::{Frame, Frames, Split, Status};
pub use framing::Framing;
pub use header::{
    Dialect, Header, RawHeader, CURRENT_FD_MARK, HEADER_SIZE, LEGACY_HASFD, MAX_IMSGSIZE,
};
pub use reader::{exact, Reader};
pub use storage::{FrameBuf, SliceBuf};
pub use writer::{FrameBuilder, Writer};
