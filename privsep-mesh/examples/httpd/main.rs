//! A privilege-separated web server shaped like OpenBSD's httpd: a parent, a
//! `control` process, a `logger` and `server` × N (prefork).
//!
//! ```text
//! httpd [-dnv] [-l ADDR:PORT] [-s SOCKET] [-S SOCKET]... [-L ACCESS_LOG]
//!       [-f SETTINGS] [--servers N] [--chroot DIR] [--no-access-log]
//! ```
//!
//! - The parent binds the listening TCP socket and opens the access log before
//!   anything drops privileges, then passes each descriptor over imsg: the listener
//!   to every server instance (all accept on it), the access log to the logger.
//! - The control process is the table's control kind: it creates the control
//!   sockets itself before its chroot and privilege drop (proc.c's `control_init`)
//!   and listens after (`control_listen`); a `ControlServer` serves the clients.
//! - No process uses tokio: servers and control watch their own descriptors and
//!   timers on the mesh's event loop, as proc.c daemons do with libevent.
//! - Servers parse requests with httparse: `GET /` answers 200 naming the instance,
//!   other paths 404, bad requests 400; keep-alive works. Each request sends one
//!   access-log line to the logger, which writes it to the file the parent opened.
//! - `httpctl -s SOCKET show procs|show stats|log verbose|log brief|log reopen|
//!   reload|stop` drives it; a restricted socket (`-S`) allows only the `show`
//!   commands. SIGHUP reloads; SIGTERM/SIGINT stop in the same order as `stop`
//!   (servers stop answering, the logger writes and syncs every line, then exit).
//! - `-d` stays in the foreground and logs to stderr; otherwise the daemon detaches
//!   and logs to syslog.
//!
//! Without `-d`, `-l`, `-s`, `-S` or `-L` it runs a self-driving demo instead: it
//! listens on an ephemeral loopback port with a control socket and access log in a
//! temporary directory, a client thread in the parent sends a burst of HTTP requests
//! and control commands, prints what it saw, stops the daemon and it exits 0.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use privsep_mesh::args::{self, Invocation};
use privsep_mesh::control_server::{ControlServer, ControlSettings, Decision, Route};
use privsep_mesh::control_socket::{self, Access};
use privsep_mesh::{
    control, daemon, privdrop, stderr_log, syslog_log, AppError, Context, Handled, Handler,
    Privsep, ProcId, ProcSpec, ProcTable, Ready, Received, Signal, Target, Timer, Watch, NO_PEERID,
};

#[allow(dead_code)]
mod proto;

const CONTROL: ProcId = ProcId(1);
const LOGGER: ProcId = ProcId(2);
const SERVER: ProcId = ProcId(3);

// Messages inside the mesh (the control protocol's types are in `proto`).
const REPORT: u32 = 1; // child → parent at start: "pid uid gid"
const LISTEN: u32 = 2; // parent → every server, with the listening TCP socket
const LOG_FD: u32 = 3; // parent → logger, with the access log (peer id: client to answer)
const ACCESS: u32 = 5; // server → logger: one access-log line
const SETTINGS: u32 = 6; // parent → every server: generation u32, then the greeting
const STATS: u32 = 7; // server/logger → control: "name count"
const QUIESCE: u32 = 8; // parent → every server: stop answering (peer id: client)
const QUIESCED: u32 = 9; // server → logger, after its last access line
const DRAINED: u32 = 10; // logger → parent: every server's last line is written

/// Longest request head a server accepts.
const MAX_HEAD: usize = 8192;
/// How long an orderly stop waits for the logger's last lines.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a child waits, after SIGTERM or SIGINT, for the parent to stop the mesh
/// before it leaves by itself.
const CHILD_GRACE: Duration = Duration::from_secs(5);
/// A keep-alive connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(30);

struct Options {
    debug: bool,
    listen: Option<SocketAddr>,
    csock: Option<PathBuf>,
    /// The demo's directory (control socket, access log): the demo's parent makes
    /// it and passes it to its children as `--demo-dir`.
    demo_dir: Option<PathBuf>,
    rsocks: Vec<PathBuf>,
    access_log: Option<PathBuf>,
    config: Option<PathBuf>,
    servers: u32,
    chroot: PathBuf,
    no_action: bool,
    verbose: bool,
    access_logging: bool,
}

impl Options {
    /// The main control socket.
    fn csock_path(&self) -> PathBuf {
        match (&self.csock, &self.demo_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join("httpd.sock"),
            (None, None) => PathBuf::from("/run/privsep-httpd.sock"),
        }
    }

    fn access_log_path(&self) -> PathBuf {
        match (&self.access_log, &self.demo_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join("access.log"),
            (None, None) => PathBuf::from("/var/log/privsep-httpd-access.log"),
        }
    }

