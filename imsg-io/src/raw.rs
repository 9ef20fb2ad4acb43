//! Raw sends, for tests and debugging tools that must put arbitrary bytes and
//! descriptors on a socket (malformed frames, several descriptors at once, a
//! descriptor in the middle of a frame). Channels never need this.

use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;

use rustix::io::{Errno, IoSlice};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};

use crate::Error;

/// Most descriptors [`sendmsg`] attaches to one call (the kernel's limit is 253).
pub const MAX_RAW_FDS: usize = 16;

/// One `sendmsg` of `bytes` with `fds` as a single `SCM_RIGHTS` message
/// (`MSG_NOSIGNAL`; `SO_NOSIGPIPE` is set first on macOS). Returns the bytes sent; the descriptors travel with the first
/// byte if any byte was sent. `EAGAIN` is returned as [`Error::Io`] with kind
/// `WouldBlock`; `EPIPE`/`ECONNRESET` as [`Error::PeerClosed`].
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// let (a, _b) = UnixStream::pair()?;
/// let null = std::fs::File::open("/dev/null")?;
/// assert_eq!(imsg_io::raw::sendmsg(a.as_fd(), b"not a frame", &[null.as_fd()])?, 11);
/// # Ok::<(), imsg_io::Error>(())
/// ```
pub fn sendmsg(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize, Error> {
    if fds.len() > MAX_RAW_FDS {
        return Err(Errno::INVAL.into());
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_RAW_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::NOBUFS.into());
    }
    crate::sys::prepare_socket(sock)?;
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(bytes)],
            &mut control,
            crate::sys::SEND_FLAGS,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => return Err(Error::PeerClosed),
            Err(e) => return Err(e.into()),
        }
    }
}
