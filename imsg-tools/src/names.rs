//! Message-type names: `type=200(MSG_COMMAND)` instead of `type=200`.
//!
//! A table is text, one `NUMBER NAME` per line (decimal or `0x` hex; `#` starts a
//! comment line). The built-in tables are such files, under `names/` in this
//! crate, each made from the program's own header for a named version (written at
//! the top of the file); `--names PATH` loads a user's file in the same form.

use std::collections::BTreeMap;

/// The built-in tables: what `--names` accepts, and the file each one is.
pub const BUILTIN: &[(&str, &str)] = &[
    ("tmux", include_str!("../names/tmux-3.3a.names")),
    ("tmux-3.3a", include_str!("../names/tmux-3.3a.names")),
    ("tmux-current", include_str!("../names/tmux-current.names")),
    ("bgpd", include_str!("../names/bgpd-7.7.names")),
    ("ntpd", include_str!("../names/ntpd-6.2.names")),
    ("smtpd", include_str!("../names/smtpd-6.8.names")),
    ("httpd", include_str!("../names/httpd.names")),
    ("relayd", include_str!("../names/relayd.names")),
];

/// A table from message type to name.
///
/// ```
/// use imsg_tools::names::Names;
/// let tmux = Names::load("tmux").unwrap();
/// assert_eq!(tmux.get(200), Some("MSG_COMMAND"));
/// let mine = Names::parse("# my daemon\n1 HELLO\n0x10 BYE\n").unwrap();
/// assert_eq!((mine.get(1), mine.get(16), mine.get(2)), (Some("HELLO"), Some("BYE"), None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    map: BTreeMap<u32, String>,
}

impl Names {
    /// Parses a table; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Names, String> {
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {}: want NUMBER NAME, got {line:?}", i + 1);
            let mut words = line.split_whitespace();
            let (Some(number), Some(name), None) = (words.next(), words.next(), words.next())
            else {
                return Err(bad());
            };
            let number = match number.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => number.parse(),
            }
            .map_err(|_| bad())?;
            map.insert(number, name.to_owned());
        }
        Ok(Names { map })
    }

    /// A built-in table by name (see [`BUILTIN`]), or else the table in the file at
    /// `spec`.
    pub fn load(spec: &str) -> Result<Names, String> {
        if let Some((_, text)) = BUILTIN.iter().find(|(name, _)| *name == spec) {
            return Names::parse(text).map_err(|e| format!("built-in table {spec}: {e}"));
        }
        let text = std::fs::read_to_string(spec).map_err(|e| {
            let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            format!(
                "--names {spec:?}: not a built-in table ({}) and not a readable file: {e}",
                known.join(", ")
            )
        })?;
        Names::parse(&text).map_err(|e| format!("{spec}: {e}"))
    }

    /// The name of message type `ty`, if the table has one.
    pub fn get(&self, ty: u32) -> Option<&str> {
        self.map.get(&ty).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_table_parses_and_has_unique_numbers() {
        for (name, text) in BUILTIN {
            let t = Names::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .count();
            assert_eq!(t.map.len(), lines, "{name}: a number appears twice");
            assert!(text.starts_with("# "), "{name}: no source line");
        }
    }

    #[test]
    fn known_numbers() {
        let tmux = Names::load("tmux-3.3a").unwrap();
        assert_eq!(tmux.get(12), Some("MSG_VERSION"));
        assert_eq!(tmux.get(104), Some("MSG_IDENTIFY_STDIN"));
        assert_eq!(tmux.get(110), Some("MSG_IDENTIFY_STDOUT"));
        assert_eq!(tmux.get(306), Some("MSG_WRITE_CLOSE"));
        assert_eq!(tmux.get(307), None);
        let current = Names::load("tmux-current").unwrap();
        assert_eq!(current.get(307), Some("MSG_READ_CANCEL"));
        assert_eq!(
            Names::load("httpd").unwrap().get(4),
            Some("IMSG_CTL_PROCFD")
        );
        assert_eq!(Names::load("bgpd").unwrap().get(1), Some("IMSG_CTL_END"));
    }

    #[test]
    fn bad_tables_and_missing_files() {
        assert!(Names::parse("1").is_err());
        assert!(Names::parse("x NAME").is_err());
        assert!(Names::parse("1 TWO WORDS").is_err());
        assert!(Names::load("/nonexistent/table").is_err());
    }
}
