//! Real process meshes.
//!
//! This test binary is its own daemon (`harness = false`): started with
//! `--scenario NAME` it runs that scenario's mesh through `Privsep::run` — as the
//! parent, and, re-executed by the parent with `-P … -I …`, as each child. Started
//! without it, it is the test driver: it runs every scenario as a separate process
//! group with a deadline (a hung mesh is killed and the test fails), reads what the
//! scenario parent prints (`CHECK name ok|FAIL …`, `INFO …`, `PIDS …`), and checks
//! exit statuses, log lines and that no process of the group is left behind.
//!
//! Arguments that are not flags filter scenarios by substring.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use privsep_mesh::args::{self, Invocation};
use privsep_mesh::policy::everyone;
use privsep_mesh::{
    privdrop, stderr_log, AppError, Context, Handled, Handler, Peer, Privsep, ProcId, ProcSpec,
    ProcTable, Ready, Received, Signal, Target, Timer, Watch,
};

const A: ProcId = ProcId(1);
const B: ProcId = ProcId(2);
const C: ProcId = ProcId(3);
const D: ProcId = ProcId(4);

const REPORT: u32 = 1;
const PING: u32 = 2;
const PONG: u32 = 3;
const CMD: u32 = 4;
const RESULT: u32 = 5;
const FD_ALL: u32 = 6;
const FD_WRITTEN: u32 = 7;
const FWD: u32 = 8;
const FD_ONE: u32 = 9;
const BOGUS: u32 = 999;

static START: OnceLock<Instant> = OnceLock::new();

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// The line every process prints when a signal it asked for arrives.
fn say_signal(ctx: &Context<'_>, signal: Signal) {
    say(&format!("SIGNAL {signal} {}", ctx.me().name()));
}

/// The line every process prints from its shutdown hook.
fn say_hook(ctx: &Context<'_>) {
    say(&format!("HOOK {}", ctx.me().name()));
}

// ---------------------------------------------------------------- the daemon side

#[derive(Clone)]
struct Opts {
    scenario: String,
    chroot: Option<PathBuf>,
    no_action: bool,
    /// Every process runs its loop in a tokio runtime.
    tokio: bool,
    /// The mesh runs through `run_async` in a runtime built here.
    in_app_runtime: bool,
}

fn parse_opts(app: &[OsString]) -> Option<Opts> {
    let mut it = app.iter().map(|a| a.to_string_lossy().into_owned());
    let mut o = Opts {
        scenario: String::new(),
        chroot: None,
        no_action: false,
        tokio: false,
        in_app_runtime: false,
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scenario" => o.scenario = it.next()?,
            "--chroot" => o.chroot = Some(it.next()?.into()),
            "--no-action" => o.no_action = true,
            "--tokio" => o.tokio = true,
            "--async" => o.in_app_runtime = true,
            _ => {}
        }
    }
    (!o.scenario.is_empty()).then_some(o)
}

fn with_runtime(o: &Opts, spec: ProcSpec) -> ProcSpec {
    #[cfg(feature = "tokio")]
    if o.tokio || ["tokio", "timers", "alone"].contains(&o.scenario.as_str()) {
        return spec.with_tokio();
    }
    let _ = o;
    spec
}

fn table(o: &Opts) -> ProcTable {
    let parent = with_runtime(o, ProcSpec::new(ProcId::PARENT, "parent"));
    let probe = |id: ProcId, title: &str, n: u32| {
        with_runtime(o, ProcSpec::new(id, title).with_instances(n))
    };
    let t = ProcTable::new("meshtest").with_proc(parent);
    match o.scenario.as_str() {
        "mesh" | "mesh_everyone" => {
            let t = t
                .with_proc(probe(A, "alpha", 2))
                .with_proc(probe(B, "beta", 3))
                .with_proc(probe(C, "gamma", 1));
            if o.scenario == "mesh_everyone" {
                t.with_policy(everyone)
            } else {
                t
            }
        }
        "privdrop" => {
            let mut w = probe(A, "worker", 2).with_user("nobody");
            if let Some(dir) = &o.chroot {
                w = w.with_chroot(dir);
            }
            t.with_proc(w)
        }
        "kill" => t
            .with_proc(probe(A, "server", 3))
            .with_proc(probe(B, "logger", 1)),
        "protocol" => t
            .with_proc(probe(A, "alpha", 1))
            .with_proc(probe(B, "beta", 2)),
        "signals" => t.with_proc(probe(A, "worker", 2).with_signals(&[Signal::Usr1])),
        // Close to its limit from the start, so that imsg-io's descriptor guard
        // checks every read (far from it, the guard lets reads go unchecked
        // for a while, assuming nobody lowers the limit meanwhile).
        "app_timers" | "listen" | "listen_tight" => t.with_proc(probe(A, "alpha", 1)),
        "fdlimit" => t.with_proc(with_runtime(o, ProcSpec::new(A, "alpha"))),
        #[cfg(feature = "tokio")]
        "tokio" => t
            .with_proc(probe(A, "alpha", 2))
            .with_proc(probe(B, "beta", 1)),
        #[cfg(feature = "tokio")]
        "timers" => t.with_proc(probe(A, "alpha", 1)),
        #[cfg(feature = "tokio")]
        "alone" => t,
        "large" => t
            .with_proc(probe(A, "alpha", 8))
            .with_proc(probe(B, "beta", 8))
            .with_proc(probe(C, "gamma", 8))
            .with_proc(probe(D, "delta", 8)),
        other => panic!("unknown scenario {other}"),
    }
}

fn daemon(o: Opts, is_parent: bool) -> ExitCode {
    let table = table(&o);
    let children: Vec<ProcId> = table
        .procs()
        .map(|p| p.id())
        .filter(|&id| id != ProcId::PARENT)
        .collect();
    let sc = o.scenario.clone();
    let mut privsep = Privsep::new(table)
        .with_no_action(o.no_action)
        .with_start(ProcId::PARENT, move |_| Ok(Conductor::new(&sc)));
    for id in children {
        privsep = if o.scenario == "fdlimit" {
            privsep.with_start(id, |_| {
                free_slots_to(6)?;
                Ok(Probe::default())
            })
        } else {
            privsep.with_start(id, |_| Ok(Probe::default()))
        };
    }
    #[cfg(feature = "tokio")]
    let code = if o.in_app_runtime {
        // The application's own runtime, as `#[tokio::main]` would build it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(privsep.run_async())
    } else {
        privsep.run()
    };
    #[cfg(not(feature = "tokio"))]
    let code = privsep.run();
    if is_parent {
        // Every child must have been reaped: none may be left with us as parent.
        let me = std::process::id();
        let left = processes().into_iter().filter(|p| p.ppid == me).count();
        say(&format!("LEFTOVER {left}"));
    }
    code
}

