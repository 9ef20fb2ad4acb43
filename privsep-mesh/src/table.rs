//! The process table: one [`ProcSpec`] per process of the daemon (proc.c's
//! `struct privsep_proc procs[]`), and the mesh-wide settings around them.
//!
//! Every process of the daemon builds the same table (from the same arguments): the
//! parent to know what to start and connect, each child to know who it is, what to
//! drop to and which channels to expect.

use core::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imsg_codec::{Dialect, MAX_IMSGSIZE};

use crate::control_socket::Access;
pub use crate::error::TableError;
use crate::policy::{self, Policy};
use crate::route::Peer;
use crate::route::{ProcId, MAX_INSTANCES};
use crate::signals::Signal;

/// Descriptors every process holds besides its channels: stdin, stdout, stderr.
pub const STDIO_FDS: usize = 3;

/// Descriptors the event loop holds besides the channels: the two ends of the signal
/// self-pipe (see [`crate::signals`]).
pub const LOOP_FDS: usize = 2;

/// Default high-water mark of the send queue on a channel between the parent and a
/// child, in each direction: 16 MiB. The parent pushes a whole configuration to its
/// children in one handler call (relayd's and bgpd's reloads send every table, rule
/// and prefix set before they return to their loop), and nothing is written until
/// the handler returns, so the whole push must fit: a few MiB for a large
/// configuration, with room to spare.
pub const PARENT_QUEUE_LIMIT: usize = 16 << 20;

/// Default high-water mark of the send queue on a channel between two children, in
/// each direction: 4 MiB. Children stream to each other (a routing table dump to
/// the control process, access-log lines to a logger), which a handler can pace
/// from a timer or resume when a send is refused; 4 MiB holds a burst of a few
/// hundred thousand small messages, or a full-frame message 256 times over
/// (16 KiB frames).
pub const PEER_QUEUE_LIMIT: usize = 4 << 20;

/// Default limit on the bytes a tokio-run process's tasks may have handed to its
/// outbox ([`Outbox`](crate::Outbox)) and the loop has not yet queued on a
/// channel: 4 MiB, as for a channel between children.
pub const OUTBOX_LIMIT: usize = 4 << 20;

/// The kinds of send queue whose high-water mark a table sets
/// ([`ProcTable::with_queue_limit`]).
///
/// What happens at the mark: an application send that would take a queue past it
/// (a message to several instances: any of their queues) is refused with
/// [`Error::Channel`](crate::Error::Channel) carrying
/// [`imsg_io::Error::QueueFull`] (see [`Error::is_queue_full`](crate::Error::is_queue_full)):
/// nothing was queued to anybody, and a descriptor given with the message is handed
/// back inside the error. An empty queue takes any one message. The mesh never drops
/// a message to make room; the application decides (retry from a timer, stop
/// reading its own clients, drop the peer). The framework's own messages (start-up
/// hand-out, readiness barrier, verbosity) are exempt: they are a few dozen bytes
/// each, sent once per start-up or per operator request, and refusing one would
/// break the mesh rather than push back.
///
/// Control clients of a `control_server::ControlServer` are bounded by its own
/// settings (replies waiting per client, write timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum QueueKind {
    /// A channel between the parent and a child (both ends); default
    /// [`PARENT_QUEUE_LIMIT`].
    ParentChild,
    /// A channel between two children (both ends); default [`PEER_QUEUE_LIMIT`].
    Peer,
    /// A tokio-run process's outbox: messages its tasks sent that the loop has not
    /// yet queued on a channel; default [`OUTBOX_LIMIT`]. At the mark,
    /// `Outbox::compose` refuses with `OutboxError::QueueFull` (module
    /// `tokio_run`).
    Outbox,
}

/// High-water marks of the send queues, per [`QueueKind`] (`None`: unbounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    pub(crate) parent_child: Option<usize>,
    pub(crate) peer: Option<usize>,
    pub(crate) outbox: Option<usize>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            parent_child: Some(PARENT_QUEUE_LIMIT),
            peer: Some(PEER_QUEUE_LIMIT),
            outbox: Some(OUTBOX_LIMIT),
        }
    }
}

