//! imsg channels over `AF_UNIX` stream sockets (filled by its own issue).
#![deny(missing_docs)]
