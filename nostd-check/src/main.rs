//! Proof that `imsg-codec` needs neither `std` nor an allocator.
//!
//! A `#![no_std]`, `#![no_main]` program with its own panic handler. If anything
//! in its dependency tree links `std`, `std`'s own `panic_impl` collides with the
//! handler below and the build fails ("duplicate lang item"). It links only the C
//! runtime (for `_start` and `exit`), never Rust's `std`.
//!
//! It encodes frames in both dialects into a stack buffer, splits them back, reads
//! their payloads and formats an `imsg-dump` line, and exits 0 only if all of that
//! gave the expected answers. Build and run: `cargo run --manifest-path
//! nostd-check/Cargo.toml` (exit status 0).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::{self, Write};
use core::panic::PanicInfo;

use imsg_codec::{Dialect, Framing, Header, Reader, SliceBuf, Status};

#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    // panic = "abort" in every profile; an abort without std is a trap.
    loop {
        core::hint::spin_loop();
    }
}

/// A `fmt::Write` into a fixed array.
struct Line {
    buf: [u8; 128],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Encodes and decodes in `dialect`; `None` on any unexpected answer.
fn exercise(dialect: Dialect) -> Option<()> {
    let mut storage = [0u8; 256];
    let mut out = SliceBuf::new(&mut storage);
    let framing = Framing::standard(dialect);
    framing
        .emit(&mut out, Header::new(101, 8, u32::MAX), b"dumb\0")
        .ok()?;
    let mut b = framing
        .builder(&mut out, Header::new(200, 8, u32::MAX))
        .ok()?;
    b.add_h32(1).ok()?;
    b.add(b"hi\0").ok()?;
    b.finish();
    let stdin = Header::new(104, 8, u32::MAX).with_fd(true);
    framing.emit(&mut out, stdin, &[]).ok()?;
    let wire = out.filled();

    let mut it = framing.frames(wire);
    let term = it.next()?.ok()?;
    let command = it.next()?.ok()?;
    let fd = it.next()?.ok()?;
    if it.next().is_some() || it.consumed() != wire.len() {
        return None;
    }
    if term.payload() != b"dumb\0" || !fd.has_fd() || term.has_fd() {
        return None;
    }
    let mut r = Reader::new(command.payload());
    if r.get_h32().ok()? != 1 || r.get_cstr().ok()?.to_bytes() != b"hi" || !r.is_empty() {
        return None;
    }
    // A short stream is "partial", not an error.
    match framing.split(&wire[..5]).ok()? {
        Status::Partial { needed: 11 } => {}
        _ => return None,
    }
    let mut line = Line {
        buf: [0; 128],
        len: 0,
    };
    write!(line, "{}", fd.dump_line()).ok()?;
    (&line.buf[..line.len] == b"type=104 len=16 peerid=8 pid=-1 fd=1 payload=").then_some(())
}

/// The C runtime's entry point calls this; its return value is the exit status.
// SAFETY: `main` is the one symbol of that name in the program (there is no std
// to define another), and its signature is the one the C runtime calls.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    match (exercise(Dialect::Legacy), exercise(Dialect::Current)) {
        (Some(()), Some(())) => 0,
        _ => 1,
    }
}