    fn demo(&self) -> bool {
        self.demo_dir.is_some()
            || !self.debug
                && self.listen.is_none()
                && self.csock.is_none()
                && self.rsocks.is_empty()
                && self.access_log.is_none()
    }
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        debug: false,
        listen: None,
        csock: None,
        demo_dir: None,
        rsocks: Vec::new(),
        access_log: None,
        config: None,
        servers: 3,
        chroot: default_chroot(),
        no_action: false,
        verbose: false,
        access_logging: true,
    };
    let args = args::app_args();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    let abs = |p: String| std::path::absolute(&p).map_err(|e| format!("{p}: {e}"));
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "-d" => o.debug = true,
            "-l" => {
                let v = value("ADDR:PORT")?;
                o.listen = Some(v.parse().map_err(|e| format!("-l {v}: {e}"))?);
            }
            "-s" => o.csock = Some(abs(value("a socket path")?)?),
            "--demo-dir" => o.demo_dir = Some(abs(value("a directory")?)?),
            "-S" => o.rsocks.push(abs(value("a socket path")?)?),
            "-L" => o.access_log = Some(abs(value("a file path")?)?),
            "-f" => o.config = Some(abs(value("a file path")?)?),
            "--servers" => {
                o.servers = value("a number")?
                    .parse()
                    .map_err(|_| "--servers needs a number")?
            }
            "--chroot" => o.chroot = abs(value("a directory")?)?,
            "--no-access-log" => o.access_logging = false,
            "-n" => o.no_action = true,
            "-v" => o.verbose = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn default_chroot() -> PathBuf {
    let var_empty = PathBuf::from("/var/empty");
    if var_empty.is_dir() {
        var_empty
    } else {
        // Not under /tmp: the library refuses a root with a component others
        // can write to.
        PathBuf::from("/run/privsep-mesh-empty")
    }
}

/// As root, makes sure the chroot directory exists, is owned by root and is not
/// writable by anyone else (so that `nobody` cannot plant files in its own root).
fn prepare_chroot(dir: &Path) -> Result<(), String> {
    if !privdrop::is_root() {
        return Ok(());
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !md.is_dir() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a directory owned by root and writable only by root",
            dir.display()
        ));
    }
    Ok(())
}

/// What the parent sets up before anything drops privileges.
struct Resources {
    listener: TcpListener,
    access_log: PathBuf,
    config: Option<PathBuf>,
}

/// The settings file (`-f`): its first line is the greeting servers answer with.
fn read_greeting(config: Option<&Path>) -> Result<String, String> {
    match config {
        None => Ok("hello".to_owned()),
        Some(p) => std::fs::read_to_string(p)
            .map(|t| t.lines().next().unwrap_or("").trim().to_owned())
            .map_err(|e| format!("{}: {e}", p.display())),
    }
}

fn open_access_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// The listener and the access log; a check that no other daemon serves the control
/// sockets (bgpd's `control_check`, before detaching: the control process creates
/// them, proc.c's `control_init`).
fn resources(o: &Options) -> Result<Resources, String> {
    let listen = o.listen.unwrap_or_else(|| {
        if o.demo_dir.is_some() {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:8080"
        }
        .parse()
        .expect("literal address")
    });
    let listener = TcpListener::bind(listen).map_err(|e| format!("listen on {listen}: {e}"))?;
    for p in std::iter::once(&o.csock_path()).chain(&o.rsocks) {
        control_socket::check_free(p).map_err(|e| e.to_string())?;
    }
    let access_log = o.access_log_path();
    open_access_log(&access_log).map_err(|e| format!("{}: {e}", access_log.display()))?;
    read_greeting(o.config.as_deref())?;
    Ok(Resources {
        listener,
        access_log,
        config: o.config.clone(),
    })
}

fn table(o: &Options) -> ProcTable {
    ProcTable::new("httpd")
        .with_proc(ProcSpec::new(ProcId::PARENT, "parent").with_signals(&[
            Signal::Hup,
            Signal::Term,
            Signal::Int,
        ]))
        .with_proc(
            o.rsocks
                .iter()
                .fold(
                    ProcSpec::new(CONTROL, "control")
                        .with_control_socket(o.csock_path(), Access::Main),
                    |spec, r| spec.with_control_socket(r, Access::Restricted),
                )
                .with_user("nobody")
                .with_signals(&[Signal::Term, Signal::Int])
                .with_chroot(&o.chroot),
        )
        .with_proc(
            ProcSpec::new(LOGGER, "logger")
                .with_user("nobody")
                .with_signals(&[Signal::Term, Signal::Int])
                .with_chroot(&o.chroot),
        )
        .with_proc(
            ProcSpec::new(SERVER, "server")
                .with_instances(o.servers)
                .with_user("nobody")
                .with_signals(&[Signal::Term, Signal::Int])
                .with_chroot(&o.chroot),
        )
}

/// The daemon: the table and each process kind's handler.
fn privsep(o: &Options, res: Option<Resources>) -> Privsep {
    let mut res = res;
    let access_logging = o.access_logging;
    Privsep::new(table(o))
        .with_start(ProcId::PARENT, move |_| Parent::new(res.take()))
        .with_start(CONTROL, |_| Ok(Control::new()))
        .with_start(LOGGER, |_| Ok(Logger::default()))
        .with_start(SERVER, move |me| {
            Ok(Server::new(me.peer.instance, access_logging))
        })
}

