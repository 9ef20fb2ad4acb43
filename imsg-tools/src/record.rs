//! How the tools print a frame: the one-line dump format (optionally with names,
//! a descriptor note and, for `imsg-tap`, time, client and direction) or one JSON
//! object.
//!
//! With no names and nothing unusual, the line is exactly
//! [`imsg_codec::dump::DumpLine`]'s:
//! `type=<u32> len=<total> peerid=<u32> pid=<i32> fd=<0|1> payload=<hex>`.

use std::fmt::{self, Write};
use std::time::SystemTime;

use imsg_codec::Header;

use crate::names::Names;

/// Which way a frame travelled through `imsg-tap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the daemon (`>`).
    ToDaemon,
    /// From the daemon to the client (`<`).
    ToClient,
}

impl Direction {
    /// `>` or `<`.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ToDaemon => ">",
            Direction::ToClient => "<",
        }
    }
}

/// Where and when `imsg-tap` saw a frame.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// When the frame was complete.
    pub time: SystemTime,
    /// The client connection, numbered from 1 in the order they came.
    pub client: u64,
    /// Which way it went.
    pub direction: Direction,
}

/// One frame as the tools print it.
///
/// ```
/// use imsg_codec::Header;
/// use imsg_tools::names::Names;
/// use imsg_tools::record::Record;
/// let names = Names::parse("200 MSG_COMMAND").unwrap();
/// let hdr = Header::new(200, 8, u32::MAX).with_len(18).with_fd(true);
/// let r = Record { header: hdr, payload: b"\x01\x02", fd_arrived: None, names: None, seen: None };
/// assert_eq!(r.line().to_string(), "type=200 len=18 peerid=8 pid=-1 fd=1 payload=0102");
/// let r = Record { names: Some(&names), fd_arrived: Some(false), ..r };
/// assert_eq!(r.line().to_string(),
///     "type=200(MSG_COMMAND) len=18 peerid=8 pid=-1 fd=1(none) payload=0102");
/// assert_eq!(r.json().to_string(),
///     r#"{"type":200,"name":"MSG_COMMAND","len":18,"peerid":8,"pid":-1,"fd":1,"fd_arrived":false,"payload":"0102"}"#);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The frame's header (`len` the total length, `has_fd` the header's flag).
    pub header: Header,
    /// The payload as received.
    pub payload: &'a [u8],
    /// Whether a descriptor came with the frame, where the tool can know (a live
    /// socket); `None` for a byte stream, where only the header's flag exists.
    pub fd_arrived: Option<bool>,
    /// Names to show beside the type, if any.
    pub names: Option<&'a Names>,
    /// Time, client and direction, for `imsg-tap`.
    pub seen: Option<Seen>,
}

impl<'a> Record<'a> {
    fn name(&self) -> Option<&'a str> {
        self.names.and_then(|n| n.get(self.header.ty))
    }

    /// A frame flagged for a descriptor that did not arrive (C gives it fd -1).
    fn fd_missing(&self) -> bool {
        self.header.has_fd && self.fd_arrived == Some(false)
    }

    /// The one-line form. Only two things differ from the plain dump line, and only
    /// when they apply: `(NAME)` after a type the names table knows, and `fd=1(none)`
    /// for a frame flagged for a descriptor that did not arrive. `imsg-tap` puts
    /// `TIME CLIENT DIRECTION ` in front.
    pub fn line(&self) -> impl fmt::Display + '_ {
        Line(self)
    }

    /// One JSON object, on one line: `type`, `name` (when known), `len`, `peerid`,
    /// `pid`, `fd` (the flag, 0 or 1), `fd_arrived` (when known), `payload` (hex),
    /// and for `imsg-tap` also `time`, `client` and `direction` (`">"` or `"<"`).
    pub fn json(&self) -> impl fmt::Display + '_ {
        Json(self)
    }
}

struct Line<'r, 'a>(&'r Record<'a>);

