//! Replays the `io_recv` fuzz seeds and random inputs through the receive-path
//! driver the fuzz target uses (one test: it counts open descriptors).

mod recv_driver;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};

#[test]
fn seeds_and_random_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds/io_recv");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .expect("seed directory")
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "seeds missing in {}", dir.display());
    let mut frames = 0;
    for path in &seeds {
        frames += recv_driver::run(&std::fs::read(path).unwrap());
    }
    assert!(frames > 0, "the seeds deliver frames");

    let mut runner = TestRunner::new(PtConfig {
        cases: 256,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..600), |data| {
            recv_driver::run(&data);
            Ok(())
        })
        .unwrap();
}