static DEMO_FAILED: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let mut o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("httpd: {e}");
            return ExitCode::from(2);
        }
    };
    let level = if o.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    // log.c's log_init: stderr in the foreground, syslog otherwise; connected here,
    // before any chroot.
    if o.debug || o.demo() || o.no_action {
        stderr_log::init(level);
    } else if let Err(e) = syslog_log::init(
        Path::new(syslog_log::DEV_LOG),
        "httpd",
        syslog_log::LOG_DAEMON,
        level,
    ) {
        eprintln!(
            "httpd: syslog at {}: {e} (use -d to log to stderr)",
            syslog_log::DEV_LOG
        );
        return ExitCode::FAILURE;
    }
    let parent = matches!(args::from_env(), Ok(Invocation::Parent { .. }));
    if !parent || o.no_action {
        return privsep(&o, None).with_no_action(o.no_action).run();
    }
    if let Err(e) = prepare_chroot(&o.chroot) {
        log::error!("{e}");
        return ExitCode::FAILURE;
    }
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if o.demo() {
        let d = std::env::temp_dir().join(format!("privsep-httpd-demo-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&d) {
            log::error!("{}: {e}", d.display());
            return ExitCode::FAILURE;
        }
        // The children build the same table: the control process needs the path.
        argv.extend(["--demo-dir".into(), d.clone().into_os_string()]);
        o.demo_dir = Some(d);
    }
    let res = match resources(&o) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if !o.debug && o.demo_dir.is_none() {
        if let Err(e) = daemon::daemonize() {
            log::error!("daemon: {e}");
            return ExitCode::FAILURE;
        }
    }
    let demo = o.demo_dir.as_ref().map(|d| {
        let port = res.listener.local_addr().map_or(0, |a| a.port());
        let csock = o.csock_path();
        let log_path = res.access_log.clone();
        let servers = o.servers;
        let logging = o.access_logging;
        let dir = d.clone();
        (
            dir,
            std::thread::spawn(move || demo_client(port, &csock, &log_path, servers, logging)),
        )
    });
    let code = match privsep(&o, Some(res)).run_with(&argv) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("httpd: {e}");
            ExitCode::FAILURE
        }
    };
    match demo {
        None => code,
        Some((dir, client)) => {
            let ok = client.join().unwrap_or(false) && !DEMO_FAILED.load(Ordering::SeqCst);
            let _ = std::fs::remove_dir_all(&dir);
            if ok && code == ExitCode::SUCCESS {
                println!("demo: done, every process has exited");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

// ---------------------------------------------------------------- parent

struct Parent {
    res: Resources,
    reports: BTreeMap<(u32, u32), String>,
    generation: u32,
    greeting: String,
    /// Set once an orderly stop began: the timer that ends it if the logger never
    /// confirms.
    stopping: Option<Timer>,
}

impl Parent {
    fn new(res: Option<Resources>) -> Result<Parent, AppError> {
        Ok(Parent {
            res: res.ok_or("the parent started without its sockets")?,
            reports: BTreeMap::new(),
            generation: 0,
            greeting: String::new(),
            stopping: None,
        })
    }

    /// Re-reads the settings file and broadcasts the settings as a new generation.
    /// A file that cannot be read leaves the running settings as they are.
    fn reload(&mut self, ctx: &mut Context<'_>) -> Result<Result<(), String>, AppError> {
        let greeting = match read_greeting(self.res.config.as_deref()) {
            Ok(g) => g,
            Err(why) => {
                log::warn!("reload: {why}; keeping generation {}", self.generation);
                return Ok(Err(why));
            }
        };
        self.generation += 1;
        self.greeting = greeting;
        log::info!(
            "settings generation {}: greeting {:?}",
            self.generation,
            self.greeting
        );
        ctx.composev(
            SERVER,
            Target::All,
            SETTINGS,
            NO_PEERID,
            &[&self.generation.to_ne_bytes(), self.greeting.as_bytes()],
        )?;
        Ok(Ok(()))
    }

    /// The orderly stop (`httpctl stop`, SIGTERM, SIGINT): servers stop answering
    /// and mark the end of their access lines to the logger; when it has written and
    /// synced them all (`DRAINED`), the mesh stops: nothing lost. `client` (or
    /// [`NO_PEERID`]) is told when it is done. If the logger does not confirm within
    /// [`STOP_GRACE`], the mesh stops anyway.
    fn stop(&mut self, ctx: &mut Context<'_>, client: u32) -> Result<(), AppError> {
        if self.stopping.is_some() {
            return Ok(());
        }
        self.stopping = Some(ctx.timer_after(STOP_GRACE));
        ctx.compose(SERVER, Target::All, QUIESCE, client, b"")?;
        Ok(())
    }

    fn procs(&self, ctx: &Context<'_>) -> Vec<String> {
        let mut rows = vec![format!(
            "{:<8} {:>3} {:>7} {:>6} {:>6}",
            "title", "#", "pid", "uid", "gid"
        )];
        let me = self_report();
        rows.push(row("parent", 0, &me));
        // Every child, also one whose report has not arrived yet (uid, gid "-").
        for peer in ctx.peers() {
            let report = match self.reports.get(&(peer.proc.0, peer.instance)) {
                Some(r) => r.clone(),
                None => format!("{} - -", ctx.child_pid(peer).unwrap_or(0)),
            };
            let title = ctx.title_of(peer.proc).unwrap_or("?");
            rows.push(row(title, peer.instance, &report));
        }
        rows
    }

    fn command(&mut self, ctx: &mut Context<'_>, ty: u32, client: u32) -> Result<(), AppError> {
        let reply = |ctx: &mut Context<'_>, ty: u32, text: &str| {
            ctx.compose(CONTROL, Target::All, ty, client, text.as_bytes())
        };
        match ty {
            proto::SHOW_PROCS => {
                for r in self.procs(ctx) {
                    reply(ctx, proto::ROW, &r)?;
                }
                reply(ctx, proto::END, "")?;
            }
            proto::LOG_VERBOSE | proto::LOG_BRIEF => {
                let v = i32::from(ty == proto::LOG_VERBOSE);
                log::set_max_level(control::level_for_verbose(v));
                for id in [CONTROL, LOGGER, SERVER] {
                    ctx.set_verbose(id, Target::All, v)?;
                }
                log::info!("log level {}", if v == 1 { "verbose" } else { "brief" });
                reply(ctx, proto::END, "")?;
            }
            proto::LOG_REOPEN => match open_access_log(&self.res.access_log) {
                // The logger answers the client once it writes to the new file.
                Ok(f) => {
                    log::info!("reopening {}", self.res.access_log.display());
                    ctx.compose_fd(LOGGER, Target::All, LOG_FD, client, f.into(), b"")?;
                }
                Err(e) => {
                    let why = format!("{}: {e}", self.res.access_log.display());
                    log::warn!("log reopen: {why}");
                    reply(ctx, proto::FAILED, &why)?;
                }
            },
            proto::RELOAD => {
                match self.reload(ctx)? {
                    Ok(()) => reply(ctx, proto::END, "")?,
                    Err(why) => reply(ctx, proto::FAILED, &why)?,
                };
            }
            // Servers stop answering and mark the end of their access lines to the
            // logger; when it has written them all, the mesh stops: nothing lost.
            proto::STOP => {
                log::info!("stop requested by control client {client}");
                self.stop(ctx, client)?;
            }
            _ => return Err(format!("control request {ty} routed to the parent").into()),
        }
        Ok(())
    }
}

fn row(title: &str, instance: u32, report: &str) -> String {
    let f: Vec<&str> = report.split(' ').collect();
    match f[..] {
        [pid, uid, gid] => format!("{title:<8} {instance:>3} {pid:>7} {uid:>6} {gid:>6}"),
        _ => format!("{title:<8} {instance:>3} ?"),
    }
}

/// "pid uid gid" of the calling process (effective ids).
fn self_report() -> String {
    format!(
        "{} {} {}",
        std::process::id(),
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw()
    )
}

impl Handler for Parent {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let addr = self.res.listener.local_addr()?;
        log::info!("listening on {addr}, {} servers", ctx.instances(SERVER));
        if let Err(why) = self.reload(ctx)? {
            return Err(why.into());
        }
        let l: OwnedFd = self.res.listener.try_clone()?.into();
        ctx.compose_fd(SERVER, Target::All, LISTEN, NO_PEERID, l, b"")?;
        let f = open_access_log(&self.res.access_log)?;
        ctx.compose_fd(LOGGER, Target::All, LOG_FD, NO_PEERID, f.into(), b"")?;
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            REPORT => {
                let from = msg.from();
                self.reports.insert(
                    (from.proc.0, from.instance),
                    String::from_utf8_lossy(msg.payload()).into_owned(),
                );
            }
            ty if (proto::SHOW_PROCS..=proto::STOP).contains(&ty) && msg.from().proc == CONTROL => {
                self.command(ctx, ty, msg.peerid())?
            }
            DRAINED => {
                log::info!("every access line is written: stopping");
                if msg.peerid() != NO_PEERID {
                    ctx.compose(CONTROL, Target::All, proto::END, msg.peerid(), b"")?;
                    ctx.flush(CONTROL, Target::All)?;
                }
                ctx.shutdown();
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }

    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        match signal {
            Signal::Hup => {
                let _ = self.reload(ctx)?;
            }
            // A second one while draining: stop at once.
            _ if self.stopping.is_some() => {
                log::info!("received {signal} again: stopping now");
                ctx.shutdown();
            }
            _ => {
                log::info!("received {signal}: stopping");
                self.stop(ctx, NO_PEERID)?;
            }
        }
        Ok(())
    }

    fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), AppError> {
        if self.stopping == Some(timer) {
            log::warn!(
                "the logger did not confirm the last access lines within {STOP_GRACE:?}: stopping"
            );
            ctx.shutdown();
        }
        Ok(())
    }

    fn shutdown(&mut self, _ctx: &mut Context<'_>) {
        log::info!("shutting the mesh down");
    }
}

