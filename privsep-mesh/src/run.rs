//! The entry point ([`Privsep`]): this process's role, its start-up, its event
//! loop (module `event_loop`, waiting with `poll(2)` or tokio) and its end.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::ExitCode;

use crate::args::{self, Invocation};
use crate::control_socket::{self, ControlSocket};
use crate::error::Error;
use crate::event_loop::PollWaiter;
use crate::handler::Context;
use crate::handler::{AppError, Handler, Identity, NullHandler};
use crate::mesh::LoopEnd;
use crate::mesh::Mesh;
use crate::privdrop;
use crate::route::Peer;
use crate::route::ProcId;
use crate::signals::{Signal, SignalPipe};
use crate::startup;
use crate::stderr_log;
use crate::table::ProcTable;

/// Runs `mesh` in the built-in loop, or in tokio's (then inside a runtime with I/O
/// and time: the one [`Privsep::run`] built, or the application's).
async fn drive(
    tokio: bool,
    mesh: &mut Mesh,
    handler: &mut dyn Handler,
    signals: &SignalPipe,
) -> Result<LoopEnd, Error> {
    #[cfg(feature = "tokio")]
    if tokio {
        return crate::tokio_run::event_loop(mesh, handler, signals).await;
    }
    let _ = tokio;
    let mut waiter = PollWaiter::default();
    crate::event_loop::run(mesh, handler, signals, &mut waiter).await
}

/// Runs a role that does not use tokio: its future never waits on a waker (the
/// poll(2) loop blocks in poll itself), so one poll completes it.
fn block_on_poll_loop<T>(role: impl std::future::Future<Output = T>) -> T {
    let mut role = std::pin::pin!(role);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = role.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A daemon ready to run: the parent or one of its children, depending on the
/// arguments this process was started with.
///
/// ```no_run
/// use privsep_mesh::{Privsep, ProcId, ProcSpec, ProcTable};
/// fn main() -> std::process::ExitCode {
///     Privsep::new(
///         ProcTable::new("mydaemon")
///             .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
///             .with_proc(ProcSpec::new(ProcId(1), "worker").with_instances(2)),
///     )
///     .run()
/// }
/// ```
pub struct Privsep {
    table: ProcTable,
    starts: Starts,
    no_action: bool,
}

/// A start function: builds a process's handler once it has dropped privileges.
type StartFn = Box<dyn FnMut(&Identity) -> Result<Box<dyn Handler>, AppError>>;

/// The start functions, by process kind.
type Starts = BTreeMap<ProcId, StartFn>;

impl std::fmt::Debug for Privsep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privsep")
            .field("table", &self.table)
            .field("starts", &self.starts.keys().collect::<Vec<_>>())
            .field("no_action", &self.no_action)
            .finish()
    }
}

impl Privsep {
    /// A daemon described by `table`; every process without a start function runs
    /// [`NullHandler`], which accepts no application message.
    pub fn new(table: ProcTable) -> Privsep {
        Privsep {
            table,
            starts: Starts::new(),
            no_action: false,
        }
    }

    /// The start function of process `id` (every instance of it): runs in the
    /// process once it has dropped privileges and returns its handler (proc.c's
    /// `p_init` / run callback). Nothing can be sent yet: [`Handler::ready`] is the
    /// first moment the mesh is usable. An `id` the table does not have is an
    /// [`Error::UnknownProcess`] when the daemon runs.
    pub fn with_start<H, F>(mut self, id: ProcId, mut f: F) -> Privsep
    where
        H: Handler + 'static,
        F: FnMut(&Identity) -> Result<H, AppError> + 'static,
    {
        let start: StartFn = Box::new(move |me| Ok(Box::new(f(me)?) as Box<dyn Handler>));
        self.starts.insert(id, start);
        self
    }

    /// The table and the start functions agree.
    fn validate(&self) -> Result<(), Error> {
        self.table.validate()?;
        match self.starts.keys().find(|id| self.table.get(**id).is_none()) {
            Some(id) => Err(Error::UnknownProcess(*id)),
            None => Ok(()),
        }
    }

    /// Check mode (`-n` in OpenBSD daemons): validate the table and the users, start
    /// nothing.
    pub fn with_no_action(mut self, on: bool) -> Privsep {
        self.no_action = on;
        self
    }

    /// Runs this process's role, found in `std::env::args_os()`, and returns its exit
    /// status: `SUCCESS` for an orderly end; `FAILURE` after an error (logged) or, in
    /// the parent, when a child ended abnormally.
    pub fn run(self) -> ExitCode {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let name = self.table.name().to_owned();
        exit_code(&name, self.run_with(&argv))
    }

