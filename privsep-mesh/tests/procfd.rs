//! A child's side of the mesh hand-out, driven by a fake parent over a real
//! socketpair with real descriptors: duplicate and unexpected `PROCFD` are refused
//! and their descriptors closed; the barrier refuses an incomplete mesh; `ready`
//! runs once, after the parent's `READY`, and nothing is dispatched before it.
//! One test in this file, so that descriptor counts are exact.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use imsg_io::{Channel, Config, ReadStatus};
use privsep_mesh::control::{self, encode_layout, encode_procfd};
use privsep_mesh::internal::{Flow, Mesh};
use privsep_mesh::{
    AppError, Context, Error, Handled, Handler, Identity, Peer, ProcId, ProcSpec, ProcTable,
    ProtocolError, Received,
};

const A: ProcId = ProcId(1);
const B: ProcId = ProcId(2);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

fn table() -> ProcTable {
    ProcTable::new("t")
        .with_proc(ProcSpec::new(ProcId::PARENT, "parent"))
        .with_proc(ProcSpec::new(A, "alpha"))
        .with_proc(ProcSpec::new(B, "beta").with_instances(2))
}

#[derive(Default)]
struct Count {
    ready: u32,
    got: u32,
}

impl Handler for Count {
    fn ready(&mut self, _: &mut Context<'_>) -> Result<(), AppError> {
        self.ready += 1;
        Ok(())
    }
    fn dispatch(&mut self, _: &mut Context<'_>, _: &mut Received) -> Result<Handled, AppError> {
        self.got += 1;
        Ok(Handled::Yes)
    }
}

fn child_mesh(t: &ProcTable) -> (Mesh, Channel) {
    let me = Identity {
        daemon: "t".into(),
        peer: Peer::new(A, 0),
        title: "alpha".into(),
        pid: std::process::id(),
    };
    let mut mesh = Mesh::new(t, me).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    mesh.attach(Peer::PARENT, ours.into()).unwrap();
    let cfg = Config::default()
        .with_dialect(t.dialect())
        .with_fdpass(true);
    (mesh, Channel::new(theirs, cfg).unwrap())
}

fn procfd(parent: &mut Channel, about: Peer, fd: Option<OwnedFd>) {
    parent
        .compose(control::PROCFD, u32::MAX, 1, fd, &encode_procfd(about))
        .unwrap();
}

/// The parent's `PROCREADY`: every channel handed out, with `t`'s layout.
fn procready(parent: &mut Channel, t: &ProcTable) {
    parent
        .compose(
            control::PROCREADY,
            u32::MAX,
            1,
            None,
            &encode_layout(&t.layout()),
        )
        .unwrap();
}

fn sock() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b.into())
}

fn pump(mesh: &mut Mesh, parent: &mut Channel, h: &mut Count) -> Result<Flow, Error> {
    parent.flush().unwrap();
    let mut last = Ok(Flow::Continue);
    // Read until the socket is drained (the mesh reads once per call).
    for _ in 0..16 {
        last = mesh.receive(Peer::PARENT, h);
        if !matches!(last, Ok(Flow::Continue)) {
            break;
        }
    }
    last
}

#[test]
fn procfd_refusals_barrier_and_ready() {
    let baseline = open_fds();
    let t = table();
    let (b0, b1) = (Peer::new(B, 0), Peer::new(B, 1));

    // --- refusals close the descriptor; the accepted one becomes a channel.
    {
        let (mut mesh, mut parent) = child_mesh(&t);
        let mut h = Count::default();
        let (keep0, give0) = sock();
        let (_keep_dup, give_dup) = sock();
        let (_keep_x, give_x) = sock();
        let (_keep_self, give_self) = sock();
        let before = open_fds();
        procfd(&mut parent, b0, Some(give0));
        procfd(&mut parent, b0, Some(give_dup)); // duplicate
        procfd(&mut parent, Peer::new(ProcId(9), 0), Some(give_x)); // no such process
        procfd(&mut parent, Peer::new(A, 0), Some(give_self)); // itself
        assert!(matches!(
            pump(&mut mesh, &mut parent, &mut h),
            Ok(Flow::Continue)
        ));
        assert_eq!(mesh.peers(), vec![Peer::PARENT, b0]);
        // 4 sent (closed here once written), 1 kept by the mesh, 3 refused and closed.
        assert_eq!(open_fds(), before - 4 + 1);

        // An application message before READY is a protocol error.
        parent.compose(7, 0, 1, None, b"early").unwrap();
        match pump(&mut mesh, &mut parent, &mut h) {
            Err(Error::Protocol {
                error: ProtocolError::BeforeReady { ty: 7 },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }

        // The parent says it is done, but beta[1] never came.
        let (mut mesh2, mut parent2) = child_mesh(&t);
        let (_k, g) = sock();
        procfd(&mut parent2, b0, Some(g));
        procready(&mut parent2, &t);
        match pump(&mut mesh2, &mut parent2, &mut h) {
            Err(Error::Protocol {
                error: ProtocolError::MeshIncomplete { missing },
                ..
            }) => assert_eq!(missing, vec![b1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.ready, 0);
        drop(keep0);
    }

    // --- the complete hand-out: ack, then READY, then ready() exactly once.
    {
        let (mut mesh, mut parent) = child_mesh(&t);
        let mut h = Count::default();
        let (mut peer0, g0) = sock();
        let (_peer1, g1) = sock();
        procfd(&mut parent, b0, Some(g0));
        procfd(&mut parent, b1, Some(g1));
        procready(&mut parent, &t);
        assert!(matches!(
            pump(&mut mesh, &mut parent, &mut h),
            Ok(Flow::Continue)
        ));
        assert_eq!(h.ready, 0, "ready before the parent's READY");
        // The child acknowledged: the fake parent reads its PROCREADY.
        while mesh.interest().iter().any(|&(_, _, w)| w) {
            mesh.write(Peer::PARENT).unwrap();
        }
        assert!(matches!(parent.read().unwrap(), ReadStatus::Read(_)));
        let ack = parent.get_owned().unwrap().expect("ack");
        assert_eq!(ack.msg_type(), control::PROCREADY);
        assert_eq!(ack.pid(), 1, "pid field = sender instance + 1");

        parent
            .compose(control::READY, u32::MAX, 1, None, b"")
            .unwrap();
        assert!(matches!(
            pump(&mut mesh, &mut parent, &mut h),
            Ok(Flow::Continue)
        ));
        assert_eq!(h.ready, 1);

        // beta[0] can now talk to alpha[0] over the handed-out channel.
        let cfg = Config::default().with_dialect(t.dialect());
        let mut beta = Channel::new(std::mem::replace(&mut peer0, sock().0), cfg).unwrap();
        beta.compose(7, 0, 1, None, b"hi").unwrap();
        beta.flush().unwrap();
        assert!(matches!(mesh.receive(b0, &mut h), Ok(Flow::Continue)));
        assert_eq!(h.got, 1);
        assert_eq!(mesh.counts()[&b0].received, 1);

        // A second READY is refused.
        parent
            .compose(control::READY, u32::MAX, 1, None, b"")
            .unwrap();
        match pump(&mut mesh, &mut parent, &mut h) {
            Err(Error::Protocol {
                error: ProtocolError::Repeated { .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(h.ready, 1);
        drop(beta);
        // End of file from beta[0] ends the loop, as proc.c's dispatch does.
        assert!(matches!(mesh.receive(b0, &mut h), Ok(Flow::Closed(p)) if p == b0));
    }

    assert_eq!(open_fds(), baseline, "descriptors leaked");
}