/// SIGTERM or SIGINT in a child (Ctrl-C reaches the whole foreground group): the
/// parent stops the mesh in order, so the child waits for that, and leaves by itself
/// only if nothing happens within [`CHILD_GRACE`] (the signal was for it alone).
fn child_signal(ctx: &mut Context<'_>, leaving: &mut Option<Timer>, signal: Signal) {
    if leaving.is_none() {
        log::debug!("received {signal}: the parent stops the mesh");
        *leaving = Some(ctx.timer_after(CHILD_GRACE));
    }
}

/// The [`child_signal`] timer: nobody stopped the mesh, leave.
fn child_timer(ctx: &mut Context<'_>, leaving: Option<Timer>, timer: Timer) {
    if leaving == Some(timer) {
        log::info!("stopping on the signal received {CHILD_GRACE:?} ago");
        ctx.shutdown();
    }
}

/// Every child says who it runs as, once privileges are dropped.
fn report(ctx: &mut Context<'_>) -> Result<(), AppError> {
    ctx.compose(
        ProcId::PARENT,
        Target::All,
        REPORT,
        NO_PEERID,
        self_report().as_bytes(),
    )?;
    Ok(())
}

// ---------------------------------------------------------------- control

/// Replies collected for one `show stats` request.
#[derive(Default)]
struct StatsReply {
    rows: Vec<(String, u64)>,
}

