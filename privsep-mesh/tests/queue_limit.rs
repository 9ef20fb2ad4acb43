//! A peer that stops reading: the sender's queue to it stops at the mesh's default
//! high-water mark, sends past it are refused with a typed error (nothing queued, the
//! descriptor handed back), the sender's memory stays bounded, and once the peer
//! reads again every message queued before arrives, in order.
//!
//! This test binary is its own daemon (`harness = false`): started with `--scenario`
//! it runs the mesh (parent, `sender`, `sink`); started without, it is the driver,
//! which runs that mesh in its own process group with a deadline and reads the
//! `CHECK` lines the scenario's parent prints. The parent stops the sink with
//! SIGSTOP, so that it really reads nothing, and continues it with SIGCONT.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use privsep_mesh::PEER_QUEUE_LIMIT;
use privsep_mesh::{
    args, stderr_log, AppError, Context, Error, Handled, Handler, Peer, Privsep, ProcId, ProcSpec,
    ProcTable, Received, Target, Timer,
};

const SENDER: ProcId = ProcId(1);
const SINK: ProcId = ProcId(2);

/// Parent → sender: start filling the queue to the (stopped) sink.
const FLOOD: u32 = 1;
/// Sender → parent: the queue is full (payload: `key=value` words).
const FULL: u32 = 2;
/// Parent → sender: the sink reads again; send the rest.
const RESUME: u32 = 3;
/// Sender → sink: one numbered message.
const DATA: u32 = 4;
/// Sender → sink: the last message, with the count sent.
const DONE: u32 = 5;
/// Sink → parent: what arrived (payload: `key=value` words).
const GOT: u32 = 6;

/// Payload of a DATA message: the frame is just under the default frame limit.
const PAYLOAD: usize = 16_000;
/// Messages sent after the sink is continued, on top of those queued before.
const MORE: u64 = 300;
/// Refused sends the sender keeps trying while the sink is stopped, before it
/// reports: the queue must not grow while it is refused.
const REFUSALS: u32 = 200;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![(seq % 251) as u8; PAYLOAD];
    p[..8].copy_from_slice(&seq.to_ne_bytes());
    p
}

