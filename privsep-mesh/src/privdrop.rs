//! Dropping privileges in a child, as proc.c's `proc_run` does, then proving it.
//!
//! Steps, in this order (each failure is an error; the process does not run on with
//! half its privileges):
//!
//! 1. look the user up (`getpwnam_r`) — before the chroot hides `/etc/passwd`;
//! 2. `chroot` to the process's directory, or to the user's home if none is given;
//! 3. `chdir("/")`;
//! 4. `setgroups(1, [gid])`, `setresgid(gid, gid, gid)`, `setresuid(uid, uid, uid)`;
//! 5. verify: `getresuid` and `getresgid` are all the user's, the supplementary groups
//!    are exactly `[gid]`, and `setuid(0)` and a `setgid` to a group the process
//!    does not hold (0, or 1 for a user whose group is 0) fail.
//!
//! The id changes go through the C library (`setgroups`, then `setresgid` and
//! `setresuid`, or `setgid` and `setuid` where those do not exist: macOS, NetBSD),
//! which applies them to every thread of the process (on Linux the raw system calls
//! change only the calling thread). Where the saved ids cannot be read back, the
//! check relies on `setuid(0)` failing.
//!
//! When the daemon does not run as root, nothing is dropped: the parent says so once.

use core::fmt;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A user to drop to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (the default chroot).
    pub home: PathBuf,
}

/// Why privileges could not be dropped.
#[derive(Debug)]
#[non_exhaustive]
pub enum PrivdropError {
    /// No such user.
    UnknownUser(String),
    /// The user database could not be read.
    Lookup(io::Error),
    /// `chroot` failed, or the directory could not be examined (a missing
    /// directory is this error: it is never created).
    Chroot(PathBuf, io::Error),
    /// A component of the chroot path (named here) is not a directory owned by
    /// root and writable by root alone, so the dropped process could change its
    /// own root; nothing was done.
    UnsafeChroot {
        /// The chroot directory asked for.
        root: PathBuf,
        /// The component that fails.
        component: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `chdir("/")` failed.
    Chdir(io::Error),
    /// `setgroups` failed.
    SetGroups(io::Error),
    /// `setresgid` failed.
    SetGid(io::Error),
    /// `setresuid` failed.
    SetUid(io::Error),
    /// After the drop, ids are not what they should be, or root could be regained.
    Verify(String),
}

impl fmt::Display for PrivdropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivdropError::UnknownUser(u) => write!(f, "unknown user {u}"),
            PrivdropError::Lookup(e) => write!(f, "user lookup: {e}"),
            PrivdropError::Chroot(d, e) => write!(f, "chroot {}: {e}", d.display()),
            PrivdropError::UnsafeChroot {
                root,
                component,
                why,
            } => write!(
                f,
                "unsafe chroot {}: {} {why}",
                root.display(),
                component.display()
            ),
            PrivdropError::Chdir(e) => write!(f, "chdir /: {e}"),
            PrivdropError::SetGroups(e) => write!(f, "setgroups: {e}"),
            PrivdropError::SetGid(e) => write!(f, "setresgid: {e}"),
            PrivdropError::SetUid(e) => write!(f, "setresuid: {e}"),
            PrivdropError::Verify(what) => write!(f, "verification failed: {what}"),
        }
    }
}

impl std::error::Error for PrivdropError {}

/// Whether this process runs with root's effective uid (privilege dropping is on).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Looks a user up by name.
pub fn lookup(name: &str) -> Result<User, PrivdropError> {
    let cname = CString::new(name).map_err(|_| PrivdropError::UnknownUser(name.into()))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: getpwnam_r writes into `pwd` and `buf` (whose length we pass) and
        // sets `result` to null or to `&pwd`; the strings it points to live in `buf`,
        // which outlives every read below.
        let (rc, found, pwd) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, !result.is_null(), pwd)
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(PrivdropError::Lookup(io::Error::from_raw_os_error(rc)));
        }
        if !found {
            return Err(PrivdropError::UnknownUser(name.into()));
        }
        // SAFETY: pw_dir points to a NUL-terminated string inside `buf` (see above).
        let home = unsafe { CStr::from_ptr(pwd.pw_dir) };
        return Ok(User {
            name: name.into(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: PathBuf::from(std::ffi::OsStr::from_bytes(home.to_bytes())),
        });
    }
}