/// The control process: its sockets are created by the framework (the table marks
/// it with `control_socket`), its clients served by a `ControlServer` on this
/// process's own event loop.
struct Control {
    leaving: Option<Timer>,
    server: ControlServer,
    stats: HashMap<u32, StatsReply>,
}

impl Control {
    fn new() -> Control {
        let mut settings = ControlSettings::default();
        settings.unprivileged = proto::UNPRIVILEGED.to_vec();
        Control {
            leaving: None,
            server: ControlServer::new(settings, route()),
            stats: HashMap::new(),
        }
    }
}

fn route() -> Route {
    Box::new(|req| match req.ty {
        proto::SHOW_STATS => Decision::Forward(LOGGER, Target::All),
        proto::SHOW_PROCS..=proto::STOP => Decision::Forward(ProcId::PARENT, Target::All),
        other => Decision::Refuse(format!("unknown request {other}")),
    })
}

impl Handler for Control {
    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        child_signal(ctx, &mut self.leaving, signal);
        Ok(())
    }

    fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), AppError> {
        if !self.server.timer(ctx, timer) {
            child_timer(ctx, self.leaving, timer);
        }
        Ok(())
    }

    fn io(&mut self, ctx: &mut Context<'_>, watch: Watch, ready: Ready) -> Result<(), AppError> {
        self.server.io(ctx, watch, ready);
        Ok(())
    }

    /// Accepting starts once the whole mesh is connected: a request forwarded
    /// earlier could find no channel to its process.
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        self.server.start(ctx)?;
        report(ctx)
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        let server = &mut self.server;
        match msg.msg_type() {
            proto::ROW | proto::END | proto::FAILED => {
                server.reply(ctx, msg.peerid(), msg.msg_type(), msg.payload());
            }
            STATS => {
                let client = msg.peerid();
                let text = String::from_utf8_lossy(msg.payload()).into_owned();
                let (name, count) = text.rsplit_once(' ').ok_or("malformed STATS")?;
                let count: u64 = count.parse()?;
                let entry = self.stats.entry(client).or_default();
                entry.rows.push((name.to_owned(), count));
                if entry.rows.len() as u32 == ctx.instances(SERVER) + 1 {
                    let mut done = self.stats.remove(&client).unwrap_or_default().rows;
                    done.sort();
                    let mut total = 0;
                    let mut lines = 0;
                    for (name, count) in &done {
                        if name == "logger" {
                            lines = *count;
                        } else {
                            total += count;
                            server.reply(
                                ctx,
                                client,
                                proto::ROW,
                                format!("{name} requests {count}").as_bytes(),
                            );
                        }
                    }
                    server.reply(
                        ctx,
                        client,
                        proto::ROW,
                        format!("total requests {total}").as_bytes(),
                    );
                    server.reply(
                        ctx,
                        client,
                        proto::ROW,
                        format!("access log lines {lines}").as_bytes(),
                    );
                    server.reply(ctx, client, proto::END, b"");
                }
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }
}

// ---------------------------------------------------------------- logger

#[derive(Default)]
struct Logger {
    leaving: Option<Timer>,
    file: Option<File>,
    /// Lines that arrived before the first descriptor.
    pending: Vec<u8>,
    lines: u64,
    /// Servers that sent their last line (`QUIESCED`).
    quiesced: u32,
}

impl Handler for Logger {
    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        child_signal(ctx, &mut self.leaving, signal);
        Ok(())
    }

    fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), AppError> {
        child_timer(ctx, self.leaving, timer);
        Ok(())
    }

    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        report(ctx)
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            ACCESS => {
                let mut line = Vec::with_capacity(msg.payload().len() + 1);
                line.extend_from_slice(msg.payload());
                line.push(b'\n');
                match &mut self.file {
                    Some(f) => f.write_all(&line)?,
                    None => self.pending.extend_from_slice(&line),
                }
                self.lines += 1;
            }
            LOG_FD => {
                let mut f = File::from(msg.take_fd().ok_or("LOG_FD without a descriptor")?);
                f.write_all(&std::mem::take(&mut self.pending))?;
                self.file = Some(f);
                if msg.peerid() != NO_PEERID {
                    log::info!("access log reopened");
                    ctx.compose(CONTROL, Target::All, proto::END, msg.peerid(), b"")?;
                }
            }
            QUIESCED => {
                self.quiesced += 1;
                if self.quiesced == ctx.instances(SERVER) {
                    if let Some(f) = &self.file {
                        f.sync_data()?;
                    }
                    ctx.compose(ProcId::PARENT, Target::All, DRAINED, msg.peerid(), b"")?;
                }
            }
            proto::SHOW_STATS => {
                let s = format!("logger {}", self.lines);
                ctx.compose(CONTROL, Target::All, STATS, msg.peerid(), s.as_bytes())?;
                ctx.forward(msg, SERVER, Target::All)?;
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }
}

// ---------------------------------------------------------------- server

