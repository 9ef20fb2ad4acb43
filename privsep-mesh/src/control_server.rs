//! The control process's clients (feature `tokio`): relayd's and bgpd's `control.c`
//! (`control_listen`, `control_accept`, `control_dispatch_imsg`, `control_close`).
//!
//! A [`ControlServer`] lives in the control process (run with
//! [`crate::ProcSpec::tokio`]). [`ControlServer::listen`] starts accepting on a
//! [`ControlSocket`](crate::control_socket::ControlSocket)'s listener, which was bound
//! before chroot and privilege drop. Every client is an imsg channel with a numeric
//! id. Each request goes to the application's [`Route`] function together with the
//! client's id, its credentials (`SO_PEERCRED`) and the kind of socket it came
//! through; the function forwards it into the mesh (peer id = client id, as
//! control.c does), answers it at once, or refuses it. Requests a restricted socket
//! does not allow are refused before the function sees them, with a
//! [`REFUSED`] frame. Replies that other processes
//! send back arrive in the control process's handler with the client id as peer id,
//! which hands them to [`ControlServer::reply`].
//!
//! Bounds, so that no client can take the daemon down:
//! - a request frame above [`ControlSettings::max_frame`] or malformed ends that
//!   client (logged); everyone else is served;
//! - replies wait in a per-client queue of [`ControlSettings::max_queued`]; a client
//!   that does not read them (queue full, or one write blocked for
//!   [`ControlSettings::write_timeout`]) is disconnected and logged;
//! - accepting pauses while descriptors run low (`EMFILE`/`ENFILE`, or fewer than
//!   [`ControlSettings::fd_reserve`] left under `RLIMIT_NOFILE`) and resumes when a
//!   client leaves or after [`ACCEPT_BACKOFF`] (control.c's accept back-off).

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imsg_io::{AsyncChannel, Channel, Config};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};

use crate::control_socket::{peer_credentials, Access, Credentials, REFUSED};
use crate::outbox::Outbox;
use crate::route::ProcId;
use crate::route::Target;

/// How long accepting pauses after `EMFILE`/`ENFILE` unless a client leaves first.
pub const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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
    /// Longest a reply may wait for a client to read before it is disconnected.
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
pub type Route = Arc<dyn Fn(&Request<'_>) -> Decision + Send + Sync>;

struct Reply {
    ty: u32,
    payload: Vec<u8>,
}

struct Shared {
    settings: ControlSettings,
    clients: Mutex<HashMap<u32, mpsc::Sender<Reply>>>,
    next_id: AtomicU32,
    left: Notify,
}

/// The control process's client table; cheap to clone (shared).
///
/// ```no_run
/// # use std::sync::Arc;
/// use privsep_mesh::control_server::{ControlServer, ControlSettings, Decision};
/// use privsep_mesh::control_socket::Access;
/// use privsep_mesh::{ProcId, Target};
/// # fn f(listener: std::os::unix::net::UnixListener, outbox: privsep_mesh::tokio_run::Outbox) -> std::io::Result<()> {
/// const SHOW: u32 = 1;
/// let mut settings = ControlSettings::default();
/// settings.unprivileged = vec![SHOW];
/// let server = ControlServer::new(settings);
/// server.listen(listener, Access::Main, outbox, Arc::new(|_req| Decision::Forward(ProcId::PARENT, Target::All)))?;
/// // later, in the handler's dispatch: server.reply(msg.peerid(), msg.msg_type(), msg.payload());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ControlServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("clients", &self.clients())
            .finish()
    }
}