/// Checks that `root` is safe to chroot into, as OpenSSH's `safely_chroot` does:
/// an absolute path whose every component (`/`, then each directory down to
/// `root` itself) exists, is a directory, is owned by root and is writable by
/// neither group nor others. Otherwise a process that drops to an unprivileged
/// user inside it could plant files (a `/etc/passwd`, a library) in its own root.
/// A missing directory is an error; it is never created.
///
/// ```
/// use privsep_mesh::privdrop::{check_chroot, PrivdropError};
/// assert!(check_chroot("/".as_ref()).is_ok());
/// // /tmp is writable by everyone.
/// assert!(matches!(
///     check_chroot("/tmp".as_ref()),
///     Err(PrivdropError::UnsafeChroot { .. })
/// ));
/// ```
pub fn check_chroot(root: &Path) -> Result<(), PrivdropError> {
    let unsafe_at = |component: &Path, why| PrivdropError::UnsafeChroot {
        root: root.into(),
        component: component.into(),
        why,
    };
    if !root.is_absolute() {
        return Err(unsafe_at(root, "is not an absolute path"));
    }
    let mut at = PathBuf::new();
    for part in root.components() {
        at.push(part);
        let st = rustix::fs::stat(&at).map_err(|e| PrivdropError::Chroot(root.into(), e.into()))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
            return Err(unsafe_at(&at, "is not a directory"));
        }
        if st.st_uid != 0 {
            return Err(unsafe_at(&at, "is not owned by root"));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(unsafe_at(&at, "is writable by group or others"));
        }
    }
    Ok(())
}

/// Chroots to `root` (after [`check_chroot`]) and makes it the working directory.
pub(crate) fn enter_chroot(root: &Path) -> Result<(), PrivdropError> {
    check_chroot(root)?;
    rustix::process::chroot(root).map_err(|e| PrivdropError::Chroot(root.into(), e.into()))?;
    rustix::process::chdir("/").map_err(|e| PrivdropError::Chdir(e.into()))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Switches every thread of the process to `user` (groups first, then uid), then
/// [`verify`]s.
pub(crate) fn become_user(user: &User) -> Result<(), PrivdropError> {
    let gid = user.gid as libc::gid_t;
    let uid = user.uid as libc::uid_t;
    // SAFETY: a libc call with a pointer to one gid that lives for the call.
    check(unsafe { libc::setgroups(1, &gid) }).map_err(PrivdropError::SetGroups)?;
    crate::sys::set_ids(uid, gid).map_err(|(which, e)| match which {
        crate::sys::IdSwitch::Gid => PrivdropError::SetGid(e),
        crate::sys::IdSwitch::Uid => PrivdropError::SetUid(e),
    })?;
    verify(user)
}

/// The calling process's (real, effective, saved) uids and gids and its supplementary
/// groups. Where the saved ids cannot be read (macOS, NetBSD), the effective ones
/// stand in for them.
pub fn credentials() -> io::Result<([u32; 3], [u32; 3], Vec<u32>)> {
    let (uids, gids) = crate::sys::get_ids()?;
    // SAFETY: getgroups writes up to `n` gids into a buffer of length `n`.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, groups.as_mut_ptr());
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        groups.truncate(n as usize);
        Ok((uids, gids, groups))
    }
}

/// The ids [`verify`] tries to switch to after the drop; each attempt must fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RegainProbes {
    /// Tried with `setuid`: root's uid, unless the target is root itself.
    uid: Option<u32>,
    /// Tried with `setgid`: a gid the process does not hold, which takes
    /// `CAP_SETGID`. Root's group, unless that is the user's own group: then
    /// `setgid(0)` succeeds for anybody and proves nothing, and gid 1 is tried.
    gid: Option<u32>,
}