/// One server instance (httpd's prefork: every instance accepts on the listener
/// the parent passed). Everything runs on the mesh's own event loop: the listener
/// and each client connection are watched descriptors ([`Context::watch`]), idle
/// connections are closed by a timer, and access lines go to the logger with
/// [`Context::compose`], in order, on the same channel as the `QUIESCED` mark.
struct Server {
    leaving: Option<Timer>,
    instance: u32,
    access_logging: bool,
    requests: u64,
    settings: Settings,
    /// Set by `QUIESCE`: no request is answered from here on.
    stopping: bool,
    listener: Option<Watch>,
    /// Open connections.
    conns: BTreeSet<Watch>,
    /// Closes connections idle for [`IDLE`].
    sweep: Option<Timer>,
    /// Re-arms accepting after `EMFILE` and the like.
    accept_retry: Option<Timer>,
    /// Messages for the logger that its channel refused (queue at its high-water
    /// mark), in order, and the timer that offers them again. While any wait, the
    /// server reads no request and accepts no connection: back-pressure instead of
    /// lines piling up. Bounded by one read per connection.
    backlog: VecDeque<(u32, u32, Vec<u8>)>,
    backlog_retry: Option<Timer>,
}

/// What the parent's `SETTINGS` says.
struct Settings {
    generation: u32,
    greeting: String,
}

/// A client connection: the watched object.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Received, not yet answered.
    buf: Vec<u8>,
    /// Answers the socket has not taken yet; nothing more is read meanwhile.
    out: Vec<u8>,
    /// Close once `out` is written (`Connection: close`, a bad request).
    close_after_write: bool,
    last_active: Instant,
}

impl std::os::fd::AsFd for Conn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Connections accepted per readiness event.
const ACCEPT_BATCH: usize = 32;
/// How soon a server offers the logger's channel its waiting messages again.
const BACKLOG_RETRY: Duration = Duration::from_millis(5);

impl Server {
    fn new(instance: u32, access_logging: bool) -> Server {
        Server {
            leaving: None,
            instance,
            access_logging,
            requests: 0,
            settings: Settings {
                generation: 0,
                greeting: "hello".to_owned(),
            },
            stopping: false,
            listener: None,
            conns: BTreeSet::new(),
            sweep: None,
            accept_retry: None,
            backlog: VecDeque::new(),
            backlog_retry: None,
        }
    }

