//! The pulse path's hand-written vector code, each piece beside its
//! portable version: the device record the vector code loads, a prefetch
//! hint, and the AVX-512 kernel that applies a block of sixteen
//! single-device constant-step pulse events at once.
//!
//! The intrinsics are compiled only for
//! `#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]`; with
//! the cargo feature `portable` (or off x86-64) only the portable versions
//! exist, with no run-time CPU dispatch. Both give the same bits (the
//! device array's tests check the vector block against event-by-event
//! writes).
//!
//! This layer knows nothing of device models or random streams: the
//! per-device physics is the device array's, passed in as the cycle-to-
//! cycle constants (`C2c`), the draws (`DrawPool`) and, for the portable
//! block, the scalar write of one event.

/// Fault marks of a stuck device, held in both of its step fields (the
/// steps of a free device are ≥ 0, and a stuck device never uses its steps).
pub(crate) const STUCK_LOW: f32 = -1.0;
/// See [`STUCK_LOW`].
pub(crate) const STUCK_HIGH: f32 = -2.0;

/// The hot state of one device: everything a pulse reads or writes, in the
/// 32-byte layout the vector block loads whole (word `w` of record `i` at
/// 32-bit word `8 i + w`).
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct DeviceRecord {
    /// Programmed normalised conductance `g` (before drift and write noise).
    pub(crate) g: f32,
    /// Lower bound.
    pub(crate) lo: f32,
    /// Upper bound.
    pub(crate) hi: f32,
    /// Nominal up step (≥ 0; incl. d2d spread and up/down bias), or the
    /// fault mark (`STUCK_LOW`, `STUCK_HIGH`) of a stuck device.
    pub(crate) step_up: f32,
    /// Nominal down step (≥ 0), or the fault mark of a stuck device.
    pub(crate) step_down: f32,
    /// Read-visible deviation from `g` (always 0 without write noise).
    pub(crate) write_offset: f32,
    /// Pulses delivered so far.
    pub(crate) pulses: u32,
    /// Pulses after which the device stops switching (`u32::MAX` = unlimited).
    pub(crate) rated: u32,
}

impl DeviceRecord {
    /// Whether the device is stuck (its steps hold a fault mark).
    #[inline(always)]
    pub(crate) fn is_stuck(&self) -> bool {
        self.step_up < 0.0
    }
}

const _: () = assert!(std::mem::size_of::<DeviceRecord>() == 32);
const _: () = assert!(std::mem::align_of::<DeviceRecord>() == 32);

/// `|n|` pulses on the cross-point at `index` (column-major, bias column
/// last: `i + j·n_out`), up (weight increases) for `n > 0`: what the
/// controller plans and the device array applies (to a device or a pair).
///
/// `repr(C)`: the vector block reads a block of events as pairs of 32-bit
/// words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PulseEvent {
    /// Cross-point index `i + j·n_out`.
    pub index: u32,
    /// Signed number of pulses.
    pub pulses: i32,
}

