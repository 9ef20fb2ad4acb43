//! Emit frames into a plain byte array and split them back out of a stream that
//! arrives a few bytes at a time — no allocator anywhere, only fixed-size buffers
//! on the stack, as on a `no_std` target.
//!
//! ```sh
//! cargo run -p imsg-codec --example split_emit
//! ```

use imsg_codec::{Dialect, Framing, Header, Reader, SliceBuf, Status, HEADER_SIZE};

/// A request type of our made-up protocol: payload = port (u16, network order),
/// then a host name in a fixed 16-byte field, NUL-padded (C's `char host[16]`).
const CONNECT: u32 = 10;
/// Payload: free text.
const LOG_LINE: u32 = 11;

fn main() {
    // Both ends agree on the dialect and the largest frame they accept.
    let framing = Framing::new(Dialect::Current, 128).expect("128 bytes holds a header");

    // ---- sender: three frames into 256 bytes of stack ----
    let mut storage = [0u8; 256];
    let mut out = SliceBuf::new(&mut storage);

    // One call per frame when the payload is ready (imsg_compose).
    framing
        .emit(&mut out, Header::new(LOG_LINE, 0, 1), b"starting")
        .unwrap();

    // Or built field by field (imsg_create, imsg_add, imsg_close); the header's
    // length is stamped when the builder finishes.
    let mut frame = framing
        .builder(&mut out, Header::new(CONNECT, 7, 1))
        .unwrap();
    frame.add_n16(8080).unwrap();
    frame.add_strbuf(b"localhost", 16).unwrap();
    let len = frame.finish();
    println!("built a CONNECT frame of {len} bytes");

    // A frame above the agreed limit is refused, and nothing is written.
    let before = out.filled().len();
    let too_long = framing.emit(&mut out, Header::new(LOG_LINE, 0, 1), &[b'x'; 200]);
    println!("200-byte payload: {}", too_long.unwrap_err());
    assert_eq!(out.filled().len(), before);

    framing
        .emit(&mut out, Header::new(LOG_LINE, 0, 1), b"done")
        .unwrap();
    let wire = out.filled();
    println!("{} bytes on the wire", wire.len());

    // ---- receiver: the bytes arrive 5 at a time into a 64-byte buffer ----
    let mut buf = [0u8; 64];
    let mut filled = 0;
    for chunk in wire.chunks(5) {
        buf[filled..filled + chunk.len()].copy_from_slice(chunk);
        filled += chunk.len();
        // Take every complete frame at the front of the buffer.
        loop {
            match framing.split(&buf[..filled]) {
                Ok(Status::Complete((frame, used))) => {
                    handle(frame.header(), frame.payload());
                    // Frames borrow from `buf`; once handled, drop their bytes.
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                }
                // A stream socket's normal case: wait for `needed` more bytes.
                Ok(Status::Partial { needed: _ }) => break,
                // A header that can never become valid: the stream is unusable.
                Err(e) => {
                    println!("bad frame: {e}");
                    return;
                }
            }
        }
    }
    assert_eq!(filled, 0, "every byte belonged to a frame");

    // A length below the header's own size is an error at once, not a wait.
    let mut bad = [0u8; HEADER_SIZE];
    bad[4..8].copy_from_slice(&3u32.to_ne_bytes());
    println!(
        "a header announcing 3 bytes: {}",
        framing.split(&bad).unwrap_err()
    );
}

fn handle(header: Header, payload: &[u8]) {
    match header.ty {
        CONNECT => {
            let mut r = Reader::new(payload);
            let port = r.get_n16().unwrap();
            let host = r.get_strbuf(16).unwrap();
            println!("CONNECT (peer id {}): {host:?} port {port}", header.peerid);
        }
        LOG_LINE => println!("LOG_LINE: {}", String::from_utf8_lossy(payload)),
        other => println!("unknown type {other}"),
    }
}