    /// Whether reading and accepting are paused until the logger catches up.
    fn paused(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Sends a message to the logger after the ones still waiting; one its channel
    /// refuses (full) waits too, and the server pauses. Other errors end the process.
    fn send_to_logger(
        &mut self,
        ctx: &mut Context<'_>,
        ty: u32,
        peerid: u32,
        payload: Vec<u8>,
    ) -> Result<(), AppError> {
        let was_paused = self.paused();
        self.backlog.push_back((ty, peerid, payload));
        self.offer_backlog(ctx)?;
        if !was_paused && self.paused() {
            log::debug!("the logger is behind: reading paused");
            self.set_paused(ctx, true);
        }
        Ok(())
    }

    /// Offers the waiting messages to the logger's channel, in order, until it
    /// refuses one; re-arms the retry timer while some wait.
    fn offer_backlog(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        while let Some((ty, peerid, payload)) = self.backlog.front() {
            match ctx.compose(LOGGER, Target::All, *ty, *peerid, payload) {
                Ok(_) => {
                    self.backlog.pop_front();
                }
                Err(e) if e.is_queue_full() => {
                    if self.backlog_retry.is_none() {
                        self.backlog_retry = Some(ctx.timer_after(BACKLOG_RETRY));
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops (or resumes) reading requests and accepting connections; answers
    /// already made are still written.
    fn set_paused(&mut self, ctx: &mut Context<'_>, paused: bool) {
        if let (Some(l), None) = (self.listener, self.accept_retry) {
            let interest = if paused {
                Ready::default()
            } else {
                Ready::READ
            };
            ctx.set_interest(l, interest);
        }
        for &w in &self.conns {
            let Some(c) = ctx.io::<Conn>(w) else {
                continue;
            };
            let interest = match (c.out.is_empty(), paused) {
                (false, _) => Ready::WRITE,
                (true, false) => Ready::READ,
                (true, true) => Ready::default(),
            };
            ctx.set_interest(w, interest);
        }
    }

    fn accept(&mut self, ctx: &mut Context<'_>, lw: Watch) {
        for _ in 0..ACCEPT_BATCH {
            let Some(l) = ctx.io::<TcpListener>(lw) else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let conn = Conn {
                        stream,
                        peer,
                        buf: Vec::with_capacity(1024),
                        out: Vec::new(),
                        close_after_write: false,
                        last_active: Instant::now(),
                    };
                    self.conns.insert(ctx.watch(conn, Ready::READ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: wait for connections to close.
                    log::warn!("accept: {e}");
                    ctx.set_interest(lw, Ready::default());
                    self.accept_retry = Some(ctx.timer_after(Duration::from_millis(100)));
                    return;
                }
            }
        }
    }

    fn close(&mut self, ctx: &mut Context<'_>, w: Watch) {
        self.conns.remove(&w);
        ctx.unwatch(w);
    }

    /// A connection is ready: write what waits, then read and answer every complete
    /// request (pipelining), one access line each.
    fn serve(&mut self, ctx: &mut Context<'_>, w: Watch, ready: Ready) -> Result<(), AppError> {
        let mut lines: Vec<String> = Vec::new();
        let open = {
            let Some(c) = ctx.io::<Conn>(w) else {
                return Ok(());
            };
            c.last_active = Instant::now();
            if ready.readable && c.out.is_empty() && !c.close_after_write {
                self.read_and_answer(c, &mut lines)
            } else {
                true
            }
        };
        for line in lines {
            self.send_to_logger(ctx, ACCESS, NO_PEERID, line.into_bytes())?;
        }
        let Some(c) = ctx.io::<Conn>(w) else {
            return Ok(());
        };
        if !open || !write_out(c) {
            self.close(ctx, w);
            return Ok(());
        }
        let interest = if c.out.is_empty() {
            if c.close_after_write {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
                self.close(ctx, w);
                return Ok(());
            }
            if self.paused() {
                Ready::default()
            } else {
                Ready::READ
            }
        } else {
            Ready::WRITE
        };
        ctx.set_interest(w, interest);
        Ok(())
    }

    /// Reads what the socket has and answers the complete requests into `c.out`;
    /// false when the client has gone (end of file or an error).
    fn read_and_answer(&mut self, c: &mut Conn, lines: &mut Vec<String>) -> bool {
        let mut chunk = [0u8; 16384];
        match c.stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
        while let Some(a) = answer(&c.buf, self.instance, &self.settings) {
            if self.stopping {
                return false;
            }
            c.buf.drain(..a.consumed.min(c.buf.len()));
            let _ = write!(
                c.out,
                "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
                a.status,
                reason(a.status),
                a.body.len(),
                if a.keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                },
                a.body
            );
            self.requests += 1;
            if self.access_logging {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                lines.push(format!(
                    "{} - - [{}] {} {} {} server[{}]",
                    c.peer.ip(),
                    clf_time(now),
                    a.line,
                    a.status,
                    a.body.len(),
                    self.instance
                ));
            }
            if !a.keep_alive {
                c.close_after_write = true;
                break;
            }
        }
        true
    }

    /// Closes connections idle for [`IDLE`].
    fn sweep_idle(&mut self, ctx: &mut Context<'_>) {
        let now = Instant::now();
        let idle: Vec<Watch> = self
            .conns
            .iter()
            .copied()
            .filter(|&w| {
                ctx.io::<Conn>(w)
                    .is_some_and(|c| now.duration_since(c.last_active) >= IDLE)
            })
            .collect();
        for w in idle {
            self.close(ctx, w);
        }
    }
}

/// Writes what `c.out` holds as far as the socket takes it; false on an error.
fn write_out(c: &mut Conn) -> bool {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(0) => return false,
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

impl Handler for Server {
    fn signal(&mut self, ctx: &mut Context<'_>, signal: Signal) -> Result<(), AppError> {
        child_signal(ctx, &mut self.leaving, signal);
        Ok(())
    }

    fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), AppError> {
        if Some(timer) == self.sweep {
            self.sweep_idle(ctx);
        } else if Some(timer) == self.accept_retry {
            self.accept_retry = None;
            if let (Some(l), false) = (self.listener, self.paused()) {
                ctx.set_interest(l, Ready::READ);
            }
        } else if Some(timer) == self.backlog_retry {
            self.backlog_retry = None;
            self.offer_backlog(ctx)?;
            if !self.paused() {
                log::debug!("the logger caught up: reading resumed");
                self.set_paused(ctx, false);
            }
        } else {
            child_timer(ctx, self.leaving, timer);
        }
        Ok(())
    }

    fn io(&mut self, ctx: &mut Context<'_>, watch: Watch, ready: Ready) -> Result<(), AppError> {
        if Some(watch) == self.listener {
            self.accept(ctx, watch);
            Ok(())
        } else {
            self.serve(ctx, watch, ready)
        }
    }

    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        report(ctx)
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            LISTEN => {
                let fd = msg.take_fd().ok_or("LISTEN without a descriptor")?;
                let l = TcpListener::from(fd);
                l.set_nonblocking(true)?;
                self.listener = Some(ctx.watch(l, Ready::READ));
                self.sweep = Some(ctx.timer_every(IDLE / 4));
            }
            QUIESCE => {
                // Every access line so far is queued to the logger; the mark goes
                // after them on the same channel. No request is answered from here
                // on, and no connection accepted.
                self.stopping = true;
                if let Some(l) = self.listener.take() {
                    ctx.unwatch(l);
                }
                let me = self.instance.to_ne_bytes().to_vec();
                self.send_to_logger(ctx, QUIESCED, msg.peerid(), me)?;
            }
            SETTINGS => {
                let mut r = msg.reader();
                let generation = r.get_h32()?;
                let greeting = String::from_utf8_lossy(r.rest()).into_owned();
                log::info!("settings generation {generation}: greeting {greeting:?}");
                self.settings = Settings {
                    generation,
                    greeting,
                };
            }
            proto::SHOW_STATS => {
                let s = format!("server[{}] {}", self.instance, self.requests);
                ctx.compose(CONTROL, Target::All, STATS, msg.peerid(), s.as_bytes())?;
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }
}

/// A parsed request's answer.
struct Answer {
    status: u16,
    body: String,
    keep_alive: bool,
    consumed: usize,
    line: String,
}

fn answer(buf: &[u8], instance: u32, settings: &Settings) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let bad = |consumed| Answer {
        status: 400,
        body: "bad request\n".into(),
        keep_alive: false,
        consumed,
        line: "\"-\"".into(),
    };
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return None,
        Ok(httparse::Status::Partial) | Err(_) => return Some(bad(buf.len())),
    };
    let method = req.method.unwrap_or("-");
    let path = req.path.unwrap_or("-");
    let minor = req.version.unwrap_or(0);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let body_len: usize = match header("content-length").map(|v| v.trim().parse()) {
        None => 0,
        Some(Ok(n)) if n <= MAX_HEAD => n,
        Some(_) => return Some(bad(buf.len())),
    };
    if header("transfer-encoding").is_some() {
        return Some(bad(buf.len()));
    }
    if buf.len() < head + body_len {
        return None;
    }
    let keep_alive = match header("connection").as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => minor == 1,
    };
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/") => (
            200,
            format!(
                "{} from server[{instance}] (generation {})\n",
                settings.greeting, settings.generation
            ),
        ),
        ("GET" | "HEAD", _) => (404, "not found\n".into()),
        _ => (405, "method not allowed\n".into()),
    };
    Some(Answer {
        status,
        body,
        keep_alive,
        consumed: head + body_len,
        line: format!("\"{method} {path} HTTP/1.{minor}\""),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    }
}

// ---------------------------------------------------------------- demo client

/// One HTTP/1.1 GET on a keep-alive connection: (status, body).
fn http_get(s: &mut TcpStream, path: &str, buf: &mut Vec<u8>) -> Result<(u16, String), String> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    http_response(s, buf)
}