impl ControlServer {
    /// A server with no clients.
    pub fn new(settings: ControlSettings) -> ControlServer {
        ControlServer {
            shared: Arc::new(Shared {
                settings,
                clients: Mutex::new(HashMap::new()),
                next_id: AtomicU32::new(1),
                left: Notify::new(),
            }),
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.shared.clients.lock().map_or(0, |c| c.len())
    }

    /// Starts accepting on `listener` (control.c's `control_listen`); must be called
    /// inside the tokio runtime of the process's loop.
    pub fn listen(
        &self,
        listener: StdUnixListener,
        access: Access,
        outbox: Outbox,
        route: Route,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let me = self.clone();
        tokio::spawn(async move { me.accept_loop(listener, access, outbox, route).await });
        Ok(())
    }

    /// Queues a reply for client `client` (from a message whose peer id named it).
    /// Returns `false` if the client is gone; a client whose reply queue is full is
    /// disconnected (logged) and `false` returned.
    pub fn reply(&self, client: u32, ty: u32, payload: &[u8]) -> bool {
        let Ok(mut clients) = self.shared.clients.lock() else {
            return false;
        };
        let Some(tx) = clients.get(&client) else {
            return false;
        };
        match tx.try_send(Reply {
            ty,
            payload: payload.to_vec(),
        }) {
            Ok(()) => true,
            Err(_) => {
                log::warn!("control client {client} does not read its replies: disconnected");
                clients.remove(&client);
                self.shared.left.notify_one();
                false
            }
        }
    }

    async fn accept_loop(
        self,
        listener: tokio::net::UnixListener,
        access: Access,
        outbox: Outbox,
        route: Route,
    ) {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // The kernel hands out the lowest free number, so the new
                    // descriptor's number is about how many are open (BSD's
                    // getdtablecount, which Linux lacks; /proc is not in the chroot).
                    let fd = stream.as_raw_fd() as u64;
                    self.start_client(stream, access, outbox.clone(), route.clone());
                    if fd + self.shared.settings.fd_reserve >= limit {
                        log::warn!("control: descriptors low ({fd} of {limit}): accept paused");
                        self.pause().await;
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::warn!("control: accept: {e}: accept paused");
                    self.pause().await;
                }
                Err(e) => {
                    log::warn!("control: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn pause(&self) {
        let _ = tokio::time::timeout(ACCEPT_BACKOFF, self.shared.left.notified()).await;
    }

    fn start_client(&self, stream: UnixStream, access: Access, outbox: Outbox, route: Route) {
        let credentials = match peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("control: SO_PEERCRED: {e}");
                return;
            }
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.shared.settings.max_queued.max(1));
        if let Ok(mut c) = self.shared.clients.lock() {
            c.insert(id, tx);
        }
        log::debug!(
            "control client {id} connected on the {access} socket: pid {} uid {}",
            credentials.pid,
            credentials.uid
        );
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(why) = me
                .serve(id, stream, credentials, access, outbox, route, rx)
                .await
            {
                log::warn!(
                    "control client {id} (pid {}): {why}: disconnected",
                    credentials.pid
                );
            } else {
                log::debug!("control client {id} left");
            }
            if let Ok(mut c) = me.shared.clients.lock() {
                c.remove(&id);
            }
            me.shared.left.notify_one();
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        id: u32,
        stream: UnixStream,
        credentials: Credentials,
        access: Access,
        outbox: Outbox,
        route: Route,
        mut replies: mpsc::Receiver<Reply>,
    ) -> Result<(), String> {
        let s = &self.shared.settings;
        let std = stream.into_std().map_err(|e| e.to_string())?;
        let cfg = Config::default()
            .with_max_frame(s.max_frame)
            .map_err(|e| e.to_string())?;
        let ch = Channel::new(std, cfg).map_err(|e| e.to_string())?;
        let mut ch = AsyncChannel::new(ch).map_err(|e| e.to_string())?;
        let pid = std::process::id() as i32;
        loop {
            let reply = tokio::select! {
                msg = ch.recv() => {
                    let Some(msg) = msg.map_err(|e| e.to_string())? else {
                        return Ok(());
                    };
                    let req = Request {
                        client: id,
                        credentials,
                        access,
                        ty: msg.msg_type(),
                        payload: msg.payload(),
                    };
                    let decision = if access.permits(req.ty, &s.unprivileged) {
                        route(&req)
                    } else {
                        Decision::Refuse(format!("not allowed on the {access} socket"))
                    };
                    match decision {
                        Decision::Forward(to, target) => {
                            outbox
                                .compose(to, target, req.ty, id, req.payload)
                                .map_err(|e| e.to_string())?;
                            continue;
                        }
                        Decision::Reply(ty, payload) => Reply { ty, payload },
                        Decision::Refuse(why) => {
                            log::info!("control client {id} (uid {}): type {} refused: {why}", credentials.uid, req.ty);
                            Reply { ty: REFUSED, payload: why.into_bytes() }
                        }
                    }
                }
                r = replies.recv() => match r {
                    Some(r) => r,
                    None => return Err("reply queue overflowed".into()),
                },
            };
            let send = ch.send(reply.ty, id, pid, None, &reply.payload);
            match tokio::time::timeout(s.write_timeout, send).await {
                Ok(r) => r.map_err(|e| e.to_string())?,
                Err(_) => return Err("does not read its replies".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use imsg_io::ReadStatus;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;
    use crate::control_socket::ControlSocket;
    use crate::outbox::Outgoing;

    const SHOW: u32 = 1;
    const STOP: u32 = 2;
    const ROW: u32 = 3;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn sock_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("csrv-{name}-{}.sock", std::process::id()))
    }

    /// A server listening on a fresh socket of kind `access`, forwarding everything
    /// to the parent; the outbox's other end.
    fn serve(
        name: &str,
        access: Access,
        settings: ControlSettings,
    ) -> (ControlServer, ControlSocket, UnboundedReceiver<Outgoing>) {
        let sock = ControlSocket::bind(&sock_path(name), access).unwrap();
        let (tx, rx) = unbounded_channel();
        let server = ControlServer::new(settings);
        let l = sock.listener().try_clone().unwrap();
        server
            .listen(
                l,
                access,
                Outbox::new(tx, None),
                Arc::new(|_| Decision::Forward(ProcId::PARENT, Target::All)),
            )
            .unwrap();
        (server, sock, rx)
    }

    /// A blocking client: sends `ty`, returns the first reply (type, payload).
    fn client(path: PathBuf, ty: u32) -> std::thread::JoinHandle<(u32, Vec<u8>)> {
        std::thread::spawn(move || {
            let s = std::os::unix::net::UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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

    #[test]
    fn forwarded_with_the_client_id_and_answered_by_it() {
        let rt = runtime();
        rt.block_on(async {
            let (server, sock, mut rx) = serve("fwd", Access::Main, ControlSettings::default());
            let c = client(sock.path().to_path_buf(), SHOW);
            let m = rx.recv().await.unwrap();
            assert_eq!((m.to, m.target, m.ty), (ProcId::PARENT, Target::All, SHOW));
            assert!(!server.reply(m.peerid + 1, ROW, b"not yours"));
            assert!(server.reply(m.peerid, ROW, b"yours"));
            while !c.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(c.join().unwrap(), (ROW, b"yours".to_vec()));
        });
    }

    #[test]
    fn restricted_socket_refuses_with_a_frame() {
        let rt = runtime();
        rt.block_on(async {
            let settings = ControlSettings {
                unprivileged: vec![SHOW],
                ..ControlSettings::default()
            };
            let (_server, sock, mut rx) = serve("restricted", Access::Restricted, settings);
            let c = client(sock.path().to_path_buf(), STOP);
            while !c.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (ty, why) = c.join().unwrap();
            assert_eq!(ty, REFUSED);
            assert_eq!(why, b"not allowed on the restricted socket");
            assert!(rx.try_recv().is_err(), "nothing forwarded");
            // An allowed type goes through.
            let _c = client(sock.path().to_path_buf(), SHOW);
            assert_eq!(rx.recv().await.unwrap().ty, SHOW);
        });
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let rt = runtime();
        rt.block_on(async {
            let settings = ControlSettings {
                max_queued: 4,
                write_timeout: Duration::from_millis(200),
                ..ControlSettings::default()
            };
            let (server, sock, mut rx) = serve("mute", Access::Main, settings);
            let s = std::os::unix::net::UnixStream::connect(sock.path()).unwrap();
            let mut ch = Channel::new(s, Config::default()).unwrap();
            ch.compose(SHOW, 0, 0, None, b"").unwrap();
            ch.flush().unwrap();
            let id = rx.recv().await.unwrap().peerid;
            let big = vec![0u8; 4000];
            let mut sent = 0;
            let end = std::time::Instant::now() + Duration::from_secs(20);
            while server.reply(id, ROW, &big) {
                sent += 1;
                assert!(std::time::Instant::now() < end, "never dropped");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(sent > 4, "the socket buffer took some first: {sent}");
            while server.clients() > 0 {
                assert!(std::time::Instant::now() < end, "client still listed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(ch);
        });
    }
}
