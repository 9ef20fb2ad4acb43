//! What `imsg-dump`, `imsgcat` and `imsg-tap` share.
#![deny(missing_docs)]

use imsg_codec::Dialect;

/// The dialect named on a command line: `legacy` or `current`.
pub fn parse_dialect(name: &str) -> Option<Dialect> {
    match name {
        "legacy" => Some(Dialect::Legacy),
        "current" => Some(Dialect::Current),
        _ => None,
    }
}
