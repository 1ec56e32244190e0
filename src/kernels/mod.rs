//! Hand-written vector kernels, each beside its portable twin.
//!
//! Every kernel here has a portable (plain Rust, IEEE operations in a fixed
//! order) version and, on x86-64, builds for AVX-512F and AVX2 chosen at run
//! time; each build gives the portable version's bits, which the kernels'
//! tests check. With the cargo feature `portable` only the portable versions
//! are compiled (no intrinsics, no `#[target_feature]` function, no run-time
//! dispatch), which is how CI proves the two builds agree: the reference
//! digests pass either way.
//!
//! The rest of the crate calls the safe functions here and never an
//! intrinsic. (Every vector path is gated by
//! `#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]`.)

pub mod fastmath;
pub mod gather;
pub mod normal;
pub mod pulse;
pub mod reduce;
mod simd;
pub mod trains;

pub(crate) use simd::simd_builds;
