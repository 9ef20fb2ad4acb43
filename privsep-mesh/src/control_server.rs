//! The control process's clients, on the process's own event loop: relayd's and
//! bgpd's `control.c` (`control_listen`'s accept event, `control_accept`,
//! `control_dispatch_imsg`, `control_close`).
//!
//! A [`ControlServer`] lives in the handler of the control process (the process
//! the table marks with [`ProcSpec::with_control_socket`](crate::ProcSpec::with_control_socket),
//! whose sockets the framework created before the privilege drop and listens on
//! after it). [`ControlServer::start`] watches them ([`Context::watch`]); the
//! handler hands its [`Handler::io`](crate::Handler::io) and
//! [`Handler::timer`](crate::Handler::timer) calls to [`ControlServer::io`] and
//! [`ControlServer::timer`], as a libevent daemon registers `control_accept` and
//! `control_dispatch_imsg`. Every client is an imsg channel with a numeric id. Each
//! request goes to the application's [`Route`] function together with the client's
//! id, its credentials (`SO_PEERCRED`) and the kind of socket it came through; the
//! function forwards it into the mesh (peer id = client id, as control.c does),
//! answers it at once, or refuses it. Requests a restricted socket does not allow
//! are refused before the function sees them, with a [`REFUSED`] frame. Replies that
//! other processes send back arrive in the control process's handler with the client
//! id as peer id, which hands them to [`ControlServer::reply`].
//!
//! Bounds, so that no client can take the daemon down:
//! - a request frame above [`ControlSettings::max_frame`] or malformed ends that
//!   client (logged); everyone else is served;
//! - replies wait in the client's channel; a client with more than
//!   [`ControlSettings::max_queued`] unread replies, or whose replies made no
//!   progress for [`ControlSettings::write_timeout`], is disconnected and logged;
//! - accepting pauses while descriptors run low (`EMFILE`/`ENFILE`, or fewer than
//!   [`ControlSettings::fd_reserve`] left under `RLIMIT_NOFILE`) and resumes when a
//!   client leaves or after [`ACCEPT_BACKOFF`] (control.c's accept back-off).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use imsg_io::{Channel, Config, OwnedMessage, ReadStatus, WriteStatus};

use crate::control_socket::{peer_credentials, Access, ControlSocket, Credentials, REFUSED};
use crate::handler::Context;
use crate::route::{ProcId, Target};
use crate::timer::Timer;
use crate::watch::{Ready, Watch};

/// How long accepting pauses after `EMFILE`/`ENFILE` unless a client leaves first.
pub const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Connections accepted per readiness event, so that one busy socket cannot starve
/// the rest of the loop.
const ACCEPT_BATCH: usize = 16;

/// Limits of a [`ControlServer`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ControlSettings {
    /// Message types a restricted socket allows.
    pub unprivileged: Vec<u32>,
    /// Largest request frame, header included.
    pub max_frame: usize,
    /// Replies waiting for one client before it is disconnected.
    pub max_queued: usize,
    /// Longest a client may leave its replies unread before it is disconnected.
    pub write_timeout: Duration,
    /// Descriptors kept free for the rest of the process: accepting pauses when
    /// fewer are left.
    pub fd_reserve: u64,
}

impl Default for ControlSettings {
    fn default() -> ControlSettings {
        ControlSettings {
            unprivileged: Vec::new(),
            max_frame: 4096,
            max_queued: 1024,
            write_timeout: Duration::from_secs(5),
            fd_reserve: 32,
        }
    }
}

/// A request of a control client, as the application's [`Route`] sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's id: put it in the peer id of every message about this request,
    /// so that replies come back to this client.
    pub client: u32,
    /// Who the client is.
    pub credentials: Credentials,
    /// Which kind of socket it came through.
    pub access: Access,
    /// The message type.
    pub ty: u32,
    /// The payload.
    pub payload: &'a [u8],
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it into the mesh, same type and payload, peer id = client id.
    Forward(ProcId, Target),
    /// Answer the client at once with (type, payload).
    Reply(u32, Vec<u8>),
    /// Answer with a [`REFUSED`] frame carrying the reason.
    Refuse(String),
}