fn kv(s: &str) -> BTreeMap<String, String> {
    s.split(' ')
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn peer_name(p: Peer) -> String {
    format!("{}.{}", p.proc.0, p.instance)
}

fn parse_peer(s: &str) -> Option<Peer> {
    let (a, b) = s.split_once('.')?;
    Some(Peer::new(ProcId(a.parse().ok()?), b.parse().ok()?))
}

/// Lowers this process's soft descriptor limit so that `free` slots are left
/// above the lowest free descriptor; returns the new limit.
fn free_slots_to(free: u64) -> Result<u64, AppError> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lowest = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 0)?;
    let n = std::os::fd::AsRawFd::as_raw_fd(&lowest) as u64;
    drop(lowest);
    let old = getrlimit(Resource::Nofile);
    let limit = n + free;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: old.maximum,
        },
    )?;
    Ok(limit)
}

/// Every child runs this: it reports itself when the mesh is ready and answers
/// the parent's commands.
#[derive(Default)]
struct Probe {
    pings: BTreeMap<Peer, u32>,
    pongs: Vec<String>,
    pipe: Option<std::fs::File>,
    fd_written: u32,
    /// The timers armed by CMD "arm": (one-shot, repeating), when, and what fired.
    timers: Option<(Timer, Timer, Instant)>,
    once: u32,
    ticks: u32,
    /// CMD "listen": the watched listening socket, and what clients sent so far.
    listener: Option<Watch>,
    clients: BTreeMap<Watch, Vec<u8>>,
}

impl Probe {
    fn report(ctx: &Context<'_>) -> String {
        let peers: Vec<String> = ctx.peers().into_iter().map(peer_name).collect();
        let (uids, gids, groups) = privdrop::credentials().unwrap_or_default();
        let root = std::fs::metadata("/").map(|m| format!("{}:{}", m.dev(), m.ino()));
        // SAFETY: setuid has no memory effects; in a dropped process it must fail.
        let rc = unsafe { libc::setuid(0) };
        let setuid0 = if rc == 0 {
            "succeeded".to_owned()
        } else {
            std::io::Error::last_os_error()
                .raw_os_error()
                .map_or("?".into(), |e| {
                    if e == libc::EPERM {
                        "EPERM".into()
                    } else {
                        e.to_string()
                    }
                })
        };
        let j = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        format!(
            "me={} pid={} peers={} uids={} gids={} groups={} root={} setuid0={}",
            peer_name(ctx.me().peer),
            std::process::id(),
            peers.join(","),
            j(&uids),
            j(&gids),
            j(&groups),
            root.unwrap_or_else(|e| e.to_string()),
            setuid0
        )
    }

    fn result(ctx: &mut Context<'_>, s: String) -> Result<(), AppError> {
        ctx.compose(ProcId::PARENT, Target::All, RESULT, 0, s.as_bytes())?;
        Ok(())
    }
}

impl Handler for Probe {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let r = Probe::report(ctx);
        ctx.compose(ProcId::PARENT, Target::All, REPORT, 0, r.as_bytes())?;
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        let from = msg.from();
        let to_sender = Target::Instance(from.instance);
        match msg.msg_type() {
            PING => {
                let n = self.pings.entry(from).or_default();
                *n += 1;
                let reply = format!(
                    "inst={} n={} pid={} from={}",
                    ctx.me().peer.instance,
                    n,
                    msg.pid(),
                    peer_name(from)
                );
                ctx.compose(from.proc, to_sender, PONG, msg.peerid(), reply.as_bytes())?;
            }
            PONG => {
                self.pongs
                    .push(String::from_utf8_lossy(msg.payload()).into_owned());
                if self.pongs.len() == ctx.instances(B) as usize {
                    let all = self.pongs.join(";");
                    Probe::result(ctx, format!("child_bcast {all}"))?;
                }
            }
            CMD => match msg.payload() {
                b"child_bcast" => {
                    ctx.compose(B, Target::All, PING, 5, b"")?;
                }
                b"fd_all" => {
                    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                    self.pipe = Some(r.into());
                    ctx.compose_fd(B, Target::All, FD_ALL, 0, w, b"")?;
                }
                b"forward" => {
                    ctx.compose(ProcId::PARENT, Target::All, FWD, 77, b"hello-forward")?;
                }
                b"bogus" => {
                    ctx.compose(B, Target::Instance(0), BOGUS, 0, b"")?;
                }
                b"listen" => {
                    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                    l.set_nonblocking(true)?;
                    let port = l.local_addr()?.port();
                    self.listener = Some(ctx.watch(l, Ready::READ));
                    Probe::result(ctx, format!("port {port}"))?;
                }
                b"listen_tight" => {
                    // The listener is watched with no descriptor slot free: the
                    // loop must wait for room rather than fail.
                    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                    l.set_nonblocking(true)?;
                    let port = l.local_addr()?.port();
                    free_slots_to(0)?;
                    self.listener = Some(ctx.watch(l, Ready::READ));
                    Probe::result(ctx, format!("port {port}"))?;
                }
                b"arm" => {
                    // Taken before arming: the timers count from their arming, so a
                    // clock read after it could see the one-shot fire "early".
                    let t0 = Instant::now();
                    let once = ctx.timer_after(Duration::from_millis(30));
                    let every = ctx.timer_every(Duration::from_millis(10));
                    self.timers = Some((once, every, t0));
                }
                b"limit" => {
                    // One free descriptor slot: imsg-io's descriptor guard refuses
                    // every read that could bring a descriptor.
                    let n = free_slots_to(1)?;
                    Probe::result(ctx, format!("limited {n}"))?;
                }
                #[cfg(feature = "tokio")]
                b"task" => {
                    // A spawned task answers through the outbox, after yielding.
                    let outbox = ctx.outbox().ok_or("no outbox: not a tokio process")?;
                    let name = ctx.me().name();
                    tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        let s = format!("task_{name} from a tokio task");
                        let _ =
                            outbox.compose(ProcId::PARENT, Target::All, RESULT, 0, s.as_bytes());
                    });
                }
                #[cfg(feature = "tokio")]
                b"timers" => {
                    // Called in the handler itself, not only in a task: both need
                    // the runtime's timer driver.
                    let sleep = tokio::time::sleep(Duration::from_millis(30));
                    let mut every = tokio::time::interval(Duration::from_millis(10));
                    let outbox = ctx.outbox().ok_or("no outbox: not a tokio process")?;
                    tokio::spawn(async move {
                        let t = Instant::now();
                        sleep.await;
                        for _ in 0..3 {
                            every.tick().await;
                        }
                        let s = format!("timers {}", t.elapsed().as_millis());
                        let _ =
                            outbox.compose(ProcId::PARENT, Target::All, RESULT, 0, s.as_bytes());
                    });
                }
                _ => return Ok(Handled::No),
            },
            FD_ALL => {
                let fd: OwnedFd = msg.take_fd().ok_or("FD_ALL without a descriptor")?;
                let mut f = std::fs::File::from(fd);
                f.write_all(ctx.me().peer.instance.to_string().as_bytes())?;
                drop(f);
                ctx.compose(from.proc, to_sender, FD_WRITTEN, 0, b"")?;
            }
            FD_ONE => {
                let fd: OwnedFd = msg.take_fd().ok_or("FD_ONE without a descriptor")?;
                drop(fd);
                Probe::result(ctx, "got_fd".into())?;
            }
            FD_WRITTEN => {
                self.fd_written += 1;
                if self.fd_written == ctx.instances(B) {
                    let mut r = self.pipe.take().ok_or("no pipe")?;
                    let mut got = String::new();
                    r.read_to_string(&mut got)?;
                    let mut chars: Vec<char> = got.chars().collect();
                    chars.sort_unstable();
                    Probe::result(
                        ctx,
                        format!("fd_all {}", chars.into_iter().collect::<String>()),
                    )?;
                }
            }
            FWD => {
                let s = format!(
                    "forward from={} pid={} peerid={} payload={} fd={}",
                    peer_name(from),
                    msg.pid(),
                    msg.peerid(),
                    String::from_utf8_lossy(msg.payload()),
                    msg.flagged_fd()
                );
                Probe::result(ctx, s)?;
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }

    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        say_signal(ctx, signal);
        Ok(())
    }

    fn io(&mut self, ctx: &mut Context<'_>, w: Watch, ready: Ready) -> Result<(), AppError> {
        if Some(w) == self.listener {
            // One connection per call: readiness is level-triggered, so the loop
            // calls again while more wait.
            let l: &mut std::net::TcpListener = ctx.io(w).ok_or("listener gone")?;
            let (c, _) = l.accept()?;
            c.set_nonblocking(true)?;
            let cw = ctx.watch(c, Ready::READ);
            self.clients.insert(cw, Vec::new());
            return Ok(());
        }
        if !ready.readable {
            return Ok(());
        }
        let c: &mut std::net::TcpStream = ctx.io(w).ok_or("client gone")?;
        let mut buf = [0u8; 64];
        let n = match c.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let got = self.clients.entry(w).or_default();
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"\n") || n == 0 {
            let reply = [b"echo ", &got[..]].concat();
            c.write_all(&reply)?;
            ctx.unwatch(w);
            self.clients.remove(&w);
            Probe::result(ctx, "served 1".into())?;
        }
        Ok(())
    }

    fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), AppError> {
        let (once, every, t0) = self.timers.ok_or("a timer fired that was never armed")?;
        if timer == once {
            self.once += 1;
        } else if timer == every {
            self.ticks += 1;
        }
        if self.once == 1 && self.ticks >= 3 && ctx.cancel_timer(every) {
            let s = format!(
                "app_timers once={} ticks={} ms={}",
                self.once,
                self.ticks,
                t0.elapsed().as_millis()
            );
            Probe::result(ctx, s)?;
        }
        Ok(())
    }

    fn shutdown(&mut self, ctx: &mut Context<'_>) {
        say_hook(ctx);
    }
}

