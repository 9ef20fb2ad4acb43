//! A daemon shaped like OpenBSD's httpd: a parent, a `logger`, and `server` × N.
//!
//! ```text
//! cargo run -p privsep-mesh --example httpd [-- --servers N] [--chroot DIR] [-n] [-v]
//! ```
//!
//! What it does, once the mesh is ready:
//! - every server reports who it is (pid, uid, gid, groups, inode of its `/`) to the
//!   parent and sends two log lines to the logger; one line per server also travels
//!   through the parent, which forwards it to the logger;
//! - the parent broadcasts a reload to all servers with one call; each answers;
//! - server 0 makes a pipe and passes its write end to the logger, which writes a line
//!   through it; server 0 reads the line back and tells the parent;
//! - when everything is in, the parent prints a summary and shuts the mesh down: it
//!   closes its channels, every child sees end of file and exits, the parent reaps
//!   them and exits 0.
//!
//! As root, children drop to `nobody` inside an empty chroot directory; otherwise the
//! daemon says privilege drop is off.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;

use privsep_mesh::args::{self, Invocation};
use privsep_mesh::{
    privdrop, stderr_log, AppError, Context, Handled, Handler, Identity, Peer, Privsep, ProcId,
    ProcSpec, ProcTable, Received, Target,
};

const SERVER: ProcId = ProcId(1);
const LOGGER: ProcId = ProcId(2);

// Application message types.
const REPORT: u32 = 1; // child → parent: "pid uid gid groups root-inode"
const LOG_LINE: u32 = 2; // server → logger (or → parent, forwarded to the logger)
const RELOAD: u32 = 3; // parent → every server
const RELOADED: u32 = 4; // server → parent
const LOG_FD: u32 = 5; // server 0 → logger, with a pipe's write end
const FD_WRITTEN: u32 = 6; // logger → server 0: "I wrote through it"
const FD_RESULT: u32 = 7; // server 0 → parent: what came out of the pipe
const LOG_SUMMARY: u32 = 8; // logger → parent: lines received, direct and forwarded

const LINES_PER_SERVER: u32 = 2;

struct Options {
    servers: u32,
    chroot: PathBuf,
    no_action: bool,
    verbose: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        servers: 3,
        chroot: default_chroot(),
        no_action: false,
        verbose: false,
    };
    let args = args::app_args();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--servers" => {
                o.servers = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--servers needs a number")?
            }
            "--chroot" => o.chroot = it.next().ok_or("--chroot needs a directory")?.into(),
            "-n" | "--no-action" => o.no_action = true,
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
        std::env::temp_dir().join("privsep-mesh-empty")
    }
}