fn regain_probes(user: &User) -> RegainProbes {
    if user.uid == 0 {
        return RegainProbes {
            uid: None,
            gid: None,
        };
    }
    RegainProbes {
        uid: Some(0),
        gid: Some(if user.gid == 0 { 1 } else { 0 }),
    }
}

/// Whether the ids read back are exactly `user`'s: its uid and gid as real,
/// effective and saved ids, and its gid as the only supplementary group.
fn check_ids(user: &User, uids: [u32; 3], gids: [u32; 3], groups: &[u32]) -> Result<(), String> {
    if uids != [user.uid; 3] {
        return Err(format!("uids {uids:?}, want {}", user.uid));
    }
    if gids != [user.gid; 3] {
        return Err(format!("gids {gids:?}, want {}", user.gid));
    }
    if groups != [user.gid] {
        return Err(format!("groups {groups:?}, want [{}]", user.gid));
    }
    Ok(())
}

/// Checks that the process runs as `user` only and cannot get root back: its ids
/// are exactly the user's, and switching to root's uid (or to a group it does
/// not hold) fails.
pub(crate) fn verify(user: &User) -> Result<(), PrivdropError> {
    let fail = |s: String| PrivdropError::Verify(s);
    let (uids, gids, groups) = credentials().map_err(|e| fail(e.to_string()))?;
    check_ids(user, uids, gids, &groups).map_err(fail)?;
    let probes = regain_probes(user);
    if let Some(uid) = probes.uid {
        // SAFETY: a plain libc call; if it succeeded the drop was not effective and
        // the caller ends the process.
        if unsafe { libc::setuid(uid) } == 0 {
            return Err(fail("root could be regained (setuid succeeded)".into()));
        }
    }
    if let Some(gid) = probes.gid {
        // SAFETY: as above.
        if unsafe { libc::setgid(gid) } == 0 {
            return Err(fail(format!(
                "groups can still be changed (setgid({gid}) succeeded)"
            )));
        }
    }
    Ok(())
}