/// The parent: collects reports, runs the scenario's checks, prints them.
struct Conductor {
    scenario: String,
    reports: BTreeMap<Peer, BTreeMap<String, String>>,
    pongs: Vec<(Peer, BTreeMap<String, String>)>,
    results: BTreeMap<String, String>,
    fired: bool,
    sent: bool,
    done: bool,
}

fn check(name: &str, ok: bool, detail: impl std::fmt::Display) {
    if ok {
        say(&format!("CHECK {name} ok"));
    } else {
        say(&format!("CHECK {name} FAIL {detail}"));
    }
}

fn fd_count(pid: Option<u32>) -> usize {
    match pid {
        Some(p) => std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count()),
        None => std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() - 1),
    }
}

impl Conductor {
    fn new(scenario: &str) -> Conductor {
        Conductor {
            scenario: scenario.to_owned(),
            reports: BTreeMap::new(),
            pongs: Vec::new(),
            results: BTreeMap::new(),
            fired: false,
            sent: false,
            done: false,
        }
    }

    fn children(ctx: &Context<'_>) -> Vec<Peer> {
        ctx.peers()
    }

    fn pids_line(ctx: &Context<'_>) -> String {
        let mut s = String::from("PIDS");
        for p in ctx.peers() {
            s += &format!(" {}={}", peer_name(p), ctx.child_pid(p).unwrap_or(0));
        }
        s
    }

    /// The whole table, rebuilt here to ask it what the policy predicts.
    fn table(&self) -> ProcTable {
        table(&Opts {
            scenario: self.scenario.clone(),
            chroot: None,
            no_action: false,
            tokio: false,
            in_app_runtime: false,
        })
    }

