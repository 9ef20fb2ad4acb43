//! What `imsg-dump`, `imsgcat` and `imsg-tap` share: message-type names
//! ([`names`]), the printed form of a frame ([`record`]), and the options every tool
//! takes ([`DialectChoice`], [`Output`]).
//!
//! The programs are the point of this crate (`cargo install --path imsg-tools`
//! installs all three); this library only keeps them consistent.
#![deny(missing_docs)]

use std::io::{self, Write};

use imsg_codec::Dialect;

pub mod names;
pub mod record;

use names::Names;
use record::Record;

/// `--dialect legacy|current|auto`.
///
/// ```
/// use imsg_tools::DialectChoice;
/// use imsg_codec::Dialect;
/// assert_eq!("auto".parse(), Ok(DialectChoice::Auto));
/// assert_eq!("current".parse(), Ok(DialectChoice::Fixed(Dialect::Current)));
/// assert!("newest".parse::<DialectChoice>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialectChoice {
    /// Always this dialect.
    Fixed(Dialect),
    /// Learn the peer's dialect from the first frame that carries a descriptor
    /// (frames before it read the same in both); send in it from then on.
    Auto,
}

impl std::str::FromStr for DialectChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DialectChoice::Auto),
            "legacy" => Ok(DialectChoice::Fixed(Dialect::Legacy)),
            "current" => Ok(DialectChoice::Fixed(Dialect::Current)),
            _ => Err(format!("--dialect: {s:?} is not legacy, current or auto")),
        }
    }
}

impl DialectChoice {
    /// The dialect to start with: the fixed one, or legacy for `auto` (frames
    /// read before the dialect is known are the same in both).
    pub fn initial(self) -> Dialect {
        match self {
            DialectChoice::Fixed(d) => d,
            DialectChoice::Auto => Dialect::Legacy,
        }
    }
}

/// How frames are printed: `--names` and `--json`.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// The table given with `--names`, if any.
    pub names: Option<Names>,
    /// `--json`: one JSON object per frame instead of the dump line.
    pub json: bool,
}

impl Output {
    /// Prints `record` (its `names` replaced by this output's) and a newline.
    pub fn print(&self, out: &mut impl Write, record: Record<'_>) -> io::Result<()> {
        let record = Record {
            names: self.names.as_ref(),
            ..record
        };
        if self.json {
            writeln!(out, "{}", record.json())
        } else {
            writeln!(out, "{}", record.line())
        }
    }
}
