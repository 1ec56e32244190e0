//! Builds of portable kernels for the vector extensions of x86-64.
//!
//! The crate compiles for baseline x86-64 (SSE2), so that one binary runs on
//! every x86-64 CPU; the hot elementwise kernels are compiled a second and
//! third time with AVX-512F and AVX2 enabled, and chosen at run time.

/// Defines `$avx512` and `$avx2`: the portable `#[inline(always)]` kernel
/// `$kernel` (with the given parameters, then the `$extra` arguments)
/// compiled for AVX-512F and for AVX2, so that LLVM vectorises it 16 or 8
/// lanes wide. The kernels are plain IEEE operations in a fixed order (and
/// Rust never fuses a multiply and an add on its own), so every build gives
/// the bits of the portable one (each kernel's test checks it).
///
/// The generated functions are `unsafe`: the caller must have checked that
/// the CPU supports the feature (`is_x86_feature_detected!`).
///
/// With `fn $name` first (optionally `pub fn`), it also defines that safe
/// function: the AVX-512 build where the CPU has AVX-512F, else the AVX2
/// build where it has AVX2, else the portable kernel.
///
/// With the cargo feature `portable` neither build is compiled (no
/// `#[target_feature]` function, no run-time detection): `fn $name` is the
/// portable kernel, and the names `$avx512` and `$avx2` are not defined, so
/// code that calls a build directly must carry the same
/// `#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]`.
macro_rules! simd_builds {
    ($(#[$doc:meta])* $vis:vis fn $name:ident, $avx512:ident, $avx2:ident = $kernel:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { $avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { $avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }

        $crate::kernels::simd_builds!($avx512, $avx2 = $kernel($($arg: $ty),*) -> $ret);
    };
    ($avx512:ident, $avx2:ident = $kernel:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $(; $($extra:expr),*)?) => {
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        #[target_feature(enable = "avx512f")]
        unsafe fn $avx512($($arg: $ty),*) $(-> $ret)? {
            $kernel($($arg),* $($(, $extra)*)?)
        }

        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2($($arg: $ty),*) $(-> $ret)? {
            $kernel($($arg),* $($(, $extra)*)?)
        }
    };
}

pub(crate) use simd_builds;