/// As root, makes sure the chroot directory exists, is owned by root and is not
/// writable by anyone else (so that `nobody` cannot plant files in its own root).
fn prepare_chroot(dir: &PathBuf) -> Result<(), String> {
    if !privdrop::is_root() {
        return Ok(());
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            // Whatever the umask: root-owned, not writable by anyone else.
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

fn table(o: &Options) -> ProcTable {
    let privdrop = if privdrop::is_root() {
        format!(
            "on: children run as nobody in chroot {}",
            o.chroot.display()
        )
    } else {
        "off (not running as root)".to_owned()
    };
    ProcTable::new("httpd")
        .with(ProcSpec::new(ProcId::PARENT, "parent").start(move |_| {
            Ok(Parent {
                privdrop: privdrop.clone(),
                ..Parent::default()
            })
        }))
        .with(
            ProcSpec::new(SERVER, "server")
                .instances(o.servers)
                .user("nobody")
                .chroot(&o.chroot)
                .start(|me| Ok(Server::new(me))),
        )
        .with(
            ProcSpec::new(LOGGER, "logger")
                .user("nobody")
                .chroot(&o.chroot)
                .start(|_| Ok(Logger::default())),
        )
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("httpd: {e}");
            return ExitCode::from(2);
        }
    };
    stderr_log::init(if o.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
    if matches!(args::from_env(), Ok(Invocation::Parent { .. })) && !o.no_action {
        if let Err(e) = prepare_chroot(&o.chroot) {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    Privsep::new(table(&o)).no_action(o.no_action).run()
}

/// "pid uid gid groups root-inode" of the calling process.
fn self_report() -> String {
    let (uids, gids, groups) = privdrop::credentials().unwrap_or_default();
    let root_ino = std::fs::metadata("/").map(|m| m.ino()).unwrap_or(0);
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    format!(
        "{} {} {} {} {}",
        std::process::id(),
        uids[1],
        gids[1],
        if groups.is_empty() {
            "-".into()
        } else {
            groups.join(",")
        },
        root_ino
    )
}

fn text(msg: &Received) -> String {
    String::from_utf8_lossy(msg.payload()).into_owned()
}

#[derive(Default)]
struct Parent {
    privdrop: String,
    reports: BTreeMap<Peer, String>,
    reloaded: Vec<u32>,
    fd_result: Option<String>,
    log_summary: Option<String>,
    forwarded: u32,
}

impl Parent {
    fn complete(&self, ctx: &Context<'_>) -> bool {
        let servers = ctx.instances(SERVER) as usize;
        self.reports.len() == servers + 1
            && self.reloaded.len() == servers
            && self.fd_result.is_some()
            && self.log_summary.is_some()
    }

    fn summary(&self, ctx: &Context<'_>) -> String {
        let mut s = String::new();
        let servers = ctx.instances(SERVER);
        let _ = writeln!(s, "httpd demo: parent, logger, {servers} servers");
        let _ = writeln!(s, "privilege drop {}", self.privdrop);
        let _ = writeln!(
            s,
            "{:<10} {:>7} {:>6} {:>6} {:<8} {:>10}",
            "process", "pid", "uid", "gid", "groups", "/ inode"
        );
        let mut rows = vec![(ctx.me().name(), self_report())];
        for (peer, r) in &self.reports {
            let name = format!(
                "{}[{}]",
                ctx.title_of(peer.proc).unwrap_or("?"),
                peer.instance
            );
            rows.push((name, r.clone()));
        }
        for (name, r) in rows {
            let f: Vec<&str> = r.split(' ').collect();
            if let [pid, uid, gid, groups, ino] = f[..] {
                let _ = writeln!(
                    s,
                    "{name:<10} {pid:>7} {uid:>6} {gid:>6} {groups:<8} {ino:>10}"
                );
            }
        }
        let _ = writeln!(s, "messages:");
        let _ = writeln!(
            s,
            "  reload: 1 broadcast call reached {} servers; answers from instances {:?}",
            servers, self.reloaded
        );
        let _ = writeln!(
            s,
            "  log lines: {} (servers sent {} directly, parent forwarded {})",
            self.log_summary.as_deref().unwrap_or("?"),
            servers * LINES_PER_SERVER,
            self.forwarded
        );
        let _ = writeln!(
            s,
            "  descriptor: server[0] passed a pipe to logger[0]; read back {:?}",
            self.fd_result.as_deref().unwrap_or("")
        );
        for (peer, c) in ctx.counts() {
            let name = format!(
                "{}[{}]",
                ctx.title_of(peer.proc).unwrap_or("?"),
                peer.instance
            );
            let _ = writeln!(
                s,
                "  parent <-> {name:<10} sent {:>2}, received {:>2}",
                c.sent, c.received
            );
        }
        s
    }
}

impl Handler for Parent {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        log::info!("mesh ready; broadcasting reload to every server");
        ctx.compose(SERVER, Target::All, RELOAD, 1, b"generation 1")?;
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            REPORT => {
                self.reports.insert(msg.from(), text(msg));
            }
            RELOADED => self.reloaded.push(msg.from().instance),
            LOG_LINE => {
                ctx.forward(msg, LOGGER, Target::Instance(0))?;
                self.forwarded += 1;
            }
            FD_RESULT => self.fd_result = Some(text(msg)),
            LOG_SUMMARY => self.log_summary = Some(text(msg)),
            _ => return Ok(Handled::No),
        }
        if self.complete(ctx) {
            print!("{}", self.summary(ctx));
            ctx.shutdown();
        }
        Ok(Handled::Yes)
    }

    fn shutdown(&mut self, _ctx: &mut Context<'_>) {
        log::info!("shutting the mesh down");
    }
}

struct Server {
    read_end: Option<std::fs::File>,
}

impl Server {
    fn new(_me: &Identity) -> Server {
        Server { read_end: None }
    }
}

impl Handler for Server {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let me = ctx.me().name();
        ctx.compose(
            ProcId::PARENT,
            Target::All,
            REPORT,
            0,
            self_report().as_bytes(),
        )?;
        for i in 0..LINES_PER_SERVER {
            let line = format!("{me}: log line {i}");
            ctx.compose(LOGGER, Target::All, LOG_LINE, 0, line.as_bytes())?;
        }
        let via = format!("{me}: log line through the parent");
        ctx.compose(ProcId::PARENT, Target::All, LOG_LINE, 0, via.as_bytes())?;
        if ctx.me().peer.instance == 0 {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            self.read_end = Some(std::fs::File::from(r));
            ctx.compose_fd(LOGGER, Target::Instance(0), LOG_FD, 0, w, b"")?;
        }
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            RELOAD => {
                log::info!("reloading ({})", text(msg));
                ctx.compose(ProcId::PARENT, Target::All, RELOADED, msg.peerid(), b"")?;
            }
            FD_WRITTEN => {
                let mut r = self.read_end.take().ok_or("FD_WRITTEN without a pipe")?;
                let mut got = String::new();
                r.read_to_string(&mut got)?;
                ctx.compose(
                    ProcId::PARENT,
                    Target::All,
                    FD_RESULT,
                    0,
                    got.trim_end().as_bytes(),
                )?;
            }
            _ => return Ok(Handled::No),
        }
        Ok(Handled::Yes)
    }
}