/// Prefetch hint for `data[i]` (no-op when out of bounds; the portable
/// version is no hint at all).
#[inline]
pub fn prefetch<T>(data: &[T], i: usize) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if i < data.len() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` is only a hint and never faults; the
        // address is in bounds of `data` anyway.
        unsafe { _mm_prefetch(data.as_ptr().add(i) as *const i8, _MM_HINT_T0) }
    }
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    let _ = (data, i);
}

/// Cycle-to-cycle noise of a pulse (Gokmen & Vlasov 2016): multiplicative,
/// `dg · (1 + σ ξ)`, or additive, `dg + σ · step · ξ`; with additive and
/// state-dependent terms, `dg + σ (b + add + slope |g − center|) ξ`, `b`
/// the multiplicative or additive base (aihwkit ExpStep's complex noise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct C2c {
    /// σ (0 = none).
    pub(crate) sigma: f32,
    /// Whether the noise multiplies the (state-dependent) change.
    pub(crate) multiplicative: bool,
    /// Additive term of the standard deviation (units of the range, times σ).
    pub(crate) add: f32,
    /// State-dependent term, per unit `|g − center|` (times σ).
    pub(crate) slope: f32,
    /// The symmetry point the state-dependent term is measured from.
    pub(crate) center: f32,
}

impl C2c {
    /// The change `dg` of a pulse of nominal `step` with the draw `xi`
    /// (the scalar form; the vector block has the same operations lane by
    /// lane, in the same order).
    #[inline(always)]
    pub(crate) fn apply(&self, dg: f32, step: f32, xi: f32) -> f32 {
        if self.multiplicative {
            dg * (1.0 + self.sigma * xi)
        } else {
            dg + self.sigma * step * xi
        }
    }

    /// Whether the standard deviation has additive or state-dependent
    /// terms ([`C2c::apply_at`] then differs from [`C2c::apply`]).
    #[inline(always)]
    pub(crate) fn is_complex(&self) -> bool {
        self.add != 0.0 || self.slope != 0.0
    }

    /// The change with the additive and state-dependent terms, for a device
    /// at state `g`: what [`C2c::apply`] is for a model whose noise
    /// [`C2c::is_complex`] (the pulse loop decides once per write).
    #[inline(always)]
    pub(crate) fn apply_at(&self, dg: f32, step: f32, g: f32, xi: f32) -> f32 {
        let base = if self.multiplicative { dg.abs() } else { step };
        dg + self.sigma * (base + self.add + self.slope * (g - self.center).abs()) * xi
    }
}

/// Up and down pulses delivered.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PulseTotals {
    /// Up pulses.
    pub(crate) up: u64,
    /// Down pulses.
    pub(crate) down: u64,
}

impl PulseTotals {
    /// Counts `n` pulses (up for `n > 0`); returns (count, up).
    #[inline(always)]
    pub(crate) fn count(&mut self, n: i32) -> (u32, bool) {
        let count = n.unsigned_abs();
        if n > 0 {
            self.up += count as u64;
        } else {
            self.down += count as u64;
        }
        (count, n > 0)
    }
}

/// A pool of standard-normal draws handed out in order (the device noise
/// stream): what the vector block needs of it (a portable build, without
/// the vector block, uses none of it).
#[cfg_attr(
    not(all(target_arch = "x86_64", not(feature = "portable"))),
    allow(dead_code)
)]
pub(crate) trait DrawPool {
    /// Refills the pool if no draw is pending.
    fn refill_if_empty(&mut self);
    /// The pending draws, in the order they are handed out.
    fn pending(&self) -> &[f32];
    /// Hands out the first `n` pending draws.
    fn take(&mut self, n: usize);
}

/// Events per block of [`constant_block`] (one per AVX-512 lane).
pub(crate) const BLOCK_EVENTS: usize = 16;

/// The read-visible conductances of a block's devices before and after it.
#[derive(Default)]
pub(crate) struct BlockReads {
    /// Before the block.
    pub(crate) before: [f32; BLOCK_EVENTS],
    /// After it.
    pub(crate) after: [f32; BLOCK_EVENTS],
}

/// Applies a block of [`BLOCK_EVENTS`] single-device events of a
/// constant-step model without quantisation, write noise or drift: with
/// the AVX-512 kernel where the CPU has AVX-512F and AVX-512CD (and the
/// build is not `portable`), else — and for a block the kernel refuses —
/// event by event with `scalar`, the device array's own write of one event
/// (`scalar(record, pulses, draws, totals)` returns the read-visible
/// conductance before and after). The same bits either way.
#[inline(always)]
pub(crate) fn constant_block<P: DrawPool>(
    devices: &mut [DeviceRecord],
    block: &[PulseEvent],
    c2c: &C2c,
    draws: &mut P,
    totals: &mut PulseTotals,
    reads: &mut BlockReads,
    mut scalar: impl FnMut(&mut DeviceRecord, i32, &mut P, &mut PulseTotals) -> (f32, f32),
) {
    assert!(block.len() == BLOCK_EVENTS);
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if avx512_blocks() {
        // SAFETY: the CPU has AVX-512F and AVX-512CD (checked just above).
        if unsafe { constant_block_avx512(devices, block, c2c, draws, totals, reads) } {
            return;
        }
    }
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    let _ = c2c;
    // The portable version: event by event.
    for (l, e) in block.iter().enumerate() {
        let (before, after) = scalar(&mut devices[e.index as usize], e.pulses, draws, totals);
        reads.before[l] = before;
        reads.after[l] = after;
    }
}

/// Whether [`constant_block`] takes the AVX-512 kernel (a CPU with
/// AVX-512F and AVX-512CD; never in a `portable` build).
#[inline]
pub(crate) fn avx512_blocks() -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512cd")
    }
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    {
        false
    }
}

/// Most cycle-to-cycle draws a block of [`constant_block_avx512`] takes
/// (a block that needs more goes event by event).
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub(crate) const BLOCK_DRAWS: usize = 256;

/// Largest pulse count of an event in a block of [`constant_block_avx512`]
/// (so that a block's pulse totals fit its 32-bit lanes; larger counts, as
/// exact writes may plan, go event by event).
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub(crate) const BLOCK_MAX_COUNT: i32 = 1 << 24;

/// 32-bit words per device record (the vector block loads record `i` at
/// word `8 · i`).
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
const DEVICE_WORDS: usize = std::mem::size_of::<DeviceRecord>() / 4;
const _: () = assert!(std::mem::offset_of!(DeviceRecord, g) == 0);
const _: () = assert!(std::mem::offset_of!(DeviceRecord, lo) == 4);
const _: () = assert!(std::mem::offset_of!(DeviceRecord, hi) == 8);
const _: () = assert!(std::mem::offset_of!(DeviceRecord, step_up) == 12);
const _: () = assert!(std::mem::offset_of!(DeviceRecord, step_down) == 16);
const _: () = assert!(std::mem::offset_of!(DeviceRecord, pulses) == 24);
const _: () = assert!(std::mem::offset_of!(DeviceRecord, rated) == 28);
const _: () = assert!(std::mem::size_of::<PulseEvent>() == 8);
const _: () = assert!(std::mem::offset_of!(PulseEvent, index) == 0);
const _: () = assert!(std::mem::offset_of!(PulseEvent, pulses) == 4);

/// The AVX-512 version of [`constant_block`]'s event-by-event loop, sixteen
/// devices at once, with its bits; returns `false`, changing nothing, if
/// the block has an index out of range, a device twice, a count above
/// [`BLOCK_MAX_COUNT`], or needs more than [`BLOCK_DRAWS`] draws (the
/// caller then applies it event by event).
///
/// The sixteen 32-byte records are loaded whole and transposed into one
/// vector per field (Zen 4's gathers cost more than the loads and
/// shuffles); the new conductances and pulse counts are stored back record
/// by record. The block's cycle-to-cycle draws are taken from the pool in
/// event order, as event-by-event writes would take them, and each device
/// reads its own from its offset in that run. Devices with one effective
/// pulse (nearly all) step in the vector registers, with the scalar
/// write's single-precision operations in its order (no fused
/// multiply-add); the few with more step one pulse at a time as there.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512CD.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f,avx512cd")]
pub(crate) unsafe fn constant_block_avx512<P: DrawPool>(
    devices: &mut [DeviceRecord],
    block: &[PulseEvent],
    c2c: &C2c,
    noise: &mut P,
    totals: &mut PulseTotals,
    reads: &mut BlockReads,
) -> bool {
    use std::arch::x86_64::*;
    assert!(block.len() == BLOCK_EVENTS);
    // The range check below compares 32-bit lanes.
    assert!(devices.len() <= i32::MAX as usize);
    // SAFETY (the raw loads below): the block is 16 events of two 32-bit
    // words (asserted layout), read as two vectors; every record loaded is
    // `devices[index]` with `index < devices.len()` (checked before the
    // first load), 32 bytes at word `8 · index`; the draws are read at
    // offsets below their count `needed`, which the pool holds pending or
    // `carried` holds written.
    unsafe {
        let words = block.as_ptr().cast::<i32>();
        let first = _mm512_loadu_si512(words.cast());
        let second = _mm512_loadu_si512(words.add(16).cast());
        let index = _mm512_permutex2var_epi32(
            first,
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            second,
        );
        let pulses = _mm512_permutex2var_epi32(
            first,
            _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
            second,
        );
        let one = _mm512_set1_epi32(1);
        let zero = _mm512_setzero_si512();
        let in_range = _mm512_cmplt_epu32_mask(index, _mm512_set1_epi32(devices.len() as i32));
        // A lane with no equal index in an earlier lane.
        let first_of_index = _mm512_cmpeq_epi32_mask(_mm512_conflict_epi32(index), zero);
        let count = _mm512_abs_epi32(pulses);
        // |n| ≤ BLOCK_MAX_COUNT as unsigned (|i32::MIN| stays 2³¹).
        let moderate = _mm512_cmple_epu32_mask(count, _mm512_set1_epi32(BLOCK_MAX_COUNT));
        if in_range & first_of_index & moderate != u16::MAX {
            return false;
        }
        let active = _mm512_cmpneq_epi32_mask(pulses, zero);
        let up = _mm512_cmpgt_epi32_mask(pulses, zero);
        let down = active & !up;

        // The sixteen records as eight field vectors (lane l = event l):
        // records l and l + 4 (l < 4), or l + 8 and l + 12, share a load,
        // then a transposition of 32-bit words within 128-bit lanes and a
        // gathering of 128-bit lanes.
        let at = |l: usize| block[l].index as usize * DEVICE_WORDS;
        let base = devices.as_mut_ptr().cast::<f32>();
        let pair = |a: usize, b: usize| {
            let low = _mm512_castps256_ps512(_mm256_loadu_ps(base.add(at(a))));
            let high = _mm256_castps_pd(_mm256_loadu_ps(base.add(at(b))));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(low), high))
        };
        let z = [
            pair(0, 4),
            pair(1, 5),
            pair(2, 6),
            pair(3, 7),
            pair(8, 12),
            pair(9, 13),
            pair(10, 14),
            pair(11, 15),
        ];
        let quads = |a: usize| {
            let t0 = _mm512_unpacklo_ps(z[a], z[a + 1]);
            let t1 = _mm512_unpackhi_ps(z[a], z[a + 1]);
            let t2 = _mm512_unpacklo_ps(z[a + 2], z[a + 3]);
            let t3 = _mm512_unpackhi_ps(z[a + 2], z[a + 3]);
            // Word w of four records in each 128-bit lane: words 0–3 in
            // lanes 0 and 2, words 4–7 in lanes 1 and 3.
            [
                _mm512_shuffle_ps::<0x44>(t0, t2),
                _mm512_shuffle_ps::<0xEE>(t0, t2),
                _mm512_shuffle_ps::<0x44>(t1, t3),
                _mm512_shuffle_ps::<0xEE>(t1, t3),
            ]
        };
        let (first_eight, last_eight) = (quads(0), quads(4));
        // Word `w` of the sixteen records, in event order.
        let field = |w: usize| match w {
            0..=3 => _mm512_shuffle_f32x4::<0x88>(first_eight[w], last_eight[w]),
            _ => _mm512_shuffle_f32x4::<0xDD>(first_eight[w - 4], last_eight[w - 4]),
        };
        let g = field(0);
        let lo = field(1);
        let hi = field(2);
        // `step_up` (word 3) for up events, `step_down` (word 4) for down.
        let step = _mm512_mask_blend_ps(down, field(3), field(4));
        let delivered = _mm512_castps_si512(field(6));
        let rated = _mm512_castps_si512(field(7));

        // `pulses.saturating_add(count)` (unsigned) for every event with pulses.
        let sum = _mm512_add_epi32(delivered, count);
        let wrapped = _mm512_cmplt_epu32_mask(sum, delivered);
        let sum = _mm512_mask_mov_epi32(sum, wrapped, _mm512_set1_epi32(-1));
        let delivered_after = _mm512_mask_mov_epi32(delivered, active, sum);
        // Pulses that can switch the device: none when stuck (negative
        // fault marks in both steps) or worn out, else `min(count, rated −
        // delivered)`.
        let stuck = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(step, _mm512_setzero_ps());
        let fresh = _mm512_cmplt_epu32_mask(delivered, rated);
        let effective = _mm512_maskz_min_epu32(
            active & !stuck & fresh,
            count,
            _mm512_sub_epi32(rated, delivered),
        );
        let single = _mm512_cmpeq_epi32_mask(effective, one);
        let several = _mm512_cmpgt_epu32_mask(effective, one);

        // Each event's first draw, and the block's count: the exclusive
        // prefix sum of the effective pulses (shifts by 1, 2, 4 and 8
        // lanes); without cycle-to-cycle noise there are no draws.
        let (first_draw, needed) = if c2c.sigma > 0.0 {
            let mut through = effective;
            through = _mm512_add_epi32(through, _mm512_alignr_epi32::<15>(through, zero));
            through = _mm512_add_epi32(through, _mm512_alignr_epi32::<14>(through, zero));
            through = _mm512_add_epi32(through, _mm512_alignr_epi32::<12>(through, zero));
            through = _mm512_add_epi32(through, _mm512_alignr_epi32::<8>(through, zero));
            let needed = _mm512_reduce_max_epu32(through) as usize;
            (_mm512_sub_epi32(through, effective), needed)
        } else {
            (zero, 0)
        };

        // The block's draws in event order: straight from the pool when it
        // holds them all, else copied across a refill.
        let mut carried = [std::mem::MaybeUninit::<f32>::uninit(); BLOCK_DRAWS];
        let mut draws: *const f32 = carried.as_ptr().cast();
        let mut in_place = false;
        let mut dg = step;
        if needed > 0 {
            if needed > BLOCK_DRAWS {
                return false;
            }
            noise.refill_if_empty();
            if noise.pending().len() >= needed {
                draws = noise.pending().as_ptr();
                in_place = true;
            } else {
                take_draws(noise, &mut carried[..needed]);
            }
            let xi = if several == 0 {
                _mm512_maskz_expandloadu_ps(single, draws)
            } else {
                _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), single, first_draw, draws)
            };
            let sigma = _mm512_set1_ps(c2c.sigma);
            dg = if c2c.multiplicative {
                // dg · (1 + σ ξ)
                _mm512_mul_ps(
                    step,
                    _mm512_add_ps(_mm512_set1_ps(1.0), _mm512_mul_ps(sigma, xi)),
                )
            } else {
                // dg + σ · step · ξ
                _mm512_add_ps(step, _mm512_mul_ps(_mm512_mul_ps(sigma, step), xi))
            };
        }
        let moved = _mm512_mask_blend_ps(up, _mm512_sub_ps(g, dg), _mm512_add_ps(g, dg));
        // `f32::clamp`: below `lo` → `lo`, then above `hi` → `hi`.
        let moved = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(moved, lo), moved, lo);
        let moved = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(moved, hi), moved, hi);
        let mut after = _mm512_mask_blend_ps(single, g, moved);

        if several != 0 {
            // Pulse by pulse, as in the scalar write.
            let lanes = |v: __m512| {
                let mut a = [0.0f32; BLOCK_EVENTS];
                _mm512_storeu_ps(a.as_mut_ptr(), v);
                a
            };
            let (mut out, lo, hi, step) = (lanes(after), lanes(lo), lanes(hi), lanes(step));
            let (mut each, mut first) = ([0u32; BLOCK_EVENTS], [0u32; BLOCK_EVENTS]);
            _mm512_storeu_si512(each.as_mut_ptr().cast(), effective);
            _mm512_storeu_si512(first.as_mut_ptr().cast(), first_draw);
            for l in (0..BLOCK_EVENTS).filter(|&l| several & (1 << l) != 0) {
                let lane_up = up & (1 << l) != 0;
                let mut g = out[l];
                for p in 0..each[l] as usize {
                    let mut dg = step[l];
                    if c2c.sigma > 0.0 {
                        dg = c2c.apply(dg, step[l], *draws.add(first[l] as usize + p));
                    }
                    g = if lane_up { g + dg } else { g - dg }.clamp(lo[l], hi[l]);
                }
                out[l] = g;
            }
            after = _mm512_loadu_ps(out.as_ptr());
        }
        if in_place {
            // The draws were read in place: hand them out now.
            noise.take(needed);
        }

        let mut g_after = [0.0f32; BLOCK_EVENTS];
        let mut delivered_now = [0u32; BLOCK_EVENTS];
        _mm512_storeu_ps(g_after.as_mut_ptr(), after);
        _mm512_storeu_si512(delivered_now.as_mut_ptr().cast(), delivered_after);
        // Events without pulses store their records' own values back.
        for (l, e) in block.iter().enumerate() {
            let d = &mut devices[e.index as usize];
            d.g = g_after[l];
            d.pulses = delivered_now[l];
        }
        totals.up += _mm512_mask_reduce_add_epi32(up, count) as u32 as u64;
        totals.down += _mm512_mask_reduce_add_epi32(down, count) as u32 as u64;
        _mm512_storeu_ps(reads.before.as_mut_ptr(), g);
        _mm512_storeu_ps(reads.after.as_mut_ptr(), after);
    }
    true
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
/// Fills `out` with the pool's next draws, refilling it where
/// the pool's one-at-a-time draws would: the draws the same number of calls to it
/// would hand out.
#[inline(always)]
fn take_draws<P: DrawPool>(noise: &mut P, out: &mut [std::mem::MaybeUninit<f32>]) {
    let mut filled = 0;
    while filled < out.len() {
        noise.refill_if_empty();
        let pending = noise.pending();
        let n = pending.len().min(out.len() - filled);
        for (slot, &v) in out[filled..filled + n].iter_mut().zip(pending) {
            slot.write(v);
        }
        noise.take(n);
        filled += n;
    }
}
