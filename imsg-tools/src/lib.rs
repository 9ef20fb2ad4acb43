//! What `imsg-dump`, `imsgcat` and `imsg-tap` share.
#![deny(missing_docs)]