impl QueueLimits {
    pub(crate) fn get(&self, kind: QueueKind) -> Option<usize> {
        match kind {
            QueueKind::ParentChild => self.parent_child,
            QueueKind::Peer => self.peer,
            QueueKind::Outbox => self.outbox,
        }
    }

    fn get_mut(&mut self, kind: QueueKind) -> &mut Option<usize> {
        match kind {
            QueueKind::ParentChild => &mut self.parent_child,
            QueueKind::Peer => &mut self.peer,
            QueueKind::Outbox => &mut self.outbox,
        }
    }

    /// The limit of the channel between `me` and `peer`.
    pub(crate) fn channel(&self, me: Peer, peer: Peer) -> Option<usize> {
        if me == Peer::PARENT || peer == Peer::PARENT {
            self.parent_child
        } else {
            self.peer
        }
    }
}

/// One process of the daemon: id, title, instances, privilege drop, loop kind. Its
/// behaviour (the handler) is given to [`Privsep::with_start`](crate::Privsep::with_start):
/// the table is plain data.
///
/// ```
/// use privsep_mesh::{ProcId, ProcSpec};
/// let server = ProcSpec::new(ProcId(1), "server").with_instances(3).with_user("nobody").with_chroot("/var/empty");
/// assert_eq!(server.title(), "server");
/// ```
#[derive(Clone, Debug)]
pub struct ProcSpec {
    id: ProcId,
    title: String,
    instances: u32,
    chroot: Option<PathBuf>,
    user: Option<String>,
    signals: Vec<Signal>,
    tokio: bool,
    control: Vec<(PathBuf, Access)>,
}

impl ProcSpec {
    /// A process with one instance, no privilege drop, in the `poll(2)` loop.
    pub fn new(id: ProcId, title: impl Into<String>) -> ProcSpec {
        ProcSpec {
            id,
            title: title.into(),
            instances: 1,
            chroot: None,
            user: None,
            signals: Vec::new(),
            tokio: false,
            control: Vec::new(),
        }
    }

    /// Sets the number of instances (httpd's `prefork`); the parent has exactly one.
    pub fn with_instances(mut self, n: u32) -> ProcSpec {
        self.instances = n;
        self
    }

    /// Chroot directory. Without it, a process with a [`user`](Self::with_user) chroots to
    /// the user's home directory, as proc.c does.
    pub fn with_chroot(mut self, dir: impl Into<PathBuf>) -> ProcSpec {
        self.chroot = Some(dir.into());
        self
    }

    /// The user the process drops to (when the daemon runs as root).
    pub fn with_user(mut self, name: impl Into<String>) -> ProcSpec {
        self.user = Some(name.into());
        self
    }

    /// Signals delivered to the handler's `signal` method instead of being ignored
    /// (SIGHUP, SIGUSR1, SIGUSR2) or shutting the process down (SIGTERM, SIGINT:
    /// listed here, the handler decides when to stop, with `Context::shutdown`; a
    /// parent can then stop its mesh in order).
    pub fn with_signals(mut self, signals: &[Signal]) -> ProcSpec {
        self.signals = signals.to_vec();
        self
    }

    /// Runs this process's channels in a current-thread tokio runtime instead of the
    /// built-in `poll(2)` loop, so that its handler can spawn tasks (see
    /// the crate's tokio loop).
    #[cfg(feature = "tokio")]
    pub fn with_tokio(mut self) -> ProcSpec {
        self.tokio = true;
        self
    }

    /// Marks this process as the control process (proc.c's `PROC_CONTROL`) and adds
    /// a control socket at `path`: [`Access::Main`] (root-owned, mode 0660) or
    /// [`Access::Restricted`] (0666). Instance 0 creates every socket itself before
    /// its chroot and privilege drop (`control_init`: a live socket is refused, a
    /// stale file replaced), listens after the drop (`control_listen`) and finds them
    /// with [`Context::control_sockets`](crate::Context::control_sockets); the
    /// parent removes the files at exit.
    ///
    /// ```
    /// use privsep_mesh::{control_socket::Access, ProcId, ProcSpec};
    /// let control = ProcSpec::new(ProcId(1), "control")
    ///     .with_control_socket("/run/d.sock", Access::Main)
    ///     .with_control_socket("/run/d-ro.sock", Access::Restricted);
    /// assert_eq!(control.control_sockets().len(), 2);
    /// ```
    pub fn with_control_socket(mut self, path: impl Into<PathBuf>, access: Access) -> ProcSpec {
        self.control.push((path.into(), access));
        self
    }

