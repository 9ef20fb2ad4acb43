//! OpenBSD-style privilege-separated process meshes (httpd's `proc.c`) over imsg.
//!
//! A daemon is one [`ProcTable`]: a parent (process 0, one instance) and child
//! processes, each with a title, a number of instances, an optional chroot and user:
//! plain data. Each process kind's behaviour is a [`Handler`], built by the start
//! function given to [`Privsep::with_start`]. The application's `main` is one
//! expression:
//!
//! ```no_run
//! # use privsep_mesh::{ProcTable, ProcSpec, ProcId, NullHandler};
//! # fn table() -> ProcTable { ProcTable::new("d").with_proc(ProcSpec::new(ProcId::PARENT, "parent")) }
//! fn main() -> std::process::ExitCode {
//!     privsep_mesh::Privsep::new(table())
//!         .with_start(ProcId::PARENT, |_me| Ok(NullHandler))
//!         .run()
//! }
//! ```
//!
//! What happens, as in proc.c:
//!
//! 1. **Start-up** (module `startup`): the parent makes a socketpair per child instance and
//!    re-executes its own binary (`/proc/self/exe`) with `-P <title> -I <instance>`
//!    before the original arguments ([`args`]) and the child's end on descriptor 3.
//! 2. **Mesh**: for every pair of child instances the [`policy`] allows (default: no
//!    process talks to another instance of itself), the parent makes a socketpair and
//!    sends each end to its owner in a `PROCFD` message ([`control`]), flushing as it
//!    goes. A child refuses a duplicate or unexpected `PROCFD` (warning, descriptor
//!    closed).
//! 3. **Readiness barrier** (module `readiness`): each child acknowledges once all its
//!    channels are attached; when all have, the parent calls its [`Handler::ready`]
//!    and tells every child, whose `ready` runs too — exactly once per process.
//! 4. **Privilege drop** ([`privdrop`]) in each child when run as root: chroot,
//!    `chdir("/")`, setgroups/setresgid/setresuid, then a check that root cannot be
//!    regained.
//! 5. **Event loop** (module `event_loop`): one body, waiting with `poll(2)` over the
//!    channels and a signal self-pipe, or with tokio; messages go to the [`Handler`] with a [`Context`] that routes to
//!    (process, [`Target`]). End of file on any channel ends the process;
//!    the parent then closes everything, and reaps every child (module `reap`), logging
//!    abnormal ends as proc.c does.
//!
//! With the `tokio` feature, a process marked [`ProcSpec::with_tokio`] runs the same loop
//! body in a current-thread tokio runtime, its channels driven by imsg-io's
//! `AsyncChannel`, so its handler can spawn tasks.
//!
//! For a real daemon (OpenBSD's control.c and log.c): a process the table marks with
//! [`ProcSpec::with_control_socket`] is the control process (proc.c's `PROC_CONTROL`): its
//! instance 0 creates the [`control_socket`]s before its chroot and privilege drop
//! (`control_init`: stale-socket check, modes 0660/0666) and listens after it
//! (`control_listen`); a [`control_server::ControlServer`] accepts their clients on
//! the process's own loop (peer credentials, what a restricted socket allows, bounded
//! replies, accept back-off); [`syslog_log`] logs to syslog from inside a chroot, and
//! [`daemon`] detaches (`daemon(3)`). The `httpd` and `httpctl` examples put them
//! together.
//!
//! The dispatch path never exits: protocol errors are
//! [`Error::Protocol`] values, which the event loop turns into a log line and a
//! non-zero exit.
#![deny(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`) labels every feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod args;
#[cfg(test)]
mod child_test;
pub mod control;
pub mod control_server;
pub mod control_socket;
pub mod daemon;
pub mod error;
mod event_loop;
mod fuzzing;
mod handler;
mod link;
mod mesh;
#[cfg(feature = "tokio")]
mod outbox;
pub mod policy;
pub mod privdrop;
mod readiness;
mod reap;
mod route;
mod run;
mod signals;
mod startup;
pub mod stderr_log;
mod sys;
pub mod syslog_log;
mod table;
mod timer;
#[cfg(feature = "tokio")]
mod tokio_run;
mod watch;

pub use error::{AppError, Error, ProtocolError};
pub use handler::{Context, Handled, Handler, NullHandler, Received, NO_PEERID};
pub use mesh::Counts;
#[cfg(feature = "tokio")]
pub use outbox::{Outbox, OutboxError};
pub use policy::Policy;
pub use route::{Identity, Peer, ProcId, Target, MAX_INSTANCES};
pub use run::Privsep;
pub use signals::Signal;
pub use table::{
    ProcSpec, ProcTable, QueueKind, OUTBOX_LIMIT, PARENT_QUEUE_LIMIT, PEER_QUEUE_LIMIT,
};
pub use timer::Timer;
pub use watch::{Ready, Watch};

/// Not part of the API (hidden from the docs, may change in any release): the
/// dispatch path, for this crate's integration tests and its fuzz target.
#[doc(hidden)]
pub mod internal {
    pub use crate::fuzzing::check_dispatch;
    pub use crate::mesh::{Flow, Mesh};
}