    /// [`run`](Privsep::run) inside the application's own tokio runtime: every
    /// process of the table runs the tokio loop in it (whatever
    /// [`ProcSpec::with_tokio`](crate::ProcSpec::with_tokio) says). The runtime must have I/O
    /// and time enabled, and run this future on its thread (`block_on`, or
    /// `#[tokio::main(flavor = "current_thread")]`): handlers are not `Send`.
    #[cfg(feature = "tokio")]
    pub async fn run_async(self) -> ExitCode {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let name = self.table.name().to_owned();
        let r = match self.validate().and_then(|()| Ok(args::parse(&argv)?)) {
            Ok(inv) => self.role(inv, true).await,
            Err(e) => Err(e),
        };
        exit_code(&name, r)
    }

    /// Runs the role `argv` (with `argv[0]`) selects. `Ok(true)`: orderly end;
    /// `Ok(false)`: the mesh ended on an error, already logged (a protocol error, a
    /// failed channel), or the parent lost a child; `Err`: the process could not
    /// start its role (table, arguments, privilege drop).
    pub fn run_with(self, argv: &[OsString]) -> Result<bool, Error> {
        self.validate()?;
        let inv = args::parse(argv)?;
        let spec = match &inv {
            Invocation::Child { title, .. } => self.table.by_title(title),
            Invocation::Parent { .. } => self.table.get(ProcId::PARENT),
        };
        if spec.is_some_and(|s| s.tokio()) {
            #[cfg(feature = "tokio")]
            {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(Error::os("tokio runtime"))?;
                return rt.block_on(self.role(inv, true));
            }
        }
        block_on_poll_loop(self.role(inv, false))
    }

    /// This process's role; `tokio`: whether its loop runs in tokio (inside a
    /// runtime the caller provides).
    async fn role(self, inv: Invocation, tokio: bool) -> Result<bool, Error> {
        match inv {
            Invocation::Child {
                title, instance, ..
            } => run_child(self.table, self.starts, &title, instance, tokio).await,
            Invocation::Parent { args } if self.no_action => {
                stderr_log::set_role(&identity(&self.table, Peer::PARENT));
                check_users(&self.table)?;
                log::info!("{}: configuration OK", self.table.name());
                drop(args);
                Ok(true)
            }
            Invocation::Parent { args } => run_parent(self.table, self.starts, &args, tokio).await,
        }
    }
}