    /// The control sockets this process creates (none: not the control process).
    pub fn control_sockets(&self) -> &[(PathBuf, Access)] {
        &self.control
    }

    /// Whether the process runs in a tokio runtime.
    pub fn tokio(&self) -> bool {
        self.tokio
    }

    /// The process id.
    pub fn id(&self) -> ProcId {
        self.id
    }

    /// The title (`-P` argument, log prefix, process name).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The number of instances.
    pub fn instances(&self) -> u32 {
        self.instances
    }

    /// The configured chroot directory, if any.
    pub fn chroot(&self) -> Option<&Path> {
        self.chroot.as_deref()
    }

    /// The configured user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The signals the application handles.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }
}

/// The whole daemon: its processes, the connection policy, and channel settings.
///
/// ```
/// use privsep_mesh::{ProcId, ProcSpec, ProcTable, Peer};
/// const SERVER: ProcId = ProcId(1);
/// const LOGGER: ProcId = ProcId(2);
/// let table = ProcTable::new("httpd")
///     .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
///     .with_proc(ProcSpec::new(SERVER, "server").with_instances(3))
///     .with_proc(ProcSpec::new(LOGGER, "logger"));
/// table.validate().unwrap();
/// // A server talks to the parent and the logger; the logger to the parent and 3 servers.
/// assert_eq!(table.channels_of(Peer::new(SERVER, 0)).len(), 2);
/// assert_eq!(table.channels_of(Peer::new(LOGGER, 0)).len(), 4);
/// ```
pub struct ProcTable {
    name: String,
    procs: Vec<ProcSpec>,
    policy: Policy,
    dialect: Dialect,
    max_frame: usize,
    shutdown_grace: Duration,
    queue_limits: QueueLimits,
}

impl fmt::Debug for ProcTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcTable")
            .field("name", &self.name)
            .field("procs", &self.procs)
            .field("dialect", &self.dialect)
            .field("max_frame", &self.max_frame)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("queue_limits", &self.queue_limits)
            .finish_non_exhaustive()
    }
}

impl ProcTable {
    /// An empty table for the daemon called `name` (used in log lines). Add the
    /// parent (id 0) and the children with [`with_proc`](Self::with_proc).
    ///
    /// Defaults: policy [`policy::distinct_processes`], the current imsg dialect,
    /// frames up to 16384 bytes, 5 seconds for children to leave at shutdown, send
    /// queues bounded as [`QueueKind`] says.
    pub fn new(name: impl Into<String>) -> ProcTable {
        ProcTable {
            name: name.into(),
            procs: Vec::new(),
            policy: policy::distinct_processes,
            dialect: Dialect::Current,
            max_frame: MAX_IMSGSIZE,
            shutdown_grace: Duration::from_secs(5),
            queue_limits: QueueLimits::default(),
        }
    }

    /// Adds a process.
    pub fn with_proc(mut self, spec: ProcSpec) -> ProcTable {
        self.procs.push(spec);
        self
    }

    /// Replaces the connection policy.
    pub fn with_policy(mut self, policy: Policy) -> ProcTable {
        self.policy = policy;
        self
    }

    /// The imsg dialect of every channel of the mesh.
    pub fn with_dialect(mut self, dialect: Dialect) -> ProcTable {
        self.dialect = dialect;
        self
    }

    /// The largest frame (header included) on the mesh's channels.
    pub fn with_max_frame(mut self, total: usize) -> ProcTable {
        self.max_frame = total;
        self
    }