    fn check_topology(&self, ctx: &Context<'_>, count_fds: bool) {
        let t = self.table();
        // Each child's peers are exactly what the policy gives it.
        let mut bad = Vec::new();
        let mut ends: BTreeMap<(Peer, Peer), u32> = BTreeMap::new();
        for (child, r) in &self.reports {
            let got: Vec<Peer> = r["peers"].split(',').filter_map(parse_peer).collect();
            if got != t.channels_of(*child) {
                bad.push(format!("{}: {:?}", peer_name(*child), got));
            }
            for p in got.into_iter().filter(|p| *p != Peer::PARENT) {
                let key = if *child < p { (*child, p) } else { (p, *child) };
                *ends.entry(key).or_default() += 1;
            }
        }
        check("peers_match_policy", bad.is_empty(), bad.join("; "));
        // Every allowed pair connected exactly once (seen from both ends), nobody else.
        let pairs: BTreeSet<(Peer, Peer)> = t
            .mesh_pairs()
            .into_iter()
            .map(|(a, b)| if a < b { (a, b) } else { (b, a) })
            .collect();
        let seen: BTreeSet<(Peer, Peer)> = ends.keys().copied().collect();
        let twice = ends.values().all(|&n| n == 2);
        check(
            "pairs_exactly_once",
            seen == pairs && twice && pairs.len() == t.mesh_pairs().len(),
            format!(
                "{} pairs expected, {} seen, {ends:?}",
                pairs.len(),
                seen.len()
            ),
        );
        say(&format!("INFO pairs={}", pairs.len()));
        if !count_fds {
            return;
        }
        // Descriptor counts: what the policy predicts, in every process. A process
        // may be mid-read (imsg-io's descriptor guard dups briefly): retry a little.
        let mut wrong = Vec::new();
        for who in std::iter::once(None).chain(Self::children(ctx).into_iter().map(Some)) {
            let peer = who.unwrap_or(Peer::PARENT);
            let pid = who.and_then(|p| ctx.child_pid(p));
            let want = t.predicted_fds(peer);
            let mut got = 0;
            for _ in 0..5 {
                got = fd_count(pid);
                if got == want {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if got != want {
                wrong.push(format!(
                    "{} has {got}, policy predicts {want}",
                    peer_name(peer)
                ));
            }
        }
        check("fd_counts", wrong.is_empty(), wrong.join("; "));
    }

    fn check_privdrop(&self, ctx: &Context<'_>) {
        let chroot = std::env::args_os()
            .skip_while(|a| a != "--chroot")
            .nth(1)
            .map(PathBuf::from);
        let root = privdrop::is_root();
        for (child, r) in &self.reports {
            let name = peer_name(*child);
            let pid = ctx.child_pid(*child).unwrap_or(0);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            check(
                &format!("title_{name}"),
                comm.trim() == "worker",
                format!("comm {comm:?}"),
            );
            say(&format!(
                "INFO {name} pid={} uids={} gids={} groups={} root={} setuid0={}",
                r["pid"], r["uids"], r["gids"], r["groups"], r["root"], r["setuid0"]
            ));
            if root {
                let nobody = privdrop::lookup("nobody").expect("user nobody");
                let (u, g) = (nobody.uid, nobody.gid);
                check(
                    &format!("uid_{name}"),
                    r["uids"] == format!("{u},{u},{u}"),
                    &r["uids"],
                );
                check(
                    &format!("gid_{name}"),
                    r["gids"] == format!("{g},{g},{g}"),
                    &r["gids"],
                );
                check(
                    &format!("groups_{name}"),
                    r["groups"] == g.to_string(),
                    &r["groups"],
                );
                check(
                    &format!("setuid0_fails_{name}"),
                    r["setuid0"] == "EPERM",
                    &r["setuid0"],
                );
                let dir = chroot.as_ref().map(std::fs::metadata);
                let want = match dir {
                    Some(Ok(m)) => format!("{}:{}", m.dev(), m.ino()),
                    _ => "no chroot dir".into(),
                };
                let real = std::fs::metadata("/").map(|m| format!("{}:{}", m.dev(), m.ino()));
                check(
                    &format!("chroot_{name}"),
                    r["root"] == want && Ok(&r["root"]) != real.as_ref().map_err(|_| ()),
                    format!("root {} want {want}", r["root"]),
                );
            } else {
                let me = rustix::process::geteuid().as_raw();
                check(
                    &format!("unprivileged_{name}"),
                    r["uids"].split(',').all(|u| u == me.to_string()),
                    &r["uids"],
                );
            }
        }
    }

    fn step(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let children = Self::children(ctx).len();
        if self.reports.len() < children || self.done {
            return Ok(());
        }
        match self.scenario.as_str() {
            "mesh" | "mesh_everyone" => {
                if !self.fired {
                    self.fired = true;
                    self.check_topology(ctx, true);
                    ctx.compose(B, Target::All, PING, 9, b"")?;
                    ctx.compose(A, Target::Instance(0), CMD, 0, b"child_bcast")?;
                    ctx.compose(A, Target::Instance(1), CMD, 0, b"fd_all")?;
                    ctx.compose(B, Target::Instance(1), CMD, 0, b"forward")?;
                    return Ok(());
                }
                if self.pongs.len() < ctx.instances(B) as usize || self.results.len() < 3 {
                    return Ok(());
                }
                self.check_broadcasts(ctx);
                self.finish(ctx);
            }
            "tokio" => {
                if !self.fired {
                    self.fired = true;
                    // The runtime's own descriptors (epoll, eventfd) are not the
                    // mesh's: only the topology is checked here.
                    self.check_topology(ctx, false);
                    ctx.compose(A, Target::All, CMD, 0, b"task")?;
                    ctx.compose(B, Target::All, PING, 3, b"")?;
                    return Ok(());
                }
                if self.results.len() < 2 || self.pongs.is_empty() {
                    return Ok(());
                }
                check(
                    "tokio_tasks_send_through_outbox",
                    self.results.contains_key("task_alpha[0]")
                        && self.results.contains_key("task_alpha[1]"),
                    format!("{:?}", self.results),
                );
                check(
                    "tokio_dispatch",
                    self.pongs.len() == 1 && self.pongs[0].1["n"] == "1",
                    format!("{:?}", self.pongs),
                );
                self.finish(ctx);
            }
            #[cfg(feature = "tokio")]
            "timers" if !self.fired => {
                self.fired = true;
                ctx.compose(A, Target::Instance(0), CMD, 0, b"timers")?;
            }
            #[cfg(feature = "tokio")]
            "timers" => {
                if let Some(ms) = self.results.get("timers") {
                    let ms: u64 = ms.parse().unwrap_or(0);
                    check("tokio_sleep_and_interval", ms >= 30, format!("{ms} ms"));
                    self.finish(ctx);
                }
            }
            #[cfg(feature = "tokio")]
            "alone" if !self.fired => {
                self.fired = true;
                // A table with only the parent: its ready hook runs in the runtime
                // too, and can spawn and sleep there.
                check(
                    "ready_in_runtime",
                    tokio::runtime::Handle::try_current().is_ok(),
                    "no tokio runtime in ready()",
                );
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    say("SLEPT");
                    let me = rustix::process::getpid();
                    let _ = rustix::process::kill_process(me, rustix::process::Signal::TERM);
                });
            }
            "privdrop" => {
                self.check_privdrop(ctx);
                self.finish(ctx);
            }
            "kill" | "signals" if !self.fired => {
                self.fired = true;
                say(&Self::pids_line(ctx));
            }
            "listen" if !self.fired => {
                self.fired = true;
                ctx.compose(A, Target::Instance(0), CMD, 0, b"listen")?;
            }
            "listen_tight" if !self.fired => {
                self.fired = true;
                say(&Self::pids_line(ctx));
                ctx.compose(A, Target::Instance(0), CMD, 0, b"listen_tight")?;
            }
            "listen" | "listen_tight" => {
                if let Some(p) = self.results.remove("port") {
                    say(&format!("PORT {p}"));
                }
                if self.results.contains_key("served") {
                    self.finish(ctx);
                }
            }
            "app_timers" if !self.fired => {
                self.fired = true;
                ctx.compose(A, Target::Instance(0), CMD, 0, b"arm")?;
            }
            "app_timers" => {
                if let Some(r) = self.results.get("app_timers") {
                    let r = kv(r);
                    let ms: u64 = r["ms"].parse().unwrap_or(0);
                    check(
                        "handler_timers",
                        r["once"] == "1" && r["ticks"] == "3" && ms >= 30,
                        format!("{r:?}"),
                    );
                    self.finish(ctx);
                }
            }
            "fdlimit" if !self.fired => {
                self.fired = true;
                say(&Self::pids_line(ctx));
                ctx.compose(A, Target::Instance(0), CMD, 0, b"limit")?;
            }
            "fdlimit" => {
                if self.results.contains_key("got_fd") {
                    say("GOT");
                    self.finish(ctx);
                } else if self.results.contains_key("limited") && !self.sent {
                    self.sent = true;
                    let fd = std::fs::File::open("/dev/null")?;
                    ctx.compose_fd(A, Target::Instance(0), FD_ONE, 0, fd.into(), b"")?;
                    ctx.flush(A, Target::Instance(0))?;
                    say("SENT");
                }
            }
            "protocol" if !self.fired => {
                self.fired = true;
                say(&Self::pids_line(ctx));
                ctx.compose(A, Target::Instance(0), CMD, 0, b"bogus")?;
            }
            "large" => {
                if !self.fired {
                    self.fired = true;
                    let ms = START.get().map_or(0, |s| s.elapsed().as_millis());
                    say(&format!("INFO children={children} ready_ms={ms}"));
                    for id in [A, B, C, D] {
                        ctx.compose(id, Target::All, PING, 1, b"")?;
                    }
                    return Ok(());
                }
                if self.pongs.len() < children {
                    return Ok(());
                }
                let ms = START.get().map_or(0, |s| s.elapsed().as_millis());
                say(&format!("INFO broadcast_answered_ms={ms}"));
                let who: BTreeSet<Peer> = self.pongs.iter().map(|(p, _)| *p).collect();
                check(
                    "large_broadcast_once_each",
                    who.len() == children && self.pongs.iter().all(|(_, r)| r["n"] == "1"),
                    format!("{} answers from {} instances", self.pongs.len(), who.len()),
                );
                self.finish(ctx);
            }
            _ => {}
        }
        Ok(())
    }