/// Sets the name `ps` shows for the process: on Linux the name in `ps -o comm` and
/// `/proc/PID/comm` (the kernel keeps 15 bytes), on the BSDs the title
/// (`setproctitle`, as proc.c does), on macOS the main thread's name.
pub(crate) fn set_process_name(name: &str) {
    let bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).collect();
    if let Ok(c) = CString::new(bytes) {
        if let Err(e) = crate::sys::set_process_title(&c) {
            log::debug!("cannot set the process name: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn why(r: Result<(), PrivdropError>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(PrivdropError::UnsafeChroot { component, why, .. }) => {
                format!("{} {why}", component.display())
            }
            Err(e) => e.to_string(),
        }
    }

    /// What OpenSSH's safely_chroot refuses is refused; a root-owned 0755 chain is
    /// accepted. Directories under /run, which is root's and 0755 (not /tmp).
    #[test]
    fn chroot_must_be_root_owned_and_not_group_or_other_writable() {
        assert_eq!(
            why(check_chroot("/tmp".as_ref())),
            "/tmp is writable by group or others"
        );
        assert_eq!(
            why(check_chroot("tmp".as_ref())),
            "tmp is not an absolute path"
        );
        let missing = Path::new("/nonexistent-privsep-mesh-chroot");
        assert!(matches!(
            check_chroot(missing),
            Err(PrivdropError::Chroot(_, e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert!(!missing.exists(), "a missing chroot is never created");
        if !is_root() {
            return;
        }
        let dir = PathBuf::from(format!("/run/privsep-mesh-chroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let inner = dir.join("inner");
        std::fs::create_dir(&inner).unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&dir, 0o755);
        mode(&inner, 0o755);
        assert_eq!(why(check_chroot(&inner)), "ok");
        let nobody = lookup("nobody").unwrap();
        std::os::unix::fs::chown(&inner, Some(nobody.uid), None).unwrap();
        assert_eq!(
            why(check_chroot(&inner)),
            format!("{} is not owned by root", inner.display())
        );
        std::os::unix::fs::chown(&inner, Some(0), None).unwrap();
        mode(&inner, 0o775);
        assert_eq!(
            why(check_chroot(&inner)),
            format!("{} is writable by group or others", inner.display())
        );
        // A parent that others can write to is as bad: they could swap the child.
        mode(&inner, 0o755);
        mode(&dir, 0o757);
        assert_eq!(
            why(check_chroot(&inner)),
            format!("{} is writable by group or others", dir.display())
        );
        mode(&dir, 0o755);
        std::fs::write(dir.join("file"), b"").unwrap();
        assert_eq!(
            why(check_chroot(&dir.join("file"))),
            format!("{}/file is not a directory", dir.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lookup_root_and_unknown() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(matches!(
            lookup("no-such-user-privsep-mesh"),
            Err(PrivdropError::UnknownUser(_))
        ));
        assert!(matches!(lookup("a\0b"), Err(PrivdropError::UnknownUser(_))));
    }

    #[test]
    fn credentials_are_consistent() {
        let (uids, gids, _) = credentials().unwrap();
        assert_eq!(uids[1], rustix::process::geteuid().as_raw());
        assert_eq!(gids[1], rustix::process::getegid().as_raw());
    }

    fn user(uid: u32, gid: u32) -> User {
        User {
            name: "u".into(),
            uid,
            gid,
            home: "/".into(),
        }
    }

    #[test]
    fn probes_never_try_an_id_the_user_holds() {
        let probes = |uid, gid| {
            let p = regain_probes(&user(uid, gid));
            (p.uid, p.gid)
        };
        assert_eq!(probes(65534, 65534), (Some(0), Some(0)));
        // setgid(0) proves nothing for a user whose group is 0.
        assert_eq!(probes(65534, 0), (Some(0), Some(1)));
        assert_eq!(probes(0, 0), (None, None));
        assert_eq!(probes(0, 5), (None, None));
    }

    #[test]
    fn ids_must_be_exactly_the_users() {
        let u = user(65534, 0);
        assert_eq!(check_ids(&u, [65534; 3], [0; 3], &[0]), Ok(()));
        for (uids, gids, groups) in [
            ([65534, 65534, 0], [0; 3], &[0][..]),
            ([0; 3], [0; 3], &[0][..]),
            ([65534; 3], [0, 0, 1], &[0][..]),
            ([65534; 3], [0; 3], &[0, 1][..]),
            ([65534; 3], [0; 3], &[][..]),
        ] {
            assert!(
                check_ids(&u, uids, gids, groups).is_err(),
                "{uids:?} {gids:?} {groups:?} accepted"
            );
        }
    }

    const GID0_CHILD_ENV: &str = "PRIVSEP_MESH_PRIVDROP_GID0_CHILD";

    /// Run in a child process by `a_user_whose_group_is_0_passes_verification`
    /// (the drop cannot be undone); does nothing otherwise.
    #[test]
    fn gid0_drop_child_entry() {
        if std::env::var_os(GID0_CHILD_ENV).is_none() {
            return;
        }
        let user = User {
            name: "gid0".into(),
            uid: 65534,
            gid: 0,
            home: "/".into(),
        };
        become_user(&user).unwrap();
        assert_eq!(
            credentials().unwrap(),
            ([65534; 3], [0; 3], vec![0]),
            "the drop happened"
        );
        assert!(verify(&User { uid: 0, ..user }).is_err(), "uid is checked");
        println!("gid-0 child: dropped and verified");
    }

    /// As root, really drop to uid 65534 with primary group 0: `setgid(0)` works
    /// for such a user without meaning anything, and must not fail the check.
    #[test]
    fn a_user_whose_group_is_0_passes_verification() {
        if !is_root() {
            eprintln!("not root: the real drop to a group-0 user is not tried");
            return;
        }
        crate::child_test::run_test_in_child(
            "privdrop::tests::gid0_drop_child_entry",
            GID0_CHILD_ENV,
            "gid-0 child: dropped and verified",
        );
    }
}