    /// How long the parent waits for its children to leave once it has closed their
    /// channels, before it kills the remaining ones with SIGKILL.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> ProcTable {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the high-water mark, in bytes, of every send queue of one kind
    /// (`None`: unbounded). What happens when it is reached is [`QueueKind`]'s to
    /// say.
    ///
    /// ```
    /// use privsep_mesh::{QueueKind, PARENT_QUEUE_LIMIT};
    /// use privsep_mesh::{ProcId, ProcSpec, ProcTable};
    /// // Room for a 64 MiB configuration push to the children.
    /// let t = ProcTable::new("bgpd")
    ///     .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
    ///     .with_queue_limit(QueueKind::ParentChild, Some(64 << 20));
    /// assert_eq!(t.queue_limit(QueueKind::ParentChild), Some(64 << 20));
    /// assert_ne!(PARENT_QUEUE_LIMIT, 64 << 20);
    /// ```
    pub fn with_queue_limit(mut self, kind: QueueKind, bytes: Option<usize>) -> ProcTable {
        *self.queue_limits.get_mut(kind) = bytes;
        self
    }

    /// The high-water mark of one kind of send queue.
    pub fn queue_limit(&self, kind: QueueKind) -> Option<usize> {
        self.queue_limits.get(kind)
    }

    pub(crate) fn queue_limits(&self) -> QueueLimits {
        self.queue_limits
    }

    /// Sets the instance count of a process at start-up (httpd's `prefork`).
    pub fn set_instances(&mut self, id: ProcId, n: u32) -> Result<(), TableError> {
        if !(1..=MAX_INSTANCES).contains(&n) || (id == ProcId::PARENT && n != 1) {
            return Err(TableError::BadInstances { id, instances: n });
        }
        let spec = self
            .procs
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or(TableError::UnknownProcess(id))?;
        spec.instances = n;
        Ok(())
    }

    /// Checks that the table describes a daemon.
    pub fn validate(&self) -> Result<(), TableError> {
        let parent = self.get(ProcId::PARENT).ok_or(TableError::NoParent)?;
        if parent.instances != 1
            || parent.user.is_some()
            || parent.chroot.is_some()
            || !parent.control.is_empty()
        {
            return Err(TableError::BadParent);
        }
        for (i, p) in self.procs.iter().enumerate() {
            let t = &p.title;
            if t.is_empty()
                || t.starts_with('-')
                || t.chars().any(|c| c == '\0' || c.is_whitespace())
            {
                return Err(TableError::BadTitle(t.clone()));
            }
            if !(1..=MAX_INSTANCES).contains(&p.instances) {
                return Err(TableError::BadInstances {
                    id: p.id,
                    instances: p.instances,
                });
            }
            for q in &self.procs[..i] {
                if q.id == p.id {
                    return Err(TableError::DuplicateId(p.id));
                }
                if q.title == p.title {
                    return Err(TableError::DuplicateTitle(t.clone()));
                }
            }
        }
        if !(imsg_codec::HEADER_SIZE..=self.dialect.max_frame_len()).contains(&self.max_frame) {
            return Err(TableError::BadMaxFrame(self.max_frame));
        }
        Ok(())
    }

    /// The daemon's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process with this id.
    pub fn get(&self, id: ProcId) -> Option<&ProcSpec> {
        self.procs.iter().find(|p| p.id == id)
    }

    /// The process with this title (proc.c's `proc_getid`).
    pub fn by_title(&self, title: &str) -> Option<&ProcSpec> {
        self.procs.iter().find(|p| p.title == title)
    }

    /// The processes, in the order they were added.
    pub fn procs(&self) -> impl Iterator<Item = &ProcSpec> {
        self.procs.iter()
    }

    /// Instances of `id` (0 for a process the table does not have).
    pub fn instances(&self, id: ProcId) -> u32 {
        self.get(id).map_or(0, |p| p.instances)
    }

    /// (id, instances) of every process, sorted by id: what the parent sends children
    /// to check that they built the same table.
    pub fn layout(&self) -> Vec<(ProcId, u32)> {
        let mut l: Vec<_> = self.procs.iter().map(|p| (p.id, p.instances)).collect();
        l.sort_unstable();
        l
    }

    /// The connection policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The channels' imsg dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The channels' frame size limit.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Every child instance, sorted.
    pub(crate) fn children(&self) -> Vec<Peer> {
        policy::channels_of(&self.layout(), self.policy, Peer::PARENT)
    }

    /// Every channel between children, each unordered pair once.
    pub fn mesh_pairs(&self) -> Vec<(Peer, Peer)> {
        policy::pairs(&self.layout(), self.policy)
    }

