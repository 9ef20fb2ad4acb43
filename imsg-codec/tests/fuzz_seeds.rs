//! Replays the committed seed corpus of the `split` fuzz target
//! (`tests/seeds/split/`) through the same oracle the fuzzer uses, so a normal
//! `cargo test` exercises it: every file, and every prefix of every file.

use std::path::Path;

use imsg_codec::fuzzing::check_split;

#[test]
fn split_seed_corpus_passes_the_fuzz_oracle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds/split");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let mut scratch = vec![0u8; data.len()];
        for end in 0..=data.len() {
            check_split(&data[..end], &mut scratch);
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} seeds in {}", dir.display());
}