impl fmt::Display for Line<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let h = &r.header;
        if let Some(seen) = &r.seen {
            write!(
                f,
                "{} {} {} ",
                Utc(seen.time),
                seen.client,
                seen.direction.arrow()
            )?;
        }
        write!(f, "type={}", h.ty)?;
        if let Some(name) = r.name() {
            write!(f, "({name})")?;
        }
        write!(
            f,
            " len={} peerid={} pid={} fd={}",
            h.len,
            h.peerid,
            h.pid as i32,
            u8::from(h.has_fd)
        )?;
        if r.fd_missing() {
            f.write_str("(none)")?;
        }
        f.write_str(" payload=")?;
        hex(f, r.payload)
    }
}

struct Json<'r, 'a>(&'r Record<'a>);

impl fmt::Display for Json<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let h = &r.header;
        f.write_char('{')?;
        if let Some(seen) = &r.seen {
            write!(
                f,
                "\"time\":\"{}\",\"client\":{},\"direction\":\"{}\",",
                Utc(seen.time),
                seen.client,
                seen.direction.arrow()
            )?;
        }
        write!(f, "\"type\":{}", h.ty)?;
        if let Some(name) = r.name() {
            f.write_str(",\"name\":")?;
            json_string(f, name)?;
        }
        write!(
            f,
            ",\"len\":{},\"peerid\":{},\"pid\":{},\"fd\":{}",
            h.len,
            h.peerid,
            h.pid as i32,
            u8::from(h.has_fd)
        )?;
        if let Some(arrived) = r.fd_arrived {
            write!(f, ",\"fd_arrived\":{arrived}")?;
        }
        f.write_str(",\"payload\":\"")?;
        hex(f, r.payload)?;
        f.write_str("\"}")
    }
}

fn hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// A time as UTC, RFC 3339 with microseconds: `2026-11-29T06:29:00.123456Z`.
struct Utc(SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            rest / 3600,
            rest / 60 % 60,
            rest % 60,
            since.subsec_micros()
        )
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's days-to-civil algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsg_codec::dump::DumpLine;
    use std::time::Duration;

    fn plain(header: Header, payload: &[u8], fd_arrived: Option<bool>) -> Record<'_> {
        Record {
            header,
            payload,
            fd_arrived,
            names: None,
            seen: None,
        }
    }

    /// The default line is byte for byte the codec's dump line, including when a
    /// descriptor arrived with a flagged frame.
    #[test]
    fn default_line_is_the_dump_line() {
        for (ty, peerid, pid, fd, payload) in [
            (0, 0, 0, false, &b""[..]),
            (
                u32::MAX,
                0x1234_5678,
                0x8000_0000,
                true,
                &[0, 0x0f, 0xf0, 0xff][..],
            ),
            (200, 8, u32::MAX, true, b"hi\0"),
        ] {
            let h = Header::new(ty, peerid, pid)
                .with_fd(fd)
                .with_len(16 + payload.len() as u32);
            let want = DumpLine::new(h, payload).to_string();
            for arrived in [None, Some(true)] {
                assert_eq!(plain(h, payload, arrived).line().to_string(), want);
            }
        }
    }

    #[test]
    fn unknown_types_keep_the_plain_form() {
        let names = Names::parse("1 ONE").unwrap();
        let r = Record {
            names: Some(&names),
            ..plain(Header::new(2, 0, 0), b"", Some(false))
        };
        assert_eq!(
            r.line().to_string(),
            "type=2 len=16 peerid=0 pid=0 fd=0 payload="
        );
    }

    #[test]
    fn tap_prefix_and_json() {
        let seen = Seen {
            time: SystemTime::UNIX_EPOCH + Duration::new(1_764_397_740, 123_456_000),
            client: 3,
            direction: Direction::ToClient,
        };
        let names = Names::parse("7 \"Q\\").unwrap();
        let r = Record {
            seen: Some(seen),
            names: Some(&names),
            ..plain(Header::new(7, 1, 2).with_len(17), b"\xab", None)
        };
        assert_eq!(
            r.line().to_string(),
            "2025-11-29T06:29:00.123456Z 3 < type=7(\"Q\\) len=17 peerid=1 pid=2 fd=0 payload=ab"
        );
        assert_eq!(
            r.json().to_string(),
            r#"{"time":"2025-11-29T06:29:00.123456Z","client":3,"direction":"<","type":7,"name":"\"Q\\","len":17,"peerid":1,"pid":2,"fd":0,"payload":"ab"}"#
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
