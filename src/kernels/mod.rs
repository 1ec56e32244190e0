//! Hand-written vector kernels, each beside its portable twin.
//!
//! Every kernel here has a portable (plain Rust, IEEE operations in a fixed
//! order) version and, on x86-64, builds for AVX-512F and AVX2 chosen at run
//! time; each build gives the portable version's bits, which the kernels'
//! tests check. With the cargo feature `portable` only the portable versions
//! are compiled (no intrinsics, no run-time dispatch), which is how CI
//! proves the two builds agree.

pub mod fastmath;
pub mod gather;
mod simd;

pub(crate) use simd::simd_builds;
