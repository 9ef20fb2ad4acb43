#![no_main]
//! The receive path of `imsg_io::ChannelCore` with arbitrary bytes and arbitrary
//! descriptor arrivals, fed the way `Channel::read` feeds it from a Linux stream
//! socket, the socket modelled in memory (no system calls but the received
//! descriptors' `dup` and `close`): no panic, a descriptor only with a flagged frame,
//! no descriptor leak. `io_socket` runs the same inputs over a real socketpair.
//! Input format: see the driver, shared with the seed replay test of imsg-io.
use libfuzzer_sys::fuzz_target;

// The other way (`Via`) is the other target's.
#[allow(dead_code)]
#[path = "../../imsg-io/tests/recv_driver/mod.rs"]
mod recv_driver;

fuzz_target!(|data: &[u8]| {
    recv_driver::run(data, recv_driver::Via::Core);
});
