//! The oracle of the `mesh_dispatch` fuzz target: arbitrary bytes arriving on a mesh
//! channel go through the real read and dispatch path ([`Mesh::receive`]), and
//! nothing may panic. `tests/fuzz_seeds.rs` replays the committed seeds through it.
//!
//! Input: the first byte picks the role (even: the child `worker[0]` reading from
//! the parent; odd: the parent reading from `worker[0]`); the rest is the byte
//! stream the peer sends, in the current imsg dialect, followed by end of file.
//!
//! Checked besides "no panic": every outcome is a value ([`Flow`] or a typed
//! [`Error`]); the handler's `ready` runs at most once, and never after an
//! application message was dispatched without it; the process never gains a channel
//! the policy does not give it.

use std::os::fd::OwnedFd;

use crate::error::Error;
use crate::handler::Context;
use crate::handler::{AppError, Handled, Handler, Identity, Received};
use crate::mesh::{Flow, Mesh};
use crate::route::ProcId;
use crate::route::{Peer, Target};
use crate::table::{ProcSpec, ProcTable};

/// The worker process of the fuzzing table.
pub const WORKER: ProcId = ProcId(1);

/// The table the oracle runs in: a parent and one `worker`.
pub fn table() -> ProcTable {
    ProcTable::new("fuzz")
        .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
        .with_proc(ProcSpec::new(WORKER, "worker"))
}

#[derive(Default)]
struct Probe {
    ready: u32,
    dispatched: u32,
}

impl Handler for Probe {
    fn ready(&mut self, _ctx: &mut Context<'_>) -> Result<(), AppError> {
        self.ready += 1;
        assert_eq!(self.ready, 1, "ready called twice");
        assert_eq!(self.dispatched, 0, "dispatch before ready");
        Ok(())
    }

    fn dispatch(&mut self, ctx: &mut Context<'_>, msg: &mut Received) -> Result<Handled, AppError> {
        assert_eq!(self.ready, 1, "dispatch without ready");
        self.dispatched += 1;
        match msg.msg_type() {
            // Echo back: exercises the send path from inside dispatch.
            1 => {
                let from = msg.from();
                ctx.compose(
                    from.proc,
                    Target::Instance(from.instance),
                    2,
                    msg.peerid(),
                    msg.payload(),
                )?;
                Ok(Handled::Yes)
            }
            2 => {
                let from = msg.from();
                ctx.forward(msg, from.proc, Target::All)?;
                Ok(Handled::Yes)
            }
            3 => Err("application error".into()),
            4 => {
                ctx.shutdown();
                Ok(Handled::Yes)
            }
            t if t < 16 => Ok(Handled::Yes),
            _ => Ok(Handled::No),
        }
    }
}

fn pair() -> Option<(OwnedFd, OwnedFd)> {
    crate::sys::stream_pair_cloexec_nonblock().ok()
}

/// Runs one input; returns how the receiving side ended (for seed tests).
pub fn check_dispatch(data: &[u8]) -> Result<Flow, Error> {
    let (role, stream) = match data.split_first() {
        Some((r, s)) => (*r, s),
        None => (0, data),
    };
    // The table is plain data, the same for every input: built once.
    static TABLE: std::sync::OnceLock<ProcTable> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(table);
    let (me, from) = if role % 2 == 0 {
        (Peer::new(WORKER, 0), Peer::PARENT)
    } else {
        (Peer::PARENT, Peer::new(WORKER, 0))
    };
    let identity = Identity {
        daemon: "fuzz".into(),
        peer: me,
        title: t.get(me.proc).map_or("?", |p| p.title()).into(),
        pid: std::process::id(),
    };
    let mut mesh = Mesh::new(t, identity).expect("the fuzzing table is valid");
    let Some((ours, theirs)) = pair() else {
        return Ok(Flow::Continue); // out of descriptors: nothing to test
    };
    mesh.attach(from, ours)?;
    let mut probe = Probe::default();
    let mut sent = 0;
    let mut writer = Some(theirs);
    let result = loop {
        if let Some(w) = &writer {
            if sent < stream.len() {
                match rustix::io::write(w, &stream[sent..]) {
                    Ok(n) => sent += n,
                    Err(rustix::io::Errno::AGAIN) => {}
                    Err(_) => sent = stream.len(),
                }
            }
            if sent >= stream.len() {
                writer = None; // end of file for the mesh
            }
        }
        match mesh.receive(from, &mut probe) {
            Ok(Flow::Continue) => continue,
            other => break other,
        }
    };
    assert!(probe.ready <= 1);
    for p in mesh.peers() {
        assert!(p == from, "gained a channel to {p}");
    }
    result
}
