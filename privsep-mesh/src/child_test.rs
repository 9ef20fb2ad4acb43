//! Test support: runs one of this crate's unit tests in a child process (a fresh
//! copy of the test binary), for tests that change the whole process (descriptor
//! limits, user ids) and must not disturb the tests running beside them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the unit test `name` (its full path, `module::tests::name`) alone in a
/// child with `env` set, within a minute, and checks that it passed and printed
/// `marker` (so an entry that returned early cannot pass for one that ran).
pub(crate) fn run_test_in_child(name: &str, env: &str, marker: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{name}: child timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{name}: child failed: {out}");
    assert!(
        out.contains(marker),
        "{name}: child did not run the scenario: {out}"
    );
}