    fn check_broadcasts(&self, ctx: &Context<'_>) {
        // Parent → every beta: one call, each instance exactly once, pid field = 1.
        let who: Vec<u32> = self.pongs.iter().map(|(p, _)| p.instance).collect();
        let mut sorted = who.clone();
        sorted.sort_unstable();
        let want: Vec<u32> = (0..ctx.instances(B)).collect();
        check(
            "compose_all_once_each",
            sorted == want
                && self
                    .pongs
                    .iter()
                    .all(|(_, r)| r["n"] == "1" && r["pid"] == "1" && r["from"] == "0.0"),
            format!("{:?}", self.pongs),
        );
        // alpha[0] → every beta (child to child), pid field = alpha's instance + 1.
        let cb = self.results.get("child_bcast").cloned().unwrap_or_default();
        let replies: Vec<BTreeMap<String, String>> = cb.split(';').map(kv).collect();
        let mut insts: Vec<String> = replies.iter().map(|r| r["inst"].clone()).collect();
        insts.sort_unstable();
        let want_s: Vec<String> = want.iter().map(u32::to_string).collect();
        check(
            "child_compose_all_once_each",
            insts == want_s
                && replies
                    .iter()
                    .all(|r| r["n"] == "1" && r["pid"] == "1" && r["from"] == "1.0"),
            &cb,
        );
        // alpha[1] → every beta with one descriptor: each got its own duplicate.
        let digits: String = want.iter().map(u32::to_string).collect();
        check(
            "fd_broadcast_dup_per_instance",
            self.results.get("fd_all") == Some(&digits),
            format!("{:?}", self.results.get("fd_all")),
        );
        // beta[1] → parent → gamma[0]: forwarded, the parent's instance in pid.
        check(
            "forward_through_parent",
            self.results.get("forward").map(String::as_str)
                == Some("from=0.0 pid=1 peerid=77 payload=hello-forward fd=false"),
            format!("{:?}", self.results.get("forward")),
        );
    }

    fn finish(&mut self, ctx: &mut Context<'_>) {
        self.done = true;
        say("DONE");
        ctx.shutdown();
    }
}

impl Handler for Conductor {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        say("READY");
        self.step(ctx)
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        let text = String::from_utf8_lossy(msg.payload()).into_owned();
        match msg.msg_type() {
            REPORT => {
                self.reports.insert(msg.from(), kv(&text));
            }
            PONG => self.pongs.push((msg.from(), kv(&text))),
            RESULT => {
                let (k, v) = text.split_once(' ').unwrap_or((&text, ""));
                self.results.insert(k.to_owned(), v.to_owned());
            }
            FWD => {
                ctx.forward(msg, C, Target::Instance(0))?;
            }
            _ => return Ok(Handled::No),
        }
        self.step(ctx)?;
        Ok(Handled::Yes)
    }

    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        say_signal(ctx, signal);
        Ok(())
    }

    fn shutdown(&mut self, ctx: &mut Context<'_>) {
        say_hook(ctx);
    }
}

// ---------------------------------------------------------------- the driver side

struct Proc {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    state: char,
}

fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() > 3 {
            out.push(Proc {
                pid,
                state: f[0].chars().next().unwrap_or('?'),
                ppid: f[1].parse().unwrap_or(0),
                pgrp: f[2].parse().unwrap_or(0),
            });
        }
    }
    out
}

const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    child: Child,
    pid: u32,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    deadline: Instant,
}

impl Run {
    fn start(scenario: &str, extra: &[&str]) -> Run {
        Run::start_with(&std::env::current_exe().unwrap(), None, scenario, extra)
    }

    /// Runs `exe` (this test binary or a copy), as `ids` (uid, gid) if given.
    fn start_with(exe: &Path, ids: Option<(u32, u32)>, scenario: &str, extra: &[&str]) -> Run {
        let mut cmd = Command::new(exe);
        if let Some((uid, gid)) = ids {
            // std drops the supplementary groups too when it changes the uid as root.
            cmd.uid(uid).gid(gid);
        }
        cmd.args(["--scenario", scenario])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // The scenario parent starts with stdio only (cargo and CI may leave other
        // descriptors open without O_CLOEXEC), so its descriptor count is exact.
        // SAFETY: close_range(2) / fcntl(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let flags = libc::CLOSE_RANGE_CLOEXEC;
                if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, flags) != 0 {
                    let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(0, 1 << 16) as i32;
                    for fd in 3..max {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the scenario");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Run {
            pid: child.id(),
            child,
            lines,
            stdout: Vec::new(),
            stderr,
            deadline: Instant::now() + DEADLINE,
        }
    }

    /// The first stdout line starting with `prefix`, waiting until the deadline.
    fn line(&mut self, prefix: &str) -> Result<String, String> {
        if let Some(l) = self.stdout.iter().find(|l| l.starts_with(prefix)) {
            return Ok(l.clone());
        }
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.stdout.push(l.clone());
                    if l.starts_with(prefix) {
                        return Ok(l);
                    }
                }
                Err(_) => {
                    self.kill();
                    return Err(format!(
                        "no {prefix:?} line before the deadline\n{}",
                        self.dump()
                    ));
                }
            }
        }
    }

    fn kill(&mut self) {
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(self.pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }

    fn dump(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits for the scenario parent to exit (deadline), then for its output, and
    /// checks that no process of its group is left. Returns the exit code.
    fn finish(&mut self) -> Result<i32, String> {
        let status = loop {
            if let Some(s) = self.child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if Instant::now() > self.deadline {
                self.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "scenario did not end before the deadline\n{}",
                    self.dump()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Output ends when every process holding the pipe has exited.
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.stdout.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(format!(
                        "output still open at the deadline\n{}",
                        self.dump()
                    ));
                }
            }
        }
        let left: Vec<String> = processes()
            .into_iter()
            .filter(|p| p.pgrp == self.pid)
            .map(|p| format!("{} ({})", p.pid, p.state))
            .collect();
        if !left.is_empty() {
            self.kill();
            return Err(format!("processes left behind: {left:?}\n{}", self.dump()));
        }
        // Give the stderr reader a moment to take the last bytes.
        std::thread::sleep(Duration::from_millis(20));
        Ok(status.code().unwrap_or(-1))
    }

    fn checks(&self, wanted: &[&str]) -> Result<(), String> {
        let mut missing = Vec::new();
        for w in wanted {
            match self
                .stdout
                .iter()
                .find(|l| l.starts_with(&format!("CHECK {w} ")))
            {
                Some(l) if l.ends_with(" ok") => {}
                Some(l) => return Err(format!("{l}\n{}", self.dump())),
                None => missing.push(*w),
            }
        }
        if let Some(l) = self.stdout.iter().find(|l| l.contains(" FAIL ")) {
            return Err(format!("{l}\n{}", self.dump()));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("checks never ran: {missing:?}\n{}", self.dump()))
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn expect(&self, cond: bool, what: &str) -> Result<(), String> {
        if cond {
            Ok(())
        } else {
            Err(format!("{what}\n{}", self.dump()))
        }
    }
}

fn pids(line: &str) -> BTreeMap<String, u32> {
    line.split(' ')
        .skip(1)
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(0)))
        .collect()
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig);
}

