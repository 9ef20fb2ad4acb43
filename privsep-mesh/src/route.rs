//! Routing: which instances of a process a message goes to (proc.c's `proc_range`),
//! and how the sender's instance rides in the header's pid field.
//!
//! Pure functions: no process, no socket. The identity types ([`ProcId`],
//! [`Peer`], [`Target`], [`Identity`]) live here, a leaf that imports nothing of
//! the crate.

use core::fmt;
use core::ops::Range;

/// Most instances one process may have (proc.c's `PROC_MAX_INSTANCES`).
pub const MAX_INSTANCES: u32 = 32;

/// A process id: the index of a process type in the table. The parent is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId(pub u32);

impl ProcId {
    /// The parent process.
    pub const PARENT: ProcId = ProcId(0);
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The daemon's name ([`crate::ProcTable::new`]).
    pub daemon: String,
    /// Process id and instance.
    pub peer: Peer,
    /// The process title.
    pub title: String,
    /// The operating system's process id.
    pub pid: u32,
}

impl Identity {
    /// `title[instance]`, the form used in log lines.
    pub fn name(&self) -> String {
        format!("{}[{}]", self.title, self.peer.instance)
    }
}

/// Which instances of a process a message is for.
///
/// proc.c passes an `int n` where `-1` means "every instance"; here that is a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every instance of the process (proc.c's `n = -1`).
    All,
    /// One instance, counted from 0.
    Instance(u32),
}

impl Target {
    /// proc.c's convention: `-1` is every instance, any other non-negative number one
    /// instance; other negative numbers are not a target.
    ///
    /// ```
    /// use privsep_mesh::Target;
    /// assert_eq!(Target::from_c(-1), Some(Target::All));
    /// assert_eq!(Target::from_c(2), Some(Target::Instance(2)));
    /// assert_eq!(Target::from_c(-2), None);
    /// ```
    pub fn from_c(n: i32) -> Option<Target> {
        match n {
            -1 => Some(Target::All),
            n if n >= 0 => Some(Target::Instance(n as u32)),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Instance(n) => write!(f, "{n}"),
        }
    }
}

/// A target instance that the process does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteError {
    /// The instance asked for.
    pub instance: u32,
    /// How many instances the process has.
    pub instances: u32,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "instance {} out of range (the process has {})",
            self.instance, self.instances
        )
    }
}

impl std::error::Error for RouteError {}

/// The instances `target` covers in a process that has `instances` of them
/// (proc.c's `proc_range`): `All` is `0..instances`, `Instance(n)` is `n..n + 1`.
///
/// Unlike proc.c, an instance that does not exist is an error instead of an empty or
/// out-of-bounds range.
pub fn range(target: Target, instances: u32) -> Result<Range<u32>, RouteError> {
    match target {
        Target::All => Ok(0..instances),
        Target::Instance(n) if n < instances => Ok(n..n + 1),
        Target::Instance(instance) => Err(RouteError {
            instance,
            instances,
        }),
    }
}

/// The header pid field a sender with this instance number writes: instance + 1, as
/// proc.c does (`ps_instance + 1`), so that 0 never appears on the mesh.
pub fn pid_for_instance(instance: u32) -> i32 {
    // Instances are bounded by MAX_INSTANCES (32), far from overflow.
    instance as i32 + 1
}

/// The sender's instance read back from a header pid field written by
/// [`pid_for_instance`]; `None` for 0 or a negative pid.
pub fn instance_from_pid(pid: i32) -> Option<u32> {
    if pid >= 1 {
        Some(pid as u32 - 1)
    } else {
        None
    }
}

/// A process and one of its instances: one end of a channel in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    /// The process.
    pub proc: ProcId,
    /// The instance, counted from 0.
    pub instance: u32,
}

impl Peer {
    /// The parent process (id 0, its only instance).
    pub const PARENT: Peer = Peer {
        proc: ProcId::PARENT,
        instance: 0,
    };

    /// `proc`'s instance `instance`.
    pub const fn new(proc: ProcId, instance: u32) -> Peer {
        Peer { proc, instance }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.proc, self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_field_is_instance_plus_one() {
        assert_eq!(pid_for_instance(0), 1);
        assert_eq!(instance_from_pid(pid_for_instance(7)), Some(7));
        assert_eq!(instance_from_pid(0), None);
    }

    #[test]
    fn target_ranges() {
        assert_eq!(range(Target::All, 3).unwrap(), 0..3);
        assert_eq!(range(Target::Instance(1), 3).unwrap(), 1..2);
        assert!(range(Target::Instance(3), 3).is_err());
    }

    #[test]
    fn all_covers_every_instance() {
        assert_eq!(range(Target::All, 0).unwrap(), 0..0);
        assert_eq!(range(Target::All, 1).unwrap(), 0..1);
        assert_eq!(range(Target::All, 32).unwrap(), 0..32);
    }

    #[test]
    fn one_instance() {
        for n in 0..5 {
            assert_eq!(range(Target::Instance(n), 5).unwrap(), n..n + 1);
        }
        assert_eq!(
            range(Target::Instance(5), 5),
            Err(RouteError {
                instance: 5,
                instances: 5
            })
        );
        assert!(range(Target::Instance(0), 0).is_err());
        assert!(range(Target::Instance(u32::MAX), 5).is_err());
    }

    #[test]
    fn pid_round_trip() {
        for i in 0..32 {
            assert_eq!(instance_from_pid(pid_for_instance(i)), Some(i));
        }
        assert_eq!(instance_from_pid(-1), None);
        assert_eq!(instance_from_pid(i32::MIN), None);
    }

    #[test]
    fn c_convention() {
        assert_eq!(Target::from_c(0), Some(Target::Instance(0)));
        assert_eq!(
            Target::from_c(i32::MAX),
            Some(Target::Instance(i32::MAX as u32))
        );
        assert_eq!(Target::from_c(i32::MIN), None);
    }
}
