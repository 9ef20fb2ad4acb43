//! Splits arbitrary bytes in both dialects under arbitrary limits: every accepted
//! frame must re-emit byte for byte, every partial answer must be exact, and
//! nothing may panic. The oracle is `imsg_codec::fuzzing::check_split`, which
//! `imsg-codec/tests/fuzz_seeds.rs` also runs on the committed seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = vec![0u8; data.len()];
    imsg_codec::fuzzing::check_split(data, &mut scratch);
});