fn http_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, String), String> {
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = resp.parse(buf).map_err(|e| e.to_string())? {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .ok_or("response without Content-Length")?;
            if buf.len() >= n + len {
                let status = resp.code.unwrap_or(0);
                let body = String::from_utf8_lossy(&buf[n..n + len]).into_owned();
                buf.drain(..n + len);
                return Ok((status, body));
            }
        }
        let got = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

const DEMO_CONNECTIONS: usize = 4;
const DEMO_REQUESTS: usize = 10;

fn demo_client(port: u16, csock: &Path, access_log: &Path, servers: u32, logging: bool) -> bool {
    let result = demo_run(port, csock, access_log, servers, logging);
    if let Err(e) = &result {
        eprintln!("demo: {e}");
        DEMO_FAILED.store(true, Ordering::SeqCst);
        // Bring the daemon down whatever state it is in.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
    }
    result.is_ok()
}

fn demo_run(
    port: u16,
    csock: &Path,
    access_log: &Path,
    servers: u32,
    logging: bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let ctl = |ty| proto::request(csock, ty, Duration::from_secs(10)).map_err(|e| e.to_string());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    println!(
        "demo: httpd listening on http://{addr}/ with {servers} servers; control socket {}",
        csock.display()
    );
    let mut by_body: BTreeMap<String, u32> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for _ in 0..DEMO_CONNECTIONS {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        for _ in 0..DEMO_REQUESTS {
            let (status, body) = http_get(&mut s, "/", &mut buf)?;
            *statuses.entry(status).or_default() += 1;
            *by_body.entry(body.trim_end().to_owned()).or_default() += 1;
        }
        let (status, _) = http_get(&mut s, "/missing", &mut buf)?;
        *statuses.entry(status).or_default() += 1;
    }
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"NOT HTTP\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let (status, _) = http_response(&mut s, &mut Vec::new())?;
    *statuses.entry(status).or_default() += 1;
    let sent: u32 = statuses.values().sum();
    println!(
        "demo: {sent} requests over {} connections; statuses {statuses:?}",
        DEMO_CONNECTIONS + 1
    );
    for (body, n) in &by_body {
        println!("  {n:>3} x {body:?}");
    }
    println!("demo: httpctl show procs (uid/gid after the privilege drop)");
    for r in ctl(proto::SHOW_PROCS)? {
        println!("  {r}");
    }
    // Wait until the logger has written every line, then show the totals.
    let logged = if logging { sent } else { 0 };
    let stats = loop {
        let rows = ctl(proto::SHOW_STATS)?;
        if rows
            .iter()
            .any(|r| r == &format!("access log lines {logged}"))
            || Instant::now() > deadline
        {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("demo: httpctl show stats");
    for r in &stats {
        println!("  {r}");
    }
    if !stats.contains(&format!("total requests {sent}")) {
        return Err(format!("show stats does not count {sent} requests"));
    }
    let lines = std::fs::read_to_string(access_log).map_err(|e| e.to_string())?;
    let n = lines.lines().count();
    println!(
        "demo: access log {} has {n} lines, e.g.",
        access_log.display()
    );
    if let Some(l) = lines.lines().next() {
        println!("  {l}");
    }
    if n != logged as usize {
        return Err(format!("{n} access-log lines for {sent} requests"));
    }
    println!("demo: httpctl stop");
    ctl(proto::STOP)?;
    Ok(())
}

/// `secs` since the epoch as the Common Log Format writes time, in UTC:
/// `29/Nov/2026:11:49:00 +0000`.
fn clf_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // The civil date of a day count (Howard Hinnant's civil_from_days): eras of
    // 400 years that start on 1 March, so the leap day ends a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::clf_time;

    #[test]
    fn clf_time_in_utc() {
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(clf_time(1_795_935_048), "29/Nov/2026:06:50:48 +0000");
        assert_eq!(clf_time(4_102_444_799), "31/Dec/2099:23:59:59 +0000");
    }
}
