//! The re-exec arguments: `-P <title> -I <instance>` put before the original ones.
//!
//! The parent starts every child instance as its own binary with these four arguments
//! first; the child finds its identity there and the application's own arguments after
//! them. The prefix is exact (always first, always in this order), so an application
//! whose own first argument is `-P` is not mistaken for a child unless `-I` follows.

use core::fmt;
use std::ffi::{OsStr, OsString};

use crate::route::MAX_INSTANCES;

/// How this process was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// No prefix: the parent (or a plain run of the daemon).
    Parent {
        /// The application's arguments (without `argv[0]`).
        args: Vec<OsString>,
    },
    /// Started by the parent as one instance of a child process.
    Child {
        /// The process title given after `-P`.
        title: String,
        /// The instance given after `-I`.
        instance: u32,
        /// The application's arguments after the prefix (without `argv[0]`).
        args: Vec<OsString>,
    },
}

impl Invocation {
    /// The application's own arguments, whichever the role.
    pub fn app_args(&self) -> &[OsString] {
        match self {
            Invocation::Parent { args } | Invocation::Child { args, .. } => args,
        }
    }
}

/// A `-P … -I …` prefix that is not well formed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgsError {
    /// `-P` without a title after it, or the title is not UTF-8 or empty.
    BadTitle,
    /// `-P <title>` not followed by `-I`.
    MissingInstance,
    /// The instance is not a number below [`MAX_INSTANCES`].
    BadInstance(OsString),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::BadTitle => f.write_str("-P needs a process title"),
            ArgsError::MissingInstance => {
                f.write_str("-P <title> must be followed by -I <instance>")
            }
            ArgsError::BadInstance(s) => write!(
                f,
                "-I {}: instance must be a number below {MAX_INSTANCES}",
                s.to_string_lossy()
            ),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses a full argument vector (`argv[0]` first).
///
/// ```
/// use privsep_mesh::args::{parse, Invocation};
/// let argv = ["httpd", "-P", "server", "-I", "2", "-v"].map(Into::into);
/// assert_eq!(
///     parse(&argv).unwrap(),
///     Invocation::Child { title: "server".into(), instance: 2, args: vec!["-v".into()] }
/// );
/// let argv = ["httpd", "-v"].map(Into::into);
/// assert_eq!(parse(&argv).unwrap(), Invocation::Parent { args: vec!["-v".into()] });
/// ```
pub fn parse(argv: &[OsString]) -> Result<Invocation, ArgsError> {
    let rest = argv.get(1..).unwrap_or(&[]);
    if rest.first().map(OsString::as_os_str) != Some(OsStr::new("-P")) {
        return Ok(Invocation::Parent {
            args: rest.to_vec(),
        });
    }
    let title = rest
        .get(1)
        .and_then(|t| t.to_str())
        .filter(|t| !t.is_empty())
        .ok_or(ArgsError::BadTitle)?;
    if rest.get(2).map(OsString::as_os_str) != Some(OsStr::new("-I")) {
        return Err(ArgsError::MissingInstance);
    }
    let raw = rest.get(3).ok_or(ArgsError::MissingInstance)?;
    let instance = raw
        .to_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|&n| n < MAX_INSTANCES)
        .ok_or_else(|| ArgsError::BadInstance(raw.clone()))?;
    Ok(Invocation::Child {
        title: title.to_owned(),
        instance,
        args: rest[4..].to_vec(),
    })
}

/// The arguments (without `argv[0]`) a child instance is started with: the prefix,
/// then the application's arguments unchanged.
pub(crate) fn child_args(title: &str, instance: u32, app_args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(app_args.len() + 4);
    out.push("-P".into());
    out.push(title.into());
    out.push("-I".into());
    out.push(instance.to_string().into());
    out.extend(app_args.iter().cloned());
    out
}

/// This process's invocation, from `std::env::args_os()`.
pub fn from_env() -> Result<Invocation, ArgsError> {
    parse(&std::env::args_os().collect::<Vec<_>>())
}

/// The application's own arguments (without `argv[0]` and without the `-P`/`-I`
/// prefix), so that the parent and every child build the same table from them.
/// A malformed prefix yields every argument unchanged; [`crate::Privsep::run`]
/// reports it.
pub fn app_args() -> Vec<OsString> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match parse(&argv) {
        Ok(inv) => inv.app_args().to_vec(),
        Err(_) => argv.get(1..).unwrap_or(&[]).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_args_prefix_then_app_args() {
        let a = child_args("logger", 0, &["-d".into()]);
        assert_eq!(a, ["-P", "logger", "-I", "0", "-d"].map(OsString::from));
    }

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn round_trip() {
        for inst in [0, 1, MAX_INSTANCES - 1] {
            let app = v(&["-f", "conf", "-P", "x"]);
            let mut argv = v(&["prog"]);
            argv.extend(child_args("server", inst, &app));
            assert_eq!(
                parse(&argv).unwrap(),
                Invocation::Child {
                    title: "server".into(),
                    instance: inst,
                    args: app
                }
            );
        }
    }

    #[test]
    fn parent_forms() {
        assert_eq!(parse(&[]).unwrap(), Invocation::Parent { args: vec![] });
        assert_eq!(
            parse(&v(&["p"])).unwrap(),
            Invocation::Parent { args: vec![] }
        );
        // -P later in the line is the application's business.
        assert_eq!(
            parse(&v(&["p", "-d", "-P", "x", "-I", "1"])).unwrap(),
            Invocation::Parent {
                args: v(&["-d", "-P", "x", "-I", "1"])
            }
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(&v(&["p", "-P"])), Err(ArgsError::BadTitle));
        assert_eq!(parse(&v(&["p", "-P", ""])), Err(ArgsError::BadTitle));
        assert_eq!(
            parse(&v(&["p", "-P", "s"])),
            Err(ArgsError::MissingInstance)
        );
        assert_eq!(
            parse(&v(&["p", "-P", "s", "-v"])),
            Err(ArgsError::MissingInstance)
        );
        assert_eq!(
            parse(&v(&["p", "-P", "s", "-I"])),
            Err(ArgsError::MissingInstance)
        );
        for bad in ["", "-1", "+1", "32", "1x", "99999999999", " 1"] {
            assert_eq!(
                parse(&v(&["p", "-P", "s", "-I", bad])),
                Err(ArgsError::BadInstance(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_title() {
        use std::os::unix::ffi::OsStringExt;
        let argv = vec![
            "p".into(),
            "-P".into(),
            OsString::from_vec(vec![0xff]),
            "-I".into(),
            "0".into(),
        ];
        assert_eq!(parse(&argv), Err(ArgsError::BadTitle));
    }
}
