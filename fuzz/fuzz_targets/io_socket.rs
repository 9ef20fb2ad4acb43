#![no_main]
//! The receive path of `imsg_io::Channel` over a real socketpair (`recvmsg`, control
//! messages, `MSG_CTRUNC`), with arbitrary bytes and arbitrary descriptor arrivals:
//! no panic, a descriptor only with a flagged frame, no descriptor leak. Same input
//! format and driver as `io_recv`, which feeds the channel's core from memory.
use libfuzzer_sys::fuzz_target;

// The other way (`Via`) is the other target's.
#[allow(dead_code)]
#[path = "../../imsg-io/tests/recv_driver/mod.rs"]
mod recv_driver;

fuzz_target!(|data: &[u8]| {
    recv_driver::run(data, recv_driver::Via::Socket);
});
