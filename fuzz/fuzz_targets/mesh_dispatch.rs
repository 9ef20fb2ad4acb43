//! Arbitrary frames arriving on a mesh channel, through the real read and dispatch
//! path of privsep-mesh: no panic, every outcome a typed value, `ready` at most once,
//! no channel gained without the policy. The oracle is
//! `privsep_mesh::internal::check_dispatch`, which `privsep-mesh/tests/fuzz_seeds.rs`
//! also runs on the committed seeds (`privsep-mesh/tests/seeds/mesh_dispatch/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = privsep_mesh::internal::check_dispatch(data);
});
