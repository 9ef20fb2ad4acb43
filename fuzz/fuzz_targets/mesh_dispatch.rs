#![no_main]
// Placeholder until the target is written by its issue.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|_data: &[u8]| {});
