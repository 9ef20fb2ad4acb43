#![no_main]
//! The receive path of `imsg_io::Channel` over a real socketpair, with arbitrary
//! bytes and arbitrary descriptor arrivals: no panic, no descriptor leak (the
//! driver compares the open descriptors before and after every input). Input format: see the
//! driver, shared with the seed replay test of imsg-io.
use libfuzzer_sys::fuzz_target;

#[path = "../../imsg-io/tests/recv_driver/mod.rs"]
mod recv_driver;

fuzz_target!(|data: &[u8]| {
    recv_driver::run(data);
});