#[derive(Default)]
struct Logger {
    direct: u32,
    forwarded: u32,
    fd_done: bool,
    reported: bool,
}

impl Logger {
    fn maybe_report(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        let servers = ctx.instances(SERVER);
        if !self.reported
            && self.fd_done
            && self.direct == servers * LINES_PER_SERVER
            && self.forwarded == servers
        {
            self.reported = true;
            let s = format!("{} received", self.direct + self.forwarded);
            ctx.compose(ProcId::PARENT, Target::All, LOG_SUMMARY, 0, s.as_bytes())?;
        }
        Ok(())
    }
}

impl Handler for Logger {
    fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
        ctx.compose(
            ProcId::PARENT,
            Target::All,
            REPORT,
            0,
            self_report().as_bytes(),
        )?;
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        match msg.msg_type() {
            LOG_LINE => {
                if msg.from() == Peer::PARENT {
                    self.forwarded += 1;
                } else {
                    self.direct += 1;
                }
                log::info!("{}", text(msg));
            }
            LOG_FD => {
                let fd = msg.take_fd().ok_or("LOG_FD without a descriptor")?;
                let mut f = std::fs::File::from(fd);
                let line = format!(
                    "written by {} through a descriptor from server[{}]\n",
                    ctx.me().name(),
                    msg.from().instance
                );
                std::io::Write::write_all(&mut f, line.as_bytes())?;
                drop(f);
                ctx.compose(
                    SERVER,
                    Target::Instance(msg.from().instance),
                    FD_WRITTEN,
                    0,
                    b"",
                )?;
                self.fd_done = true;
            }
            _ => return Ok(Handled::No),
        }
        self.maybe_report(ctx)?;
        Ok(Handled::Yes)
    }
}
