//! Received messages: [`Message`] borrows its payload from the channel's receive
//! buffer; [`OwnedMessage`] owns a copy.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use imsg_codec::{Header, Reader};

/// A received message whose payload is borrowed from the channel (`imsg_get`).
///
/// A descriptor that came with it is owned by the message: take it with
/// [`take_fd`](Message::take_fd), or it is closed when the message is dropped (as
/// `imsg_free` does).
pub struct Message<'a> {
    pub(crate) header: Header,
    pub(crate) payload: &'a [u8],
    pub(crate) fd: Option<OwnedFd>,
}

impl<'a> Message<'a> {
    /// The header as received (`len` is the total length; `has_fd` is the flag the
    /// sender set, whether or not a descriptor arrived).
    #[inline]
    pub fn header(&self) -> Header {
        self.header
    }

    /// Message type (`imsg_get_type`).
    #[inline]
    pub fn msg_type(&self) -> u32 {
        self.header.ty
    }

    /// Peer id (`imsg_get_id`).
    #[inline]
    pub fn peerid(&self) -> u32 {
        self.header.peerid
    }

    /// The pid field as C's `pid_t` (`imsg_get_pid`; tmux sends -1).
    #[inline]
    pub fn pid(&self) -> i32 {
        self.header.pid as i32
    }

    /// The payload (`imsg_get_buf` over all of it; `imsg_get_len` is its length).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// An ibuf-style reader over the payload (`imsg_get_ibuf`).
    #[inline]
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.payload)
    }

    /// Whether the header said a descriptor travels with this frame. True with
    /// [`take_fd`](Message::take_fd) answering `None` means the descriptor did not
    /// arrive (the peer sent none, or it was lost: see
    /// [`Error::DescriptorsLost`](crate::Error::DescriptorsLost)).
    #[inline]
    pub fn flagged_fd(&self) -> bool {
        self.header.has_fd
    }

    /// The descriptor that came with this frame, if any, without taking it.
    #[inline]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Takes the descriptor that came with this frame (`imsg_get_fd`).
    #[inline]
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// Copies the payload so the channel can be used again; the descriptor moves.
    #[allow(clippy::wrong_self_convention)] // the contract's name; consumes for the fd
    #[inline]
    pub fn to_owned(self) -> OwnedMessage {
        OwnedMessage {
            header: self.header,
            payload: self.payload.to_vec(),
            fd: self.fd,
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .field("fd", &self.fd)
            .finish()
    }
}

/// A received message that owns its payload (for callers who keep messages).
///
/// It can also serve as a reusable receive slot: [`ChannelCore::get_into`](crate::ChannelCore::get_into)
/// overwrites it with the next message, keeping its payload buffer's capacity.
#[derive(Debug)]
pub struct OwnedMessage {
    header: Header,
    payload: Vec<u8>,
    fd: Option<OwnedFd>,
}

/// An empty message (type 0, no payload, no descriptor); allocates nothing. A
/// starting point for [`ChannelCore::get_into`](crate::ChannelCore::get_into).
impl Default for OwnedMessage {
    fn default() -> OwnedMessage {
        OwnedMessage::new(Header::default(), Vec::new(), None)
    }
}

impl OwnedMessage {
    /// Overwrites this message with `msg`: header and descriptor move in (a
    /// descriptor this message still held is closed), the payload is copied into
    /// the existing buffer, which grows only if it is too small.
    pub(crate) fn fill_from(&mut self, msg: Message<'_>) {
        self.header = msg.header;
        self.payload.clear();
        self.payload.extend_from_slice(msg.payload);
        self.fd = msg.fd;
    }

    /// Builds a message, e.g. to test code that handles them. `header.len` is set
    /// from the payload; `header.has_fd` is kept as given.
    pub fn new(header: Header, payload: Vec<u8>, fd: Option<OwnedFd>) -> OwnedMessage {
        let len = (payload.len() + imsg_codec::HEADER_SIZE) as u32;
        OwnedMessage {
            header: header.with_len(len),
            payload,
            fd,
        }
    }

    /// See [`Message::header`].
    pub fn header(&self) -> Header {
        self.header
    }

    /// See [`Message::msg_type`].
    pub fn msg_type(&self) -> u32 {
        self.header.ty
    }

    /// See [`Message::peerid`].
    pub fn peerid(&self) -> u32 {
        self.header.peerid
    }

    /// See [`Message::pid`].
    pub fn pid(&self) -> i32 {
        self.header.pid as i32
    }

    /// See [`Message::payload`].
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// How many payload bytes this message can hold before its buffer must grow
    /// (what [`ChannelCore::get_into`](crate::ChannelCore::get_into) reuses).
    pub fn payload_capacity(&self) -> usize {
        self.payload.capacity()
    }

    /// The payload, moved out.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// See [`Message::reader`].
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.payload)
    }

    /// See [`Message::flagged_fd`].
    pub fn flagged_fd(&self) -> bool {
        self.header.has_fd
    }

    /// See [`Message::fd`].
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// See [`Message::take_fd`].
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// A borrowed view, e.g. for [`ChannelCore::forward`](crate::ChannelCore::forward). The
    /// view has no descriptor (this message keeps it); `flagged_fd` is kept.
    pub fn as_message(&self) -> Message<'_> {
        Message {
            header: self.header,
            payload: &self.payload,
            fd: None,
        }
    }
}