/// The application's routing of control requests.
pub type Route = Box<dyn Fn(&Request<'_>) -> Decision>;

/// One connected client: its channel is the watched object.
#[derive(Debug)]
struct Client {
    watch: Watch,
    credentials: Credentials,
    access: Access,
    /// Armed while replies wait: when it fires without progress, the client goes.
    stalled: Option<Timer>,
    /// Bytes written since `stalled` was armed.
    progress: bool,
}

/// The control process's listening sockets and clients.
///
/// ```no_run
/// use privsep_mesh::control_server::{ControlServer, ControlSettings, Decision};
/// use privsep_mesh::{AppError, Context, Handled, Handler, ProcId, Ready, Received, Target, Timer, Watch};
/// const SHOW: u32 = 1;
/// struct Control(ControlServer);
/// impl Handler for Control {
///     fn ready(&mut self, ctx: &mut Context<'_>) -> Result<(), AppError> {
///         self.0.start(ctx)?; // accept on the sockets the framework created
///         Ok(())
///     }
///     fn io(&mut self, ctx: &mut Context<'_>, w: Watch, r: Ready) -> Result<(), AppError> {
///         self.0.io(ctx, w, r);
///         Ok(())
///     }
///     fn timer(&mut self, ctx: &mut Context<'_>, t: Timer) -> Result<(), AppError> {
///         self.0.timer(ctx, t);
///         Ok(())
///     }
///     fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
///         // A reply from another process: back to the client its peer id names.
///         self.0.reply(ctx, msg.peerid(), msg.msg_type(), msg.payload());
///         Ok(Handled::Yes)
///     }
/// }
/// let mut settings = ControlSettings::default();
/// settings.unprivileged = vec![SHOW];
/// let control = Control(ControlServer::new(
///     settings,
///     Box::new(|_req| Decision::Forward(ProcId::PARENT, Target::All)),
/// ));
/// ```
pub struct ControlServer {
    settings: ControlSettings,
    route: Route,
    listeners: Vec<(Watch, Access)>,
    clients: BTreeMap<u32, Client>,
    by_watch: BTreeMap<Watch, u32>,
    next_id: u32,
    /// Armed while accepting is paused.
    paused: Option<Timer>,
    fd_limit: u64,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("listeners", &self.listeners)
            .field("clients", &self.clients.len())
            .field("paused", &self.paused.is_some())
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// A server with no sockets and no clients; `route` decides what each request
    /// becomes.
    pub fn new(settings: ControlSettings, route: Route) -> ControlServer {
        let fd_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        ControlServer {
            settings,
            route,
            listeners: Vec::new(),
            clients: BTreeMap::new(),
            by_watch: BTreeMap::new(),
            next_id: 1,
            paused: None,
            fd_limit,
        }
    }

    /// Starts accepting on the control sockets the framework created for this
    /// process ([`Context::control_sockets`]): the event half of proc.c's
    /// `control_listen`. Returns how many there are.
    pub fn start(&mut self, ctx: &mut Context<'_>) -> io::Result<usize> {
        for w in ctx.control_sockets() {
            let Some(sock) = ctx.io::<ControlSocket>(w) else {
                continue;
            };
            sock.listener().set_nonblocking(true)?;
            let access = sock.access();
            log::debug!("accepting on the {access} control socket");
            self.listeners.push((w, access));
            ctx.set_interest(w, Ready::READ);
        }
        Ok(self.listeners.len())
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Handles readiness of `watch` if it is one of this server's (a control socket
    /// or a client); returns whether it was.
    pub fn io(&mut self, ctx: &mut Context<'_>, watch: Watch, ready: Ready) -> bool {
        if let Some(&(_, access)) = self.listeners.iter().find(|(w, _)| *w == watch) {
            self.accept(ctx, watch, access);
            return true;
        }
        let Some(&id) = self.by_watch.get(&watch) else {
            return false;
        };
        if ready.writable {
            self.write(ctx, id);
        }
        if ready.readable {
            self.read(ctx, id);
        }
        true
    }

    /// Handles `timer` if it is one of this server's; returns whether it was.
    pub fn timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> bool {
        if self.paused == Some(timer) {
            self.paused = None;
            // As control.c: accept again only if descriptors came free meanwhile,
            // otherwise wait another back-off (rather than take one more each time).
            if self.descriptors_low(ctx) {
                self.pause(ctx);
            } else {
                self.resume_listeners(ctx);
            }
            return true;
        }
        let Some((&id, c)) = self
            .clients
            .iter_mut()
            .find(|(_, c)| c.stalled == Some(timer))
        else {
            return false;
        };
        c.stalled = None;
        if std::mem::take(&mut c.progress) {
            c.stalled = Some(ctx.timer_after(self.settings.write_timeout));
        } else {
            self.close(ctx, id, Some("does not read its replies"));
        }
        true
    }

    /// Queues a reply for client `client` (from a message whose peer id named it)
    /// and writes what the socket takes now. Returns `false` if the client is gone;
    /// a client with more than [`ControlSettings::max_queued`] unread replies is
    /// disconnected (logged) and `false` returned.
    pub fn reply(&mut self, ctx: &mut Context<'_>, client: u32, ty: u32, payload: &[u8]) -> bool {
        let Some(c) = self.clients.get(&client) else {
            return false;
        };
        let Some(ch) = ctx.io::<Channel>(c.watch) else {
            return false;
        };
        let pid = std::process::id() as i32;
        if let Err(e) = ch.compose(ty, client, pid, None, payload) {
            self.close(ctx, client, Some(&format!("reply: {e}")));
            return false;
        }
        if ch.queue_len() > self.settings.max_queued {
            self.close(ctx, client, Some("does not read its replies"));
            return false;
        }
        self.write(ctx, client);
        self.clients.contains_key(&client)
    }

    fn accept(&mut self, ctx: &mut Context<'_>, watch: Watch, access: Access) {
        for _ in 0..ACCEPT_BATCH {
            let Some(sock) = ctx.io::<ControlSocket>(watch) else {
                return;
            };
            match sock.listener().accept() {
                Ok((stream, _)) => {
                    // The kernel hands out the lowest free number, so the new
                    // descriptor's number is about how many are open (BSD's
                    // getdtablecount, which Linux lacks; /proc is not in the chroot).
                    let fd = stream.as_raw_fd() as u64;
                    self.add_client(ctx, stream, access);
                    if fd + self.settings.fd_reserve >= self.fd_limit {
                        log::warn!(
                            "control: descriptors low ({fd} of {}): accept paused",
                            self.fd_limit
                        );
                        self.pause(ctx);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::warn!("control: accept: {e}: accept paused");
                    self.pause(ctx);
                    return;
                }
                // ECONNABORTED and the like: that client is gone, the socket is fine.
                Err(e) => {
                    log::warn!("control: accept: {e}");
                    return;
                }
            }
        }
    }

    fn pause(&mut self, ctx: &mut Context<'_>) {
        for &(w, _) in &self.listeners {
            ctx.set_interest(w, Ready::default());
        }
        if self.paused.is_none() {
            self.paused = Some(ctx.timer_after(ACCEPT_BACKOFF));
        }
    }

    fn resume(&mut self, ctx: &mut Context<'_>) {
        if let Some(t) = self.paused.take() {
            ctx.cancel_timer(t);
            self.resume_listeners(ctx);
        }
    }

    fn resume_listeners(&mut self, ctx: &mut Context<'_>) {
        for &(w, _) in &self.listeners {
            ctx.set_interest(w, Ready::READ);
        }
    }

    /// Whether fewer than [`ControlSettings::fd_reserve`] descriptors are left: the
    /// lowest free descriptor number (a probe duplicate, closed at once) against
    /// `RLIMIT_NOFILE`; `EMFILE` on the probe says so too.
    fn descriptors_low(&self, ctx: &mut Context<'_>) -> bool {
        let Some(&(w, _)) = self.listeners.first() else {
            return false;
        };
        let Some(sock) = ctx.io::<ControlSocket>(w) else {
            return false;
        };
        match rustix::io::fcntl_dupfd_cloexec(sock.as_fd(), 0) {
            Ok(probe) => probe.as_raw_fd() as u64 + self.settings.fd_reserve >= self.fd_limit,
            Err(_) => true,
        }
    }

    fn add_client(
        &mut self,
        ctx: &mut Context<'_>,
        stream: std::os::unix::net::UnixStream,
        access: Access,
    ) {
        let started = peer_credentials(stream.as_fd())
            .map_err(|e| format!("SO_PEERCRED: {e}"))
            .and_then(|cred| {
                stream
                    .set_nonblocking(true)
                    .map_err(|e| format!("non-blocking: {e}"))?;
                let cfg = Config::default()
                    .with_max_frame(self.settings.max_frame)
                    .map_err(|e| e.to_string())?;
                let ch = Channel::new(stream, cfg).map_err(|e| e.to_string())?;
                Ok((cred, ch))
            });
        let (credentials, ch) = match started {
            Ok(c) => c,
            Err(e) => {
                log::warn!("control: {e}");
                return;
            }
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let watch = ctx.watch(ch, Ready::READ);
        self.by_watch.insert(watch, id);
        self.clients.insert(
            id,
            Client {
                watch,
                credentials,
                access,
                stalled: None,
                progress: false,
            },
        );
        log::debug!(
            "control client {id} connected on the {access} socket: pid {} uid {}",
            credentials.pid,
            credentials.uid
        );
    }

    /// Ends client `id`; `why` is logged as a warning (`None`: it left).
    fn close(&mut self, ctx: &mut Context<'_>, id: u32, why: Option<&str>) {
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        self.by_watch.remove(&c.watch);
        ctx.unwatch(c.watch);
        if let Some(t) = c.stalled {
            ctx.cancel_timer(t);
        }
        match why {
            Some(why) => log::warn!(
                "control client {id} (pid {}): {why}: disconnected",
                c.credentials.pid
            ),
            None => log::debug!("control client {id} left"),
        }
        // A descriptor came free.
        self.resume(ctx);
    }

    fn read(&mut self, ctx: &mut Context<'_>, id: u32) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let Some(ch) = ctx.io::<Channel>(c.watch) else {
            return;
        };
        let mut requests: Vec<OwnedMessage> = Vec::new();
        let end = match ch.read() {
            Ok(ReadStatus::Eof) => Some(None),
            Ok(_) => None,
            Err(e) => Some(Some(e.to_string())),
        };
        // Whatever arrived before an end is still answered.
        let broken = loop {
            match ch.get_owned() {
                Ok(Some(m)) => requests.push(m),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        for m in &requests {
            self.request(ctx, id, m);
            if !self.clients.contains_key(&id) {
                return;
            }
        }
        match (broken, end) {
            (Some(why), _) | (None, Some(Some(why))) => self.close(ctx, id, Some(&why)),
            (None, Some(None)) => self.close(ctx, id, None),
            (None, None) => {}
        }
    }

    fn request(&mut self, ctx: &mut Context<'_>, id: u32, msg: &OwnedMessage) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let req = Request {
            client: id,
            credentials: c.credentials,
            access: c.access,
            ty: msg.msg_type(),
            payload: msg.payload(),
        };
        let decision = if req.access.permits(req.ty, &self.settings.unprivileged) {
            (self.route)(&req)
        } else {
            Decision::Refuse(format!("not allowed on the {} socket", req.access))
        };
        let (ty, payload) = match decision {
            Decision::Forward(to, target) => {
                match ctx.compose(to, target, req.ty, id, req.payload) {
                    Ok(_) => return,
                    // The mesh cannot take it now (a peer's queue is full, say):
                    // this request fails, the daemon goes on.
                    Err(e) => {
                        log::warn!("control client {id}: type {}: {e}", req.ty);
                        (
                            REFUSED,
                            format!("cannot forward the request: {e}").into_bytes(),
                        )
                    }
                }
            }
            Decision::Reply(ty, payload) => (ty, payload),
            Decision::Refuse(why) => {
                log::info!(
                    "control client {id} (uid {}): type {} refused: {why}",
                    req.credentials.uid,
                    req.ty
                );
                (REFUSED, why.into_bytes())
            }
        };
        self.reply(ctx, id, ty, &payload);
    }

    /// Writes what the client's socket takes; waits for writability (and arms the
    /// stall timer) while replies remain.
    fn write(&mut self, ctx: &mut Context<'_>, id: u32) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let watch = c.watch;
        let Some(ch) = ctx.io::<Channel>(watch) else {
            return;
        };
        let mut failed = None;
        loop {
            match ch.write() {
                Ok(WriteStatus::Wrote(n)) if n > 0 => c.progress = true,
                Ok(_) => break,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        let waiting = ch.queue_len() > 0;
        if let Some(why) = failed {
            self.close(ctx, id, Some(&why));
            return;
        }
        ctx.set_interest(
            watch,
            Ready {
                readable: true,
                writable: waiting,
            },
        );
        match (waiting, c.stalled) {
            (true, None) => {
                c.progress = false;
                c.stalled = Some(ctx.timer_after(self.settings.write_timeout));
            }
            (false, Some(t)) => {
                ctx.cancel_timer(t);
                c.stalled = None;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;
    use std::time::Instant;

    use imsg_io::ReadStatus;
    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    use super::*;
    use crate::mesh::Mesh;
    use crate::route::{Identity, Peer};
    use crate::table::{ProcSpec, ProcTable};
    use crate::watch::from_revents;

    const CONTROL: ProcId = ProcId(1);
    const SHOW: u32 = 1;
    const STOP: u32 = 2;
    const ROW: u32 = 3;

    /// The control process's mesh with its channel to the parent (the test holds
    /// the parent's end), and a server accepting on a fresh socket of kind
    /// `access`, which forwards everything to the parent.
    fn control(
        name: &str,
        access: Access,
        settings: ControlSettings,
    ) -> (Mesh, ControlServer, Channel, PathBuf) {
        let table = ProcTable::new("t")
            .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
            .with_proc(ProcSpec::new(CONTROL, "control"));
        let me = Identity {
            daemon: "t".into(),
            peer: Peer::new(CONTROL, 0),
            title: "control".into(),
            pid: std::process::id(),
        };
        let mut mesh = Mesh::new(&table, me).unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        mesh.attach(Peer::PARENT, ours.into()).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let parent = Channel::new(theirs, Config::default()).unwrap();
        let path = std::env::temp_dir().join(format!("csrv-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // As the framework leaves it: bound, listening, watched for nothing yet.
        let sock = ControlSocket::bind(&path, access).unwrap();
        sock.listen().unwrap();
        mesh.watches().add(Box::new(sock), Ready::default());
        let mut server = ControlServer::new(
            settings,
            Box::new(|_| Decision::Forward(ProcId::PARENT, Target::All)),
        );
        assert_eq!(server.start(&mut Context::new(&mut mesh)).unwrap(), 1);
        (mesh, server, parent, path)
    }

    /// One turn of an event loop: waits up to 10 ms for the watched descriptors,
    /// hands what is ready and the due timers to the server, writes to the parent.
    fn turn(mesh: &mut Mesh, server: &mut ControlServer) {
        let mut ready = Vec::new();
        {
            let entries: Vec<_> = mesh.watches_ref().entries.iter().collect();
            let mut fds: Vec<PollFd<'_>> = entries
                .iter()
                .map(|(_, e)| {
                    let mut ev = PollFlags::empty();
                    if e.interest.readable {
                        ev |= PollFlags::IN;
                    }
                    if e.interest.writable {
                        ev |= PollFlags::OUT;
                    }
                    PollFd::from_borrowed_fd(e.io.fd(), ev)
                })
                .collect();
            let wait = Timespec::try_from(Duration::from_millis(10)).unwrap();
            poll(&mut fds, Some(&wait)).unwrap();
            for ((w, e), fd) in entries.iter().zip(&fds) {
                ready.push((**w, from_revents(fd.revents(), e.interest)));
            }
        }
        for (w, r) in ready {
            if r != Ready::default() {
                assert!(server.io(&mut Context::new(mesh), w, r));
            }
        }
        for t in mesh.timers().take_due(Instant::now()) {
            assert!(server.timer(&mut Context::new(mesh), t));
        }
        mesh.flush(ProcId::PARENT, Target::All).unwrap();
    }

    /// Turns until the parent's end has a message.
    fn forwarded(
        mesh: &mut Mesh,
        server: &mut ControlServer,
        parent: &mut Channel,
    ) -> OwnedMessage {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            turn(mesh, server);
            let _ = parent.read().unwrap();
            if let Some(m) = parent.get_owned().unwrap() {
                return m;
            }
            assert!(Instant::now() < end, "nothing forwarded");
        }
    }

    /// A blocking client: sends `ty`, returns the first reply (type, payload).
    fn client(path: PathBuf, ty: u32) -> std::thread::JoinHandle<(u32, Vec<u8>)> {
        std::thread::spawn(move || {
            let s = UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut ch = Channel::new(s, Config::default()).unwrap();
            ch.compose(ty, 0, 0, None, b"").unwrap();
            ch.flush().unwrap();
            loop {
                if let Some(m) = ch.get_owned().unwrap() {
                    return (m.msg_type(), m.payload().to_vec());
                }
                assert!(matches!(ch.read().unwrap(), ReadStatus::Read(_)));
            }
        })
    }

    fn join_while_turning(
        mesh: &mut Mesh,
        server: &mut ControlServer,
        c: std::thread::JoinHandle<(u32, Vec<u8>)>,
    ) -> (u32, Vec<u8>) {
        while !c.is_finished() {
            turn(mesh, server);
        }
        c.join().unwrap()
    }

    #[test]
    fn forwarded_with_the_client_id_and_answered_by_it() {
        let settings = ControlSettings::default();
        let (mut mesh, mut server, mut parent, path) = control("fwd", Access::Main, settings);
        let c = client(path.clone(), SHOW);
        let m = forwarded(&mut mesh, &mut server, &mut parent);
        assert_eq!(m.msg_type(), SHOW);
        assert_eq!(server.clients(), 1);
        let ctx = &mut Context::new(&mut mesh);
        assert!(!server.reply(ctx, m.peerid() + 1, ROW, b"not yours"));
        assert!(server.reply(ctx, m.peerid(), ROW, b"yours"));
        let got = join_while_turning(&mut mesh, &mut server, c);
        assert_eq!(got, (ROW, b"yours".to_vec()));
        // The client left: its descriptor is closed and it is forgotten.
        let end = Instant::now() + Duration::from_secs(20);
        while server.clients() > 0 {
            assert!(Instant::now() < end, "client still listed");
            turn(&mut mesh, &mut server);
        }
        assert_eq!(mesh.watches_ref().entries.len(), 1, "only the listener");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn restricted_socket_refuses_with_a_frame() {
        let settings = ControlSettings {
            unprivileged: vec![SHOW],
            ..ControlSettings::default()
        };
        let (mut mesh, mut server, mut parent, path) =
            control("restricted", Access::Restricted, settings);
        let c = client(path.clone(), STOP);
        let (ty, why) = join_while_turning(&mut mesh, &mut server, c);
        assert_eq!(ty, REFUSED);
        assert_eq!(why, b"not allowed on the restricted socket");
        // An allowed type goes through; the refused one never did.
        let _c = client(path.clone(), SHOW);
        assert_eq!(
            forwarded(&mut mesh, &mut server, &mut parent).msg_type(),
            SHOW
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let settings = ControlSettings {
            max_queued: 4,
            write_timeout: Duration::from_millis(200),
            ..ControlSettings::default()
        };
        let (mut mesh, mut server, mut parent, path) = control("mute", Access::Main, settings);
        let s = UnixStream::connect(&path).unwrap();
        let mut ch = Channel::new(s, Config::default()).unwrap();
        ch.compose(SHOW, 0, 0, None, b"").unwrap();
        ch.flush().unwrap();
        let id = forwarded(&mut mesh, &mut server, &mut parent).peerid();
        let big = vec![0u8; 4000];
        let mut sent = 0;
        let end = Instant::now() + Duration::from_secs(20);
        while server.reply(&mut Context::new(&mut mesh), id, ROW, &big) {
            sent += 1;
            assert!(Instant::now() < end, "never dropped");
            turn(&mut mesh, &mut server);
        }
        assert!(sent > 4, "the socket buffer took some first: {sent}");
        assert_eq!(server.clients(), 0);
        assert_eq!(mesh.watches_ref().entries.len(), 1, "only the listener");
        drop(ch);
        let _ = std::fs::remove_file(&path);
    }
}