    /// The peers `me` has a channel to, sorted.
    pub fn channels_of(&self, me: Peer) -> Vec<Peer> {
        policy::channels_of(&self.layout(), self.policy, me)
    }

    /// How many descriptors `me` holds once the mesh is up: stdio, one per channel, and
    /// the event loop's self-pipe (nothing else belongs to the framework).
    pub fn predicted_fds(&self, me: Peer) -> usize {
        STDIO_FDS + self.channels_of(me).len() + LOOP_FDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: ProcId = ProcId(1);
    const LOGGER: ProcId = ProcId(2);

    fn httpd() -> ProcTable {
        ProcTable::new("httpd")
            .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
            .with_proc(ProcSpec::new(SERVER, "server").with_instances(3))
            .with_proc(ProcSpec::new(LOGGER, "logger"))
    }

    #[test]
    fn valid_httpd() {
        let t = httpd();
        t.validate().unwrap();
        assert_eq!(t.by_title("server").unwrap().id(), SERVER);
        assert!(t.by_title("nope").is_none());
        assert_eq!(t.children().len(), 4);
        assert_eq!(t.mesh_pairs().len(), 3);
        assert_eq!(t.predicted_fds(Peer::PARENT), 3 + 4 + 2);
        assert_eq!(t.predicted_fds(Peer::new(LOGGER, 0)), 3 + 4 + 2);
        assert_eq!(t.predicted_fds(Peer::new(SERVER, 2)), 3 + 2 + 2);
    }

    #[test]
    fn prefork() {
        let mut t = httpd();
        t.set_instances(SERVER, 5).unwrap();
        assert_eq!(t.instances(SERVER), 5);
        assert_eq!(t.mesh_pairs().len(), 5);
        assert!(t.set_instances(SERVER, 0).is_err());
        assert!(t.set_instances(SERVER, MAX_INSTANCES + 1).is_err());
        assert!(t.set_instances(ProcId::PARENT, 2).is_err());
        assert_eq!(
            t.set_instances(ProcId(9), 2),
            Err(TableError::UnknownProcess(ProcId(9)))
        );
    }

    #[test]
    fn invalid_tables() {
        let no_parent = ProcTable::new("x").with_proc(ProcSpec::new(SERVER, "server"));
        assert_eq!(no_parent.validate(), Err(TableError::NoParent));

        let t = httpd().with_proc(ProcSpec::new(SERVER, "other"));
        assert_eq!(t.validate(), Err(TableError::DuplicateId(SERVER)));

        let t = httpd().with_proc(ProcSpec::new(ProcId(3), "server"));
        assert_eq!(
            t.validate(),
            Err(TableError::DuplicateTitle("server".into()))
        );

        for bad in ["", "-P", "a b", "a\0b"] {
            let t = httpd().with_proc(ProcSpec::new(ProcId(3), bad));
            assert_eq!(t.validate(), Err(TableError::BadTitle(bad.into())));
        }

        let t = httpd().with_proc(ProcSpec::new(ProcId(3), "x").with_instances(0));
        assert!(matches!(t.validate(), Err(TableError::BadInstances { .. })));

        let t = ProcTable::new("x")
            .with_proc(ProcSpec::new(ProcId::PARENT, "parent").with_user("nobody"));
        assert_eq!(t.validate(), Err(TableError::BadParent));
        let t = ProcTable::new("x").with_proc(
            ProcSpec::new(ProcId::PARENT, "parent")
                .with_control_socket("/run/x.sock", Access::Main),
        );
        assert_eq!(t.validate(), Err(TableError::BadParent));

        assert_eq!(
            httpd().with_max_frame(15).validate(),
            Err(TableError::BadMaxFrame(15))
        );
        httpd().with_max_frame(16).validate().unwrap();
    }

    #[test]
    fn layout_is_sorted() {
        let t = ProcTable::new("x")
            .with_proc(ProcSpec::new(ProcId(2), "b").with_instances(2))
            .with_proc(ProcSpec::new(ProcId::PARENT, "p"))
            .with_proc(ProcSpec::new(ProcId(1), "a"));
        assert_eq!(
            t.layout(),
            vec![(ProcId(0), 1), (ProcId(1), 1), (ProcId(2), 2)]
        );
    }
}