fn exit_code(name: &str, r: Result<bool, Error>) -> ExitCode {
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_users(table: &ProcTable) -> Result<(), Error> {
    for spec in table.procs() {
        if let Some(u) = spec.user() {
            privdrop::lookup(u)?;
        }
    }
    Ok(())
}

fn identity(table: &ProcTable, peer: Peer) -> Identity {
    Identity {
        daemon: table.name().to_owned(),
        peer,
        title: table.get(peer.proc).map_or("?", |p| p.title()).to_owned(),
        pid: std::process::id(),
    }
}

fn shut_down(mesh: &mut Mesh, handler: &mut dyn Handler) {
    let mut ctx = Context::new(mesh);
    handler.shutdown(&mut ctx);
    mesh.write_all_once();
    mesh.close_all();
}

/// An error of the running mesh, with peers named by title (`beta[0]`).
fn describe(mesh: &Mesh, e: &Error) -> String {
    match e {
        Error::Protocol { from, error } => {
            format!("protocol error from {}: {error}", mesh.name_of(*from))
        }
        Error::Channel { peer, error } => format!("channel to {}: {error}", mesh.name_of(*peer)),
        Error::NotConnected(p) => format!("no channel to {}", mesh.name_of(*p)),
        other => other.to_string(),
    }
}

fn log_end(mesh: &Mesh, end: &LoopEnd) {
    match end {
        LoopEnd::Closed(p) => log::debug!("channel to {} closed: exiting", mesh.name_of(*p)),
        LoopEnd::Signal(_) | LoopEnd::Requested => log::debug!("exiting"),
    }
}

/// The handler of process `id`, from its start function or a [`NullHandler`].
fn make_handler(starts: &mut Starts, id: ProcId, me: &Identity) -> Result<Box<dyn Handler>, Error> {
    match starts.get_mut(&id) {
        Some(start) => start(me).map_err(Error::App),
        None => Ok(Box::new(NullHandler)),
    }
}

async fn run_parent(
    table: ProcTable,
    mut starts: Starts,
    app_args: &[OsString],
    tokio: bool,
) -> Result<bool, Error> {
    let me = identity(&table, Peer::PARENT);
    stderr_log::set_role(&me);
    let wants_drop = table
        .procs()
        .any(|p| p.user().is_some() || p.chroot().is_some());
    if !privdrop::is_root() && wants_drop {
        log::info!("not running as root: privilege drop is off");
    }
    check_users(&table)?;
    let csocks: Vec<std::path::PathBuf> = table
        .procs()
        .flat_map(|p| p.control_sockets().iter().map(|(path, _)| path.clone()))
        .collect();
    // bgpd's control_check: refuse to start next to a daemon serving the socket.
    for path in &csocks {
        control_socket::check_free(path)?;
    }
    let parent = table
        .get(ProcId::PARENT)
        .ok_or(Error::UnknownProcess(ProcId::PARENT))?;
    let signals =
        SignalPipe::install(parent.signals(), &[Signal::Chld]).map_err(Error::os("signals"))?;
    let mut handler = make_handler(&mut starts, ProcId::PARENT, &me)?;
    let mut mesh = Mesh::new(&table, me)?;

    let started = startup::spawn_all(&table, &mut mesh, app_args)
        .and_then(|()| startup::connect(&table, &mut mesh))
        .and_then(|()| mesh.announce_ready(&mut *handler));
    let result = match started {
        Ok(()) => drive(tokio, &mut mesh, &mut *handler, &signals).await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(end) => log_end(&mesh, end),
        Err(e) => log::error!("{}", describe(&mesh, e)),
    }
    shut_down(&mut mesh, &mut *handler);
    let children = mesh.children_mut();
    children.reap_all(table.shutdown_grace(), Some(&signals), &|| {
        let _ = signals.drain();
    });
    // control_cleanup: the control process cannot unlink from inside its chroot.
    for path in &csocks {
        control_socket::remove_if_stale(path);
    }
    Ok(result.is_ok() && children.all_clean())
}

async fn run_child(
    table: ProcTable,
    mut starts: Starts,
    title: &str,
    instance: u32,
    tokio: bool,
) -> Result<bool, Error> {
    let id = table
        .by_title(title)
        .map(|s| s.id())
        .ok_or_else(|| Error::UnknownTitle(title.to_owned()))?;
    crate::route::range(crate::Target::Instance(instance), table.instances(id))?;
    let parent_fd = startup::take_parent_channel()?;
    let me = identity(&table, Peer::new(id, instance));
    stderr_log::set_role(&me);
    let spec = table.get(id).ok_or(Error::UnknownProcess(id))?;
    let signals = SignalPipe::install(spec.signals(), &[]).map_err(Error::os("signals"))?;
    // proc.c's proc_run for PROC_CONTROL: control_init before the chroot and the
    // privilege drop (root owns the main socket), control_listen after.
    let mut csocks = Vec::new();
    if instance == 0 {
        for (path, access) in spec.control_sockets() {
            csocks.push(ControlSocket::bind(path, *access)?.keep_file());
        }
    }
    if privdrop::is_root() {
        drop_privileges(spec.user(), spec.chroot())?;
    }
    for s in &csocks {
        s.listen()
            .map_err(Error::os("listen on a control socket"))?;
    }
    privdrop::set_process_name(title);
    let mut handler = make_handler(&mut starts, id, &me)?;
    let mut mesh = Mesh::new(&table, me)?;
    mesh.attach(Peer::PARENT, parent_fd)?;
    for s in csocks {
        mesh.watches()
            .add(Box::new(s), crate::watch::Ready::default());
    }
    let result = drive(tokio, &mut mesh, &mut *handler, &signals).await;
    match &result {
        Ok(end) => log_end(&mesh, end),
        Err(e) => log::error!("{}", describe(&mesh, e)),
    }
    shut_down(&mut mesh, &mut *handler);
    Ok(result.is_ok())
}

fn drop_privileges(user: Option<&str>, chroot: Option<&std::path::Path>) -> Result<(), Error> {
    let user = user.map(privdrop::lookup).transpose()?;
    let root = chroot
        .map(|c| c.to_path_buf())
        .or_else(|| user.as_ref().map(|u| u.home.clone()));
    if let Some(root) = &root {
        privdrop::enter_chroot(root)?;
    }
    if let Some(u) = &user {
        privdrop::become_user(u)?;
    }
    Ok(())
}
