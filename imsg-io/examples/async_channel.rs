//! Two tokio tasks speaking imsg over a socketpair through [`AsyncChannel`]: a client
//! sends requests, one of them with a descriptor (a pipe's write end), and a server
//! answers each until the client hangs up.
//!
//! ```sh
//! cargo run -p imsg-io --features tokio --example async_channel
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use imsg_io::{AsyncChannel, Channel, Config, Error};

/// Payload: text. Answer: the same text upper-cased.
const UPPERCASE: u32 = 1;
/// Descriptor: somewhere to write. Answer: how many bytes the server wrote there.
const WRITE_TO: u32 = 2;
/// The server's answer; its peer id is the request's.
const ANSWER: u32 = 3;

async fn server(mut ch: AsyncChannel) -> Result<usize, Error> {
    let mut served = 0;
    // `recv` reads as needed and answers `None` once the client has hung up.
    while let Some(mut msg) = ch.recv().await? {
        let answer = match msg.msg_type() {
            UPPERCASE => msg.payload().to_ascii_uppercase(),
            WRITE_TO => match msg.take_fd() {
                Some(fd) => {
                    let line = b"written by the server through a passed descriptor\n";
                    File::from(fd).write_all(line)?;
                    line.len().to_string().into_bytes()
                }
                None => b"no descriptor arrived".to_vec(),
            },
            other => format!("unknown request type {other}").into_bytes(),
        };
        // Queue the answer and write until it has left.
        ch.send(ANSWER, msg.peerid(), 0, None, &answer).await?;
        served += 1;
    }
    Ok(served)
}

async fn client(mut ch: AsyncChannel) -> Result<(), Error> {
    ch.send(UPPERCASE, 1, 0, None, b"hello, imsg").await?;
    let answer = ch.recv().await?.expect("the server answers");
    println!(
        "client: answer to request {}: {}",
        answer.peerid(),
        String::from_utf8_lossy(answer.payload())
    );

    let (mut reader, writer) = std::io::pipe()?;
    ch.send(WRITE_TO, 2, 0, Some(OwnedFd::from(writer)), b"")
        .await?;
    let answer = ch.recv().await?.expect("the server answers");
    println!(
        "client: answer to request {}: {} bytes written",
        answer.peerid(),
        String::from_utf8_lossy(answer.payload())
    );
    // Our copy of the write end went with the message, so this read ends when the
    // server has closed its copy.
    let mut text = String::new();
    reader.read_to_string(&mut text)?;
    print!("client: read from the pipe: {text}");
    Ok(())
    // Dropping `ch` closes the socket: the server's `recv` answers `None`.
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = UnixStream::pair()?;
    // Both ends must speak the same dialect (the default is the legacy one), and
    // descriptor passing is off unless asked for.
    let config = Config::default().with_fdpass(true);
    let to_server = AsyncChannel::new(Channel::new(a, config.clone())?)?;
    let to_client = AsyncChannel::new(Channel::new(b, config)?)?;
    let (served, sent) = tokio::join!(server(to_client), client(to_server));
    sent?;
    println!(
        "server: answered {} requests, then saw the client hang up",
        served?
    );
    Ok(())
}
