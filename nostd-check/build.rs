//! Links the C library for the C runtime's `_start` (which calls `main`) and
//! `exit`: without `std`, nothing else brings it in.
fn main() {
    println!("cargo:rustc-link-arg-bins=-lc");
}