fn mesh_checks(r: &mut Run) -> Result<(), String> {
    let code = r.finish()?;
    r.checks(&[
        "peers_match_policy",
        "pairs_exactly_once",
        "fd_counts",
        "compose_all_once_each",
        "child_compose_all_once_each",
        "fd_broadcast_dup_per_instance",
        "forward_through_parent",
    ])?;
    r.expect(code == 0, &format!("exit status {code}"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )?;
    // Every process ran its shutdown hook.
    let hooks = r.stdout.iter().filter(|l| l.starts_with("HOOK ")).count();
    r.expect(hooks == 7, &format!("{hooks} shutdown hooks ran, want 7"))
}

/// Every allowed pair connected exactly once, fd counts as predicted, broadcasts
/// reach each instance once, a descriptor broadcast is duplicated per instance,
/// forward relays through the parent. httpd's default policy.
fn test_mesh() -> Result<(), String> {
    let mut r = Run::start("mesh", &[]);
    mesh_checks(&mut r)?;
    r.expect(
        r.stdout.contains(&"INFO pairs=11".into()),
        "default policy: 11 pairs",
    )
}

/// The same with iked's policy (instances of one process talk to each other too).
fn test_mesh_everyone() -> Result<(), String> {
    let mut r = Run::start("mesh_everyone", &[]);
    mesh_checks(&mut r)?;
    r.expect(
        r.stdout.contains(&"INFO pairs=15".into()),
        "everyone policy: 15 pairs",
    )
}

/// Children run as nobody inside their chroot and cannot get root back (as root);
/// without root, privilege drop is off and said once.
fn test_privdrop() -> Result<(), String> {
    // Under /run (root's, 0755): the library refuses a chroot below /tmp.
    let dir = PathBuf::from(format!("/run/privsep-mesh-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let mut r = Run::start("privdrop", &["--chroot", dir.to_str().unwrap()]);
    let result = (|| {
        let code = r.finish()?;
        let mut wanted = vec!["title_1.0", "title_1.1"];
        if privdrop::is_root() {
            wanted.extend([
                "uid_1.0",
                "uid_1.1",
                "gid_1.0",
                "gid_1.1",
                "groups_1.0",
                "groups_1.1",
                "setuid0_fails_1.0",
                "setuid0_fails_1.1",
                "chroot_1.0",
                "chroot_1.1",
            ]);
        } else {
            wanted.extend(["unprivileged_1.0", "unprivileged_1.1"]);
            let n = r.stderr().matches("privilege drop is off").count();
            r.expect(n == 1, &format!("'privilege drop is off' said {n} times"))?;
        }
        r.checks(&wanted)?;
        for l in r.stdout.iter().filter(|l| l.starts_with("INFO ")) {
            println!("    {l}");
        }
        r.expect(code == 0, &format!("exit status {code}"))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// As root, the same daemon started by an unprivileged user: privilege drop is off,
/// said once, children keep that user. Runs from a copy of this binary in a
/// world-readable temporary directory, so the user can execute it wherever the
/// build lives.
fn test_privdrop_unprivileged() -> Result<(), String> {
    if !privdrop::is_root() {
        // test_privdrop already ran the unprivileged path.
        return test_privdrop();
    }
    let nobody = privdrop::lookup("nobody").map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("privsep-mesh-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let exe = dir.join("meshtest");
    let result = (|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        std::fs::copy(std::env::current_exe().unwrap(), &exe).map_err(|e| e.to_string())?;
        let ids = Some((nobody.uid, nobody.gid));
        let mut r = Run::start_with(&exe, ids, "privdrop", &["--chroot", "/nonexistent"]);
        let code = r.finish()?;
        r.checks(&[
            "title_1.0",
            "title_1.1",
            "unprivileged_1.0",
            "unprivileged_1.1",
        ])?;
        let n = r.stderr().matches("privilege drop is off").count();
        r.expect(n == 1, &format!("'privilege drop is off' said {n} times"))?;
        r.expect(code == 0, &format!("exit status {code}"))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A child that cannot drop privileges (its chroot does not exist) does not run on:
/// it says why and exits 1, the parent logs both lost children and exits 1, no hang.
/// Without root nothing is dropped, so the mesh runs normally.
fn test_privdrop_failure() -> Result<(), String> {
    let missing = format!("/nonexistent-privsep-mesh-{}", std::process::id());
    let mut r = Run::start("privdrop", &["--chroot", &missing]);
    let code = r.finish()?;
    if !privdrop::is_root() {
        return r.expect(code == 0, &format!("exit status {code}"));
    }
    let err = r.stderr();
    let why = format!("cannot drop privileges: chroot {missing}: No such file or directory");
    r.expect(
        err.matches(&why).count() == 2,
        &format!("want {why:?} from both workers"),
    )?;
    r.expect(
        err.matches("exited abnormally").count() == 2,
        "two lost children",
    )?;
    r.expect(
        !r.stdout.iter().any(|l| l.starts_with("CHECK ")),
        "the mesh ran",
    )?;
    r.expect(code == 1, &format!("exit status {code}"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// A chroot directory the dropped user could write to (owned by nobody, mode
/// 0777) is refused before anything is dropped: both workers say why and exit 1,
/// the parent logs both lost children and exits 1.
fn test_privdrop_unsafe_chroot() -> Result<(), String> {
    if !privdrop::is_root() {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(format!("/run/privsep-mesh-unsafe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let nobody = privdrop::lookup("nobody").map_err(|e| e.to_string())?;
    let result = (|| {
        std::os::unix::fs::chown(&dir, Some(nobody.uid), Some(nobody.gid))
            .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| e.to_string())?;
        let mut r = Run::start("privdrop", &["--chroot", dir.to_str().unwrap()]);
        let code = r.finish()?;
        let err = r.stderr();
        let why = format!(
            "cannot drop privileges: unsafe chroot {0}: {0} is not owned by root",
            dir.display()
        );
        r.expect(
            err.matches(&why).count() == 2,
            &format!("want {why:?} from both workers"),
        )?;
        r.expect(
            !r.stdout.iter().any(|l| l.starts_with("CHECK ")),
            "the mesh ran",
        )?;
        r.expect(code == 1, &format!("exit status {code}"))?;
        r.expect(
            r.stdout.contains(&"LEFTOVER 0".into()),
            "children left unreaped",
        )
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// SIGKILL one server: the parent logs the lost child in proc.c's words, everyone
/// else leaves, nothing hangs, no zombie is left.
fn test_kill() -> Result<(), String> {
    kill(&[])
}

fn kill(extra: &[&str]) -> Result<(), String> {
    let mut r = Run::start("kill", extra);
    let p = pids(&r.line("PIDS")?);
    let victim = p["1.1"];
    signal(victim, rustix::process::Signal::KILL);
    let code = r.finish()?;
    let err = r.stderr();
    let want = format!("lost child: pid {victim} terminated; signal 9");
    r.expect(err.contains(&want), &format!("no {want:?}"))?;
    r.expect(
        err.matches("lost child").count() == 1,
        "other children must end cleanly",
    )?;
    // The parent reaps on SIGCHLD, but its handler did not ask for it.
    r.expect(
        !r.stdout.iter().any(|l| l.starts_with("SIGNAL ")),
        "a signal reached a handler",
    )?;
    r.expect(
        code == 1,
        &format!("exit status {code}, want 1 (a child was lost)"),
    )?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )?;
    // The survivors ran their shutdown hooks (they saw end of file).
    for s in ["server[0]", "server[2]", "logger[0]", "parent[0]"] {
        r.expect(
            r.stdout.contains(&format!("HOOK {s}")),
            &format!("{s} did not shut down"),
        )?;
    }
    Ok(())
}

/// An unhandled message type is a protocol error: the receiver logs it and exits
/// non-zero; the parent logs "exited abnormally"; the mesh comes down.
fn test_protocol_error() -> Result<(), String> {
    let mut r = Run::start("protocol", &[]);
    let p = pids(&r.line("PIDS")?);
    let code = r.finish()?;
    let err = r.stderr();
    r.expect(
        err.contains("protocol error from alpha[0]: got invalid imsg 999: no handler"),
        "no protocol error line",
    )?;
    let want = format!("lost child: pid {} exited abnormally", p["2.0"]);
    r.expect(err.contains(&want), &format!("no {want:?}"))?;
    r.expect(code == 1, &format!("exit status {code}"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// SIGHUP is ignored, SIGUSR1 reaches a handler that asked for it, SIGTERM to the
/// parent shuts the mesh down through every shutdown hook with status 0.
fn test_signals() -> Result<(), String> {
    signals(&[])
}

fn signals(extra: &[&str]) -> Result<(), String> {
    let mut r = Run::start("signals", extra);
    let p = pids(&r.line("PIDS")?);
    use rustix::process::Signal as S;
    for pid in p.values() {
        signal(*pid, S::HUP);
    }
    signal(r.pid, S::HUP);
    signal(p["1.0"], S::USR1);
    r.line("SIGNAL SIGUSR1 worker[0]")?;
    signal(r.pid, S::TERM);
    let code = r.finish()?;
    r.expect(code == 0, &format!("exit status {code}"))?;
    for s in ["parent[0]", "worker[0]", "worker[1]"] {
        r.expect(
            r.stdout.contains(&format!("HOOK {s}")),
            &format!("{s}: no shutdown hook"),
        )?;
    }
    r.expect(
        !r.stderr().contains("lost child"),
        "a child died of a signal",
    )?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// A handler arms a one-shot and a repeating timer through its Context: the
/// one-shot fires once, the repeating one until it is cancelled.
fn test_handler_timers() -> Result<(), String> {
    handler_timers(&[])
}

fn handler_timers(extra: &[&str]) -> Result<(), String> {
    let mut r = Run::start("app_timers", extra);
    let code = r.finish()?;
    r.checks(&["handler_timers"])?;
    r.expect(code == 0, &format!("exit status {code}"))
}

/// A handler watches its own listening socket and the client it accepts: the
/// loop calls it when a connection waits and when the client wrote; it answers
/// and closes the client by unwatching it.
fn test_handler_listener() -> Result<(), String> {
    handler_listener(&[])
}

fn handler_listener(extra: &[&str]) -> Result<(), String> {
    let mut r = Run::start("listen", extra);
    let port: u16 = r.line("PORT ")?[5..].parse().map_err(|e| format!("{e}"))?;
    echo_client(r, port)
}

/// Connects to the scenario's listener, expects its echo, and lets the mesh end.
fn echo_client(mut r: Run, port: u16) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello\n").map_err(|e| e.to_string())?;
    let mut got = String::new();
    s.read_to_string(&mut got).map_err(|e| e.to_string())?;
    r.expect(got == "echo hello\n", &format!("the client got {got:?}"))?;
    let code = r.finish()?;
    r.expect(code == 0, &format!("exit status {code}"))
}

/// The same in a tokio process.
#[cfg(feature = "tokio")]
fn test_handler_listener_tokio() -> Result<(), String> {
    handler_listener(&["--tokio"])
}

/// The listener scenario through `Privsep::run_async` in a runtime the
/// application built: every process runs the tokio loop in it.
#[cfg(feature = "tokio")]
fn test_run_async_in_app_runtime() -> Result<(), String> {
    handler_listener(&["--async"])?;
    handler_timers(&["--async"])
}

/// Handler timers in a tokio process.
#[cfg(feature = "tokio")]
fn test_handler_timers_tokio() -> Result<(), String> {
    handler_timers(&["--tokio"])
}

/// A handler watches its listener while its process has no descriptor slot free:
/// the process keeps running (the tokio loop needs a slot to register the watch,
/// and waits for one), and once its limit is raised from outside, a client that
/// connects is served.
fn test_listener_at_limit() -> Result<(), String> {
    listener_at_limit(&[])
}

fn listener_at_limit(extra: &[&str]) -> Result<(), String> {
    use rustix::process::{getrlimit, prlimit, Pid, Resource};
    let mut r = Run::start("listen_tight", extra);
    let child = pids(&r.line("PIDS")?)["1.0"];
    let port: u16 = r.line("PORT ")?[5..].parse().map_err(|e| format!("{e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    let state = state.rfind(')').and_then(|i| state.get(i + 2..i + 3));
    r.expect(
        matches!(state, Some("S" | "R")),
        &format!("the child at its limit is gone (state {state:?})"),
    )?;
    let pid = Pid::from_raw(child as i32).ok_or("bad pid")?;
    prlimit(Some(pid), Resource::Nofile, getrlimit(Resource::Nofile))
        .map_err(|e| format!("prlimit: {e}\n{}", r.dump()))?;
    echo_client(r, port)
}

/// The same in a tokio process.
#[cfg(feature = "tokio")]
fn test_listener_at_limit_tokio() -> Result<(), String> {
    listener_at_limit(&["--tokio"])
}

/// CPU time (user + system, clock ticks) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    // Fields 14 and 15 of stat(5) (utime, stime); `rest` starts at field 3.
    let f: Vec<u64> = rest.split(' ').map(|w| w.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// A child left with one free descriptor slot is sent a descriptor: while imsg-io's
/// guard refuses to read, the child sleeps (under 5 % of a CPU over 2 s, measured
/// from /proc), and once its limit is raised from outside it takes the message
/// within a second, without the sender sending again.
fn test_fdlimit() -> Result<(), String> {
    fdlimit(&[])
}

fn fdlimit(extra: &[&str]) -> Result<(), String> {
    use rustix::process::{getrlimit, prlimit, Pid, Resource};
    let mut r = Run::start("fdlimit", extra);
    let child = pids(&r.line("PIDS")?)["1.0"];
    r.line("SENT")?;
    // Let the frame arrive and the child's loop meet the guard.
    std::thread::sleep(Duration::from_millis(200));
    let hz = rustix::param::clock_ticks_per_second();
    let window = Duration::from_secs(2);
    let before = cpu_ticks(child);
    std::thread::sleep(window);
    let used = cpu_ticks(child) - before;
    let share = used as f64 / (hz as f64 * window.as_secs_f64());
    println!("    blocked child used {:.1} % of a CPU", share * 100.0);
    r.expect(
        r.lines.try_iter().all(|l| l != "GOT"),
        "the descriptor arrived although the guard should have refused it",
    )?;
    r.expect(
        share < 0.05,
        &format!("the blocked child used {:.0} % of a CPU", share * 100.0),
    )?;
    let pid = Pid::from_raw(child as i32).ok_or("bad pid")?;
    prlimit(Some(pid), Resource::Nofile, getrlimit(Resource::Nofile))
        .map_err(|e| format!("prlimit: {e}\n{}", r.dump()))?;
    let raised = Instant::now();
    r.line("GOT")?;
    let late = raised.elapsed();
    println!(
        "    message taken {} ms after the limit was raised",
        late.as_millis()
    );
    r.expect(
        late < Duration::from_secs(1),
        &format!("message taken {} ms after the limit rose", late.as_millis()),
    )?;
    let code = r.finish()?;
    r.expect(code == 0, &format!("exit status {code}"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// The descriptor-limit scenario with every process in a tokio runtime.
#[cfg(feature = "tokio")]
fn test_fdlimit_tokio() -> Result<(), String> {
    fdlimit(&["--tokio"])
}

/// 4 process types × 8 instances: comes up, answers a broadcast; timing printed.
fn test_large() -> Result<(), String> {
    let mut r = Run::start("large", &[]);
    let code = r.finish()?;
    r.checks(&["large_broadcast_once_each"])?;
    for l in r.stdout.iter().filter(|l| l.starts_with("INFO ")) {
        println!("    {l}");
    }
    r.expect(code == 0, &format!("exit status {code}"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// Processes run in tokio runtimes: same mesh, tasks send through the outbox.
#[cfg(feature = "tokio")]
fn test_tokio() -> Result<(), String> {
    let mut r = Run::start("tokio", &[]);
    let code = r.finish()?;
    r.checks(&[
        "peers_match_policy",
        "pairs_exactly_once",
        "tokio_tasks_send_through_outbox",
        "tokio_dispatch",
    ])?;
    r.expect(code == 0, &format!("exit status {code}"))?;
    let hooks = r.stdout.iter().filter(|l| l.starts_with("HOOK ")).count();
    r.expect(hooks == 4, &format!("{hooks} shutdown hooks ran, want 4"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// A handler of a tokio process makes a sleep and an interval (the runtime has
/// timers), and a task waits on both.
#[cfg(feature = "tokio")]
fn test_tokio_timers() -> Result<(), String> {
    let mut r = Run::start("timers", &[]);
    let code = r.finish()?;
    r.checks(&["tokio_sleep_and_interval"])?;
    r.expect(code == 0, &format!("exit status {code}"))?;
    r.expect(
        r.stdout.contains(&"LEFTOVER 0".into()),
        "children left unreaped",
    )
}

/// A table with only the parent, in tokio: `ready` runs inside the runtime.
#[cfg(feature = "tokio")]
fn test_tokio_alone() -> Result<(), String> {
    let mut r = Run::start("alone", &[]);
    let code = r.finish()?;
    r.checks(&["ready_in_runtime"])?;
    r.expect(r.stdout.contains(&"SLEPT".into()), "the task never slept")?;
    r.expect(code == 0, &format!("exit status {code}"))
}

/// The SIGKILL scenario with every process in a tokio runtime.
#[cfg(feature = "tokio")]
fn test_kill_tokio() -> Result<(), String> {
    kill(&["--tokio"])
}

/// The signals scenario with every process in a tokio runtime.
#[cfg(feature = "tokio")]
fn test_signals_tokio() -> Result<(), String> {
    signals(&["--tokio"])
}

/// Check mode starts nothing.
fn test_no_action() -> Result<(), String> {
    let mut r = Run::start("mesh", &["--no-action"]);
    let code = r.finish()?;
    r.expect(code == 0, &format!("exit status {code}"))?;
    r.expect(
        r.stderr().contains("configuration OK"),
        "no 'configuration OK'",
    )?;
    r.expect(
        !r.stdout.iter().any(|l| l == "READY"),
        "the mesh was started",
    )
}

type TestFn = fn() -> Result<(), String>;

fn driver() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: &[(&str, TestFn)] = &[
        ("mesh", test_mesh),
        ("mesh_everyone", test_mesh_everyone),
        ("privdrop", test_privdrop),
        ("privdrop_unprivileged", test_privdrop_unprivileged),
        ("privdrop_failure", test_privdrop_failure),
        ("privdrop_unsafe_chroot", test_privdrop_unsafe_chroot),
        ("kill", test_kill),
        ("protocol_error", test_protocol_error),
        ("signals", test_signals),
        ("large", test_large),
        ("fdlimit", test_fdlimit),
        ("handler_timers", test_handler_timers),
        ("handler_listener", test_handler_listener),
        ("listener_at_limit", test_listener_at_limit),
        #[cfg(feature = "tokio")]
        ("listener_at_limit_tokio", test_listener_at_limit_tokio),
        #[cfg(feature = "tokio")]
        ("run_async", test_run_async_in_app_runtime),
        #[cfg(feature = "tokio")]
        ("handler_listener_tokio", test_handler_listener_tokio),
        #[cfg(feature = "tokio")]
        ("handler_timers_tokio", test_handler_timers_tokio),
        ("no_action", test_no_action),
        #[cfg(feature = "tokio")]
        ("tokio", test_tokio),
        #[cfg(feature = "tokio")]
        ("kill_tokio", test_kill_tokio),
        #[cfg(feature = "tokio")]
        ("signals_tokio", test_signals_tokio),
        #[cfg(feature = "tokio")]
        ("fdlimit_tokio", test_fdlimit_tokio),
        #[cfg(feature = "tokio")]
        ("tokio_timers", test_tokio_timers),
        #[cfg(feature = "tokio")]
        ("tokio_alone", test_tokio_alone),
    ];
    let mut failed = 0;
    let mut ran = 0;
    for &(name, f) in tests {
        if !filters.is_empty() && !filters.iter().any(|x| name.contains(x.as_str())) {
            continue;
        }
        ran += 1;
        let t = Instant::now();
        match f() {
            Ok(()) => println!("test {name} ... ok ({} ms)", t.elapsed().as_millis()),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n{e}");
            }
        }
    }
    println!("\nmesh tests: {} passed; {failed} failed", ran - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    START.get_or_init(Instant::now);
    let inv = args::from_env();
    let app = args::app_args();
    match parse_opts(&app) {
        Some(o) => {
            stderr_log::init(log::LevelFilter::Info);
            daemon(o, matches!(inv, Ok(Invocation::Parent { .. })))
        }
        None => driver(),
    }
}