fn words(payload: &[u8]) -> std::collections::BTreeMap<String, String> {
    String::from_utf8_lossy(payload)
        .split(' ')
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// ---------------------------------------------------------------- the daemon

#[derive(Default)]
struct Sender {
    tick: Option<Timer>,
    /// Messages queued so far (the next sequence number).
    next: u64,
    /// Sends refused while the sink was stopped.
    refused: u32,
    rss_before: u64,
    /// The last refusal: bytes queued, limit.
    full: Option<(usize, usize)>,
    /// Whether a refused descriptor came back in the error.
    fd_back: Option<bool>,
    /// After RESUME: send up to this many.
    total: Option<u64>,
    #[cfg(feature = "tokio")]
    task: std::sync::Arc<std::sync::Mutex<TaskState>>,
}

/// The queue's state if `r` is the refusal the mesh promises.
fn queue_full(r: &Result<usize, Error>) -> Option<(usize, usize, bool)> {
    match r {
        Err(Error::Channel {
            error: imsg_io::Error::QueueFull { queued, limit, fd },
            ..
        }) => Some((*queued, *limit, fd.is_some())),
        _ => None,
    }
}

impl Sender {
    fn send_some(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let to = Target::Instance(0);
        for _ in 0..64 {
            if self.total.is_some_and(|t| self.next >= t) {
                let r = ctx.compose(SINK, to, DONE, 0, &self.next.to_ne_bytes());
                if queue_full(&r).is_some() {
                    return Ok(()); // again at the next tick
                }
                r?;
                if let Some(t) = self.tick.take() {
                    ctx.cancel_timer(t);
                }
                return Ok(());
            }
            let r = ctx.compose(SINK, to, DATA, 0, &payload(self.next));
            if let Some((queued, limit, _)) = queue_full(&r) {
                self.full = Some((queued, limit));
                if self.total.is_some() {
                    return Ok(()); // the sink reads: try again at the next tick
                }
                self.refused += 1;
                if self.fd_back.is_none() {
                    let (_r, w) = rustix::pipe::pipe()?;
                    let r = ctx.compose_fd(SINK, to, DATA, 0, w, &payload(self.next));
                    self.fd_back = Some(queue_full(&r).is_some_and(|(_, _, fd)| fd));
                }
                if self.refused == REFUSALS {
                    let s = format!(
                        "queued_msgs={} queued={queued} limit={limit} rss_growth_kib={} fd_back={}",
                        self.next,
                        rss_kib().saturating_sub(self.rss_before),
                        self.fd_back == Some(true)
                    );
                    ctx.compose(ProcId::PARENT, Target::All, FULL, 0, s.as_bytes())?;
                }
                return Ok(());
            }
            r?;
            self.next += 1;
            if self.total.is_none() && self.next as usize * PAYLOAD > 16 * PEER_QUEUE_LIMIT {
                // Never refused: report it instead of eating the machine's memory.
                let s = format!("queued_msgs={} never_full=1", self.next);
                ctx.compose(ProcId::PARENT, Target::All, FULL, 0, s.as_bytes())?;
                self.total = Some(self.next);
            }
        }
        Ok(())
    }
}

impl Handler for Sender {
    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            FLOOD => {
                self.rss_before = rss_kib();
                self.tick = Some(ctx.timer_every(Duration::from_millis(1)));
                #[cfg(feature = "tokio")]
                if let Some(outbox) = ctx.outbox() {
                    let task = self.task.clone();
                    tokio::spawn(async move { flood_from_task(outbox, task).await });
                }
            }
            RESUME => {
                self.total = Some(self.next + MORE);
                #[cfg(feature = "tokio")]
                if let Ok(mut t) = self.task.lock() {
                    t.resume = true;
                }
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }

    fn timer(&mut self, ctx: &mut Context<'_>, _: Timer) -> Result<(), AppError> {
        #[cfg(feature = "tokio")]
        if ctx.outbox().is_some() {
            // The task sends; the handler reports for it (a report through the
            // outbox would wait behind the message the full channel holds up).
            let mut t = self.task.lock().map_err(|_| "poisoned")?;
            if let Some(s) = t.report.take() {
                ctx.compose(ProcId::PARENT, Target::All, FULL, 0, s.as_bytes())?;
            }
            return Ok(());
        }
        self.send_some(ctx)
    }
}

/// What the sending task tells the handler, and the handler the task.
#[cfg(feature = "tokio")]
#[derive(Default)]
struct TaskState {
    report: Option<String>,
    resume: bool,
}

/// The tokio flavour: a task fills the outbox (the stopped sink's channel fills
/// first, then the outbox), then, once resumed, sends the rest, waiting a little
/// whenever the outbox is full.
#[cfg(feature = "tokio")]
async fn flood_from_task(
    outbox: privsep_mesh::Outbox,
    state: std::sync::Arc<std::sync::Mutex<TaskState>>,
) {
    use privsep_mesh::OutboxError;
    use privsep_mesh::OUTBOX_LIMIT;
    let rss_before = rss_kib();
    let (mut next, mut refused, mut total) = (0u64, 0u32, None);
    let mut fd_back = None;
    let to = Target::Instance(0);
    loop {
        if total.is_some_and(|t| next >= t) {
            match outbox.compose(SINK, to, DONE, 0, &next.to_ne_bytes()) {
                Err(OutboxError::QueueFull { .. }) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                _ => return,
            }
        }
        match outbox.compose(SINK, to, DATA, 0, &payload(next)) {
            Ok(()) => next += 1,
            Err(OutboxError::QueueFull { queued, limit, .. }) => {
                if total.is_none() {
                    refused += 1;
                    if fd_back.is_none() {
                        let (_r, w) = rustix::pipe::pipe().expect("pipe");
                        let r = outbox.compose_fd(SINK, to, DATA, 0, w, &payload(next));
                        fd_back =
                            Some(matches!(r, Err(OutboxError::QueueFull { fd: Some(_), .. })));
                    }
                    if refused == REFUSALS {
                        let s = format!(
                            "queued_msgs={next} queued={queued} limit={limit} \
                             rss_growth_kib={} fd_back={}",
                            rss_kib().saturating_sub(rss_before),
                            fd_back == Some(true)
                        );
                        state.lock().expect("state").report = Some(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                if state.lock().expect("state").resume && total.is_none() {
                    total = Some(next + MORE);
                }
            }
            Err(e) => panic!("outbox: {e}"),
        }
        if total.is_none() && next as usize * PAYLOAD > 16 * (OUTBOX_LIMIT + PEER_QUEUE_LIMIT) {
            state.lock().expect("state").report = Some(format!("queued_msgs={next} never_full=1"));
            total = Some(next);
        }
        // Let the loop run between sends, as a task serving clients would.
        tokio::task::yield_now().await;
    }
}

#[derive(Default)]
struct Sink {
    got: u64,
    out_of_order: u64,
    corrupt: u64,
}

impl Handler for Sink {
    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            DATA => {
                let p = msg.payload();
                let seq = u64::from_ne_bytes(p[..8].try_into()?);
                if seq != self.got {
                    self.out_of_order += 1;
                }
                if p != payload(seq) {
                    self.corrupt += 1;
                }
                if msg.fd().is_some() {
                    self.corrupt += 1; // the refused descriptor was never queued
                }
                self.got += 1;
            }
            DONE => {
                let sent = u64::from_ne_bytes(msg.payload().try_into()?);
                let s = format!(
                    "got={} sent={sent} out_of_order={} corrupt={}",
                    self.got, self.out_of_order, self.corrupt
                );
                ctx.compose(ProcId::PARENT, Target::All, GOT, 0, s.as_bytes())?;
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }
}

struct Conductor;

fn check(name: &str, ok: bool, detail: impl std::fmt::Display) {
    say(&format!(
        "CHECK {name} {}",
        if ok {
            "ok".into()
        } else {
            format!("FAIL {detail}")
        }
    ));
}

fn signal(ctx: &Context<'_>, who: ProcId, sig: rustix::process::Signal) -> Result<(), AppError> {
    let pid = ctx.child_pid(Peer::new(who, 0)).ok_or("no such child")?;
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?;
    rustix::process::kill_process(pid, sig)?;
    Ok(())
}

impl Handler for Conductor {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        signal(ctx, SINK, rustix::process::Signal::STOP)?;
        ctx.compose(SENDER, Target::All, FLOOD, 0, b"")?;
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        let w = words(msg.payload());
        let get = |k: &str| w.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match msg.msg_type() {
            FULL => {
                say(&format!(
                    "INFO full: {}",
                    String::from_utf8_lossy(msg.payload())
                ));
                let limit = expected_limit() as u64;
                check(
                    "refused_at_the_default_limit",
                    get("never_full") == 0 && get("limit") == limit,
                    format!("limit {} want {limit}", get("limit")),
                );
                check(
                    "queue_bounded",
                    get("queued") <= limit,
                    format!("{} bytes queued", get("queued")),
                );
                // A queue's buffer may be up to twice what it holds (the channel's,
                // and in tokio the outbox's); the rest is the allocator's slack.
                let bound = 2 * (PEER_QUEUE_LIMIT as u64 + limit) / 1024 + 8 * 1024;
                check(
                    "rss_bounded",
                    get("rss_growth_kib") <= bound,
                    format!("grew by {} KiB, bound {bound}", get("rss_growth_kib")),
                );
                check(
                    "descriptor_handed_back",
                    w.get("fd_back").map(String::as_str) == Some("true"),
                    "the refused descriptor did not come back",
                );
                signal(ctx, SINK, rustix::process::Signal::CONT)?;
                ctx.compose(SENDER, Target::All, RESUME, 0, b"")?;
            }
            GOT => {
                say(&format!(
                    "INFO sink: {}",
                    String::from_utf8_lossy(msg.payload())
                ));
                check(
                    "nothing_lost",
                    get("got") == get("sent") && get("sent") >= MORE,
                    "messages lost",
                );
                check(
                    "in_order_and_intact",
                    get("out_of_order") == 0 && get("corrupt") == 0,
                    String::from_utf8_lossy(msg.payload()),
                );
                say("DONE");
                ctx.shutdown();
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }
}

/// Whether the sender runs in tokio and sends from a task through its outbox.
fn tokio_flavour() -> bool {
    args::app_args().iter().any(|a| a == "--tokio")
}

/// The limit the sender must meet: its channel's, or in tokio its outbox's.
fn expected_limit() -> usize {
    #[cfg(feature = "tokio")]
    if tokio_flavour() {
        return privsep_mesh::OUTBOX_LIMIT;
    }
    PEER_QUEUE_LIMIT
}

fn privsep() -> Privsep {
    let sender = ProcSpec::new(SENDER, "sender");
    #[cfg(feature = "tokio")]
    let sender = if tokio_flavour() {
        sender.with_tokio()
    } else {
        sender
    };
    let table = ProcTable::new("queuetest")
        .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
        .with_proc(sender)
        .with_proc(ProcSpec::new(SINK, "sink"));
    Privsep::new(table)
        .with_start(ProcId::PARENT, |_| Ok(Conductor))
        .with_start(SENDER, |_| Ok(Sender::default()))
        .with_start(SINK, |_| Ok(Sink::default()))
}

// ---------------------------------------------------------------- the driver

const DEADLINE: Duration = Duration::from_secs(60);

fn driver() -> ExitCode {
    let mut ok = run(&[], "queue_limit");
    #[cfg(feature = "tokio")]
    {
        ok &= run(&["--tokio"], "queue_limit_outbox");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(extra: &[&str], name: &str) -> bool {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.arg("--scenario")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("start the scenario");
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut err = child.stderr.take().expect("stderr");
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let mut failed = false;
    while let Ok(l) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        println!("    {l}");
        failed |= l.contains(" FAIL");
        seen.push(l.clone());
        if l == "DONE" {
            break;
        }
    }
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever happened, nothing of the scenario is left running.
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    let _ = child.wait();
    let stderr = errs.join().unwrap_or_default();
    let checks = seen.iter().filter(|l| l.ends_with(" ok")).count();
    let ok = !failed && checks == 6 && status.is_some_and(|s| s.success());
    if !ok {
        println!("status {status:?}, {checks} checks passed\n--- stderr\n{stderr}");
        println!("test {name} ... FAILED");
        return false;
    }
    println!("test {name} ... ok");
    true
}

fn main() -> ExitCode {
    let scenario = args::app_args().iter().any(|a| a == "--scenario");
    if scenario {
        stderr_log::init(log::LevelFilter::Info);
        privsep().run()
    } else {
        driver()
    }
}
