//! `imsg-dump`: decode an imsg byte stream and print one line per frame.
//!
//! ```text
//! imsg-dump [--dialect legacy|current|auto] [--max N] [--names TABLE] [--json] [FILE|-]
//! ```
//!
//! Reads FILE (or stdin when FILE is absent or `-`) as it arrives and prints
//! `type=<u32> len=<total length> peerid=<u32> pid=<i32> fd=<0|1> payload=<hex>` for
//! every frame. `--max` is a frame's total size, 16 up to what the dialect can express
//! (65535 for legacy). `--dialect auto` learns the dialect from the first frame that
//! carries the descriptor flag (frames before it read the same in both).
//! `--names tmux|bgpd|...|FILE` shows `type=200(MSG_COMMAND)` for types the table
//! knows; `--json` prints one JSON object per frame instead. A stream that ends inside a frame, or a frame that can never be
//! valid, is reported on stderr with the byte offset of that frame, exit status 1.
//! Usage errors exit with status 2.

use std::fs::File;
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::process::ExitCode;

use imsg_codec::detect::{detect_stream, Detection};
use imsg_codec::dump::StreamError;
use imsg_codec::{Dialect, Framing, Status, HEADER_SIZE, MAX_IMSGSIZE};
use imsg_tools::names::Names;
use imsg_tools::record::Record;
use imsg_tools::{DialectChoice, Output};

const USAGE: &str =
    "usage: imsg-dump [--dialect legacy|current|auto] [--max N] [--names TABLE] [--json] [FILE|-]";

/// What the command line asks for.
struct Options {
    dialect: DialectChoice,
    max: usize,
    output: Output,
    path: Option<String>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut opts = Options {
        dialect: DialectChoice::Fixed(Dialect::Legacy),
        max: MAX_IMSGSIZE,
        output: Output::default(),
        path: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => opts.output.json = true,
            "--dialect" | "--max" | "--names" => {
                let value = match inline.or_else(|| args.next()) {
                    Some(v) => v,
                    None => return Err(format!("{name} needs a value")),
                };
                if name == "--dialect" {
                    opts.dialect = value.parse()?;
                } else if name == "--names" {
                    opts.output.names = Some(Names::load(&value)?);
                } else {
                    opts.max = match value.parse::<usize>() {
                        Ok(n) if n >= HEADER_SIZE => n,
                        _ => {
                            return Err(format!(
                                "--max wants a total frame size of at least {HEADER_SIZE}, \
                                 not {value:?}"
                            ))
                        }
                    };
                }
            }
            "-" => set_path(&mut opts, arg)?,
            _ if name.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ => set_path(&mut opts, arg)?,
        }
    }
    // Checked once every option is known: `--max` may come before `--dialect`.
    // With `auto`, the limit must suit whichever dialect the stream turns out to
    // be: the current dialect's is checked here, legacy's once it is known.
    let dialect = match opts.dialect {
        DialectChoice::Fixed(d) => d,
        DialectChoice::Auto => Dialect::Current,
    };
    let limit = dialect.max_frame_len();
    if opts.max > limit {
        return Err(format!(
            "--max {} is above the {dialect} dialect's largest frame ({limit} bytes)",
            opts.max
        ));
    }
    Ok(Some(opts))
}

fn set_path(opts: &mut Options, arg: String) -> Result<(), String> {
    if opts.path.is_some() {
        return Err("more than one input file".to_owned());
    }
    opts.path = Some(arg);
    Ok(())
}

/// Why dumping stopped before the end of the input.
enum Failure {
    Stream(StreamError),
    Io(&'static str, io::Error),
}

/// Decodes `input` as it arrives, printing every frame to `out`.
fn dump(
    mut input: impl Read,
    out: &mut impl Write,
    choice: DialectChoice,
    max: usize,
    output: &Output,
) -> Result<(), Failure> {
    let mut dialect = choice.initial();
    let mut decided = choice != DialectChoice::Auto;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Offset in the whole stream of buf[0].
    let mut base: u64 = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    loop {
        let mut pos = 0;
        let needed = loop {
            if !decided {
                match detect_stream(&buf[pos..], max) {
                    Detection::Dialect(d) => (dialect, decided) = (d, true),
                    // An ambiguous header (limits of 65,552 and up) is read as the
                    // current dialect, the one whose limit was checked.
                    Detection::Ambiguous => (dialect, decided) = (Dialect::Current, true),
                    // Undecided frames read alike; an invalid one gets the error of
                    // the dialect in use.
                    Detection::Undecided | Detection::Invalid => {}
                }
            }
            // `max` (at least 16) was checked against the widest dialect this run
            // may use; a detected legacy peer caps it at legacy's largest frame.
            let framing = Framing::new(dialect, max.min(dialect.max_frame_len()))
                .unwrap_or(Framing::standard(dialect));
            match framing.split(&buf[pos..]) {
                Ok(Status::Complete((frame, used))) => {
                    let record = Record {
                        header: frame.header(),
                        payload: frame.payload(),
                        fd_arrived: None,
                        names: None,
                        seen: None,
                    };
                    output
                        .print(out, record)
                        .map_err(|e| Failure::Io("stdout", e))?;
                    pos += used;
                }
                Ok(Status::Partial { needed }) => break needed,
                Err(error) => {
                    return Err(Failure::Stream(StreamError::Invalid {
                        offset: base + pos as u64,
                        error,
                    }))
                }
            }
        };
        buf.drain(..pos);
        base += pos as u64;
        if eof {
            if buf.is_empty() {
                return Ok(());
            }
            return Err(Failure::Stream(StreamError::Truncated {
                offset: base,
                needed,
            }));
        }
        match input.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Io("input", e)),
        }
    }
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("imsg-dump: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let input: Box<dyn Read> = match opts.path.as_deref() {
        None | Some("-") => Box::new(io::stdin().lock()),
        Some(path) => match File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("imsg-dump: {path}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let stdout = io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    let result = dump(input, &mut out, opts.dialect, opts.max, &opts.output);
    // Frames decoded before a failure are printed before its message.
    let flushed = out.flush();
    let failure = match (result, flushed) {
        (Err(f), _) => f,
        (Ok(()), Err(e)) => Failure::Io("stdout", e),
        (Ok(()), Ok(())) => return ExitCode::SUCCESS,
    };
    match failure {
        Failure::Stream(e) => eprintln!("imsg-dump: {e}"),
        // A reader that went away (`imsg-dump … | head`) is not worth a message.
        Failure::Io(_, e) if e.kind() == ErrorKind::BrokenPipe => {}
        Failure::Io(what, e) => eprintln!("imsg-dump: {what}: {e}"),
    }
    ExitCode::from(1)
}
