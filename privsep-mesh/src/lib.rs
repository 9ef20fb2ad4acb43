//! OpenBSD-style privilege-separated process meshes (filled by its own issue).
#![deny(missing_docs)]
