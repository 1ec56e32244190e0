//! Short stochastic pulse trains (at most a few slots, as bit-length
//! management makes nearly all of them; Gokmen & Vlasov 2016), drawn for
//! all lines of one side of an array at once: the kernel of the
//! controller's shared pulse trains (DESIGN.md §3).
//!
//! Slot `t` of line `i` fires iff its 32-bit uniform `u < p_i·2³²`
//! (probability `⌈p_i·2³²⌉/2³²`, within 2.4·10⁻¹⁰ of `p_i`; `p_i ≥ 1` fires
//! every slot). The uniforms are drawn for all lines that can fire at once,
//! two to a random word, in line order. [`draw_short_trains_portable`] does
//! it for any train length in three branch-free passes; one-slot trains take
//! an AVX-512 or AVX2 kernel where the CPU has it (not with the cargo
//! feature `portable`), which draws the same uniforms from the same stream
//! and gives the same trains (the tests check it).

use rand::{Rng, RngCore};

/// 2³²: a 32-bit uniform `u` fires a slot of probability `p` iff
/// `u < p·2³²`.
pub const UNIFORM_SCALE: f64 = 4_294_967_296.0;

/// The sign (±1) a line's pulses carry for signal `v` (+1 for zero and
/// NaN: such a line never fires, so its sign does not matter).
#[inline(always)]
pub fn line_sign(v: f32) -> i32 {
    if v < 0.0 {
        -1
    } else {
        1
    }
}

/// The lists a draw fills: the lines whose train fires at least once
/// (ascending), the sign of each, and its train (slot `t` is bit `t`).
pub struct TrainLists<'a> {
    /// Lines whose train is not empty, ascending.
    pub lines: &'a mut Vec<u32>,
    /// Sign (±1) of each listed line's signal.
    pub signs: &'a mut Vec<i32>,
    /// Each listed line's train.
    pub trains: &'a mut Vec<u64>,
}

/// Scratch of a short-train draw, kept between draws for its allocations.
#[derive(Clone, Debug, Default)]
pub struct ShortTrainScratch {
    /// The lines that can fire (portable path).
    candidates: Vec<u32>,
    /// Their uniforms, `bl` per line (and room for a vector block past them).
    uniforms: Vec<u32>,
}

/// The trains of `bl` slots (1..=63) of the lines with firing probabilities
/// `probability` (≤ 0 or NaN: never fires) and signals `signal` (for the
/// signs; as long as `probability`), from `rng`, into `out`. One-slot trains
/// take the AVX-512 or AVX2 kernel where the CPU has it; every path gives
/// the trains of [`draw_short_trains_portable`] and leaves `rng` in the same
/// state.
pub fn draw_short_trains(
    bl: u32,
    probability: &[f64],
    signal: &[f32],
    rng: &mut impl RngCore,
    scratch: &mut ShortTrainScratch,
    out: TrainLists<'_>,
) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if bl == 1 {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { x86::one_slot_avx512(probability, signal, rng, scratch, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { x86::one_slot_avx2(probability, signal, rng, scratch, out) };
            return;
        }
    }
    draw_short_trains_portable(bl, probability, signal, rng, scratch, out);
}

/// [`draw_short_trains`] in portable code, for every `bl`, in three
/// branch-free passes instead of one loop that waits on the generator line
/// by line: the lines that can fire; all their uniforms at once; then the
/// trains. No branch on whether a line fired either: every line is written
/// at the end of the lists, which only grow past it if its train is not
/// empty (whether a line fires is a coin flip, which a branch would
/// mispredict half the time).
pub fn draw_short_trains_portable(
    bl: u32,
    probability: &[f64],
    signal: &[f32],
    rng: &mut impl RngCore,
    scratch: &mut ShortTrainScratch,
    out: TrainLists<'_>,
) {
    let TrainLists {
        lines,
        signs,
        trains,
    } = out;
    let ShortTrainScratch {
        candidates,
        uniforms,
    } = scratch;
    let n = probability.len();
    lines.resize(n, 0);
    signs.resize(n, 0);
    trains.resize(n, 0);
    candidates.resize(n, 0);
    let mut count = 0;
    for (line, &p) in (0u32..).zip(probability) {
        candidates[count] = line;
        count += (p > 0.0) as usize;
    }
    let slots = bl as usize;
    uniforms.resize(count * slots, 0);
    rng.fill(&mut uniforms[..]);
    let valid = (1u64 << bl) - 1;
    let mut fired = 0usize;
    for (&line, uniforms) in candidates[..count].iter().zip(uniforms.chunks_exact(slots)) {
        let p = probability[line as usize];
        let scaled = p * UNIFORM_SCALE;
        let mut word = 0u64;
        for (t, &u) in uniforms.iter().enumerate() {
            word |= (((u as f64) < scaled) as u64) << t;
        }
        let word = if p >= 1.0 { valid } else { word };
        lines[fired] = line;
        signs[fired] = line_sign(signal[line as usize]);
        trains[fired] = word;
        fired += (word != 0) as usize;
    }
    lines.truncate(fired);
    signs.truncate(fired);
    trains.truncate(fired);
}

/// The one-slot kernels for AVX-512F and AVX2.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod x86 {
    use super::{line_sign, ShortTrainScratch, TrainLists, UNIFORM_SCALE};
    use rand::{Rng, RngCore};
    use std::arch::x86_64::*;

    /// [`super::draw_short_trains`] for one-slot trains, sixteen lines at a
    /// time with AVX-512: the same uniforms from the same stream, the same
    /// comparisons, the same trains. Where the portable path first lists the
    /// lines that can fire and then walks that list, here each block of
    /// lines spreads the next uniforms over its lines that can fire (an
    /// expand), compares them with those lines' `p·2³²`, and packs the lines
    /// that fired and their signs to the front (a compress): no list, no
    /// branch, no gather.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn one_slot_avx512(
        probability: &[f64],
        signal: &[f32],
        rng: &mut impl RngCore,
        scratch: &mut ShortTrainScratch,
        mut out: TrainLists<'_>,
    ) {
        const LANES: usize = 16;
        let n = probability.len();
        assert_eq!(signal.len(), n, "one signal per probability");
        let body = n - n % LANES;
        let zero = _mm512_setzero_pd();
        let can_fire = |i: usize| -> u16 {
            // SAFETY: `i + 16 ≤ body ≤ probability.len()`.
            let (lo, hi) = unsafe {
                (
                    _mm512_loadu_pd(probability.as_ptr().add(i)),
                    _mm512_loadu_pd(probability.as_ptr().add(i + 8)),
                )
            };
            let lo = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(lo, zero);
            let hi = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(hi, zero);
            lo as u16 | (hi as u16) << 8
        };
        let in_blocks = (0..body)
            .step_by(LANES)
            .map(|i| can_fire(i).count_ones() as usize)
            .sum::<usize>();
        let uniforms = &mut scratch.uniforms;
        let count = start_one_slot(probability, body, in_blocks, LANES, rng, uniforms, &mut out);
        let scale = _mm512_set1_pd(UNIFORM_SCALE);
        let (plus, minus) = (_mm512_set1_epi32(1), _mm512_set1_epi32(-1));
        let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(LANES as i32);
        let (mut taken, mut fired) = (0usize, 0usize);
        let (p, s) = (probability.as_ptr(), signal.as_ptr());
        for i in (0..body).step_by(LANES) {
            let candidates = can_fire(i);
            // The next uniforms, one to each line that can fire, in order
            // (`uniforms` has room for sixteen past the last one taken).
            let u = _mm512_maskz_expand_epi32(
                candidates,
                _mm512_loadu_si512(uniforms.as_ptr().add(taken).cast()),
            );
            let u_lo = _mm512_cvtepu32_pd(_mm512_castsi512_si256(u));
            let u_hi = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64::<1>(u));
            let p_lo = _mm512_mul_pd(_mm512_loadu_pd(p.add(i)), scale);
            let p_hi = _mm512_mul_pd(_mm512_loadu_pd(p.add(i + 8)), scale);
            let lo = _mm512_mask_cmp_pd_mask::<_CMP_LT_OQ>(candidates as u8, u_lo, p_lo);
            let hi = _mm512_mask_cmp_pd_mask::<_CMP_LT_OQ>((candidates >> 8) as u8, u_hi, p_hi);
            let fire = lo as u16 | (hi as u16) << 8;
            let negative =
                _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_loadu_ps(s.add(i)), _mm512_setzero_ps());
            let signs = _mm512_mask_blend_epi32(negative, plus, minus);
            // Compress in a register, then a full store (the compressing
            // store to memory is slow on some CPUs); lanes past the fired
            // ones are overwritten by the next block or truncated at the
            // end (the lists have room for sixteen past `n`).
            _mm512_storeu_si512(
                out.lines.as_mut_ptr().add(fired).cast(),
                _mm512_maskz_compress_epi32(fire, index),
            );
            _mm512_storeu_si512(
                out.signs.as_mut_ptr().add(fired).cast(),
                _mm512_maskz_compress_epi32(fire, signs),
            );
            fired += fire.count_ones() as usize;
            taken += candidates.count_ones() as usize;
            index = _mm512_add_epi32(index, step);
        }
        finish_one_slot(
            probability,
            signal,
            body,
            (taken, fired),
            &uniforms[..count],
            out,
        );
    }

    /// [`one_slot_avx512`] for CPUs with AVX2 but not AVX-512, eight lines
    /// at a time: the expand and compress are permutations from tables
    /// ([`EXPAND8`], [`COMPRESS8`]). The same trains as the portable path.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn one_slot_avx2(
        probability: &[f64],
        signal: &[f32],
        rng: &mut impl RngCore,
        scratch: &mut ShortTrainScratch,
        mut out: TrainLists<'_>,
    ) {
        const LANES: usize = 8;
        let n = probability.len();
        assert_eq!(signal.len(), n, "one signal per probability");
        let body = n - n % LANES;
        let zero = _mm256_setzero_pd();
        let can_fire = |i: usize| -> usize {
            // SAFETY: `i + 8 ≤ body ≤ probability.len()`.
            let (lo, hi) = unsafe {
                (
                    _mm256_loadu_pd(probability.as_ptr().add(i)),
                    _mm256_loadu_pd(probability.as_ptr().add(i + 4)),
                )
            };
            let lo = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(lo, zero));
            let hi = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(hi, zero));
            (lo | hi << 4) as usize
        };
        let in_blocks = (0..body)
            .step_by(LANES)
            .map(|i| can_fire(i).count_ones() as usize)
            .sum::<usize>();
        let uniforms = &mut scratch.uniforms;
        let count = start_one_slot(probability, body, in_blocks, LANES, rng, uniforms, &mut out);
        let scale = _mm256_set1_pd(UNIFORM_SCALE);
        // u32 → f64 exactly: (u − 2³¹) as a signed integer, plus 2³¹.
        let (flip, half) = (_mm_set1_epi32(i32::MIN), _mm256_set1_pd(2_147_483_648.0));
        let to_f64 = |u: __m128i| _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(u, flip)), half);
        let plus = _mm256_set1_epi32(1);
        let mut index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let step = _mm256_set1_epi32(LANES as i32);
        let table = |t: &[[u32; 8]; 256], mask: usize| {
            // SAFETY: `mask < 256` and a row is eight `u32`s.
            unsafe { _mm256_loadu_si256(t[mask].as_ptr().cast()) }
        };
        let (mut taken, mut fired) = (0usize, 0usize);
        let (p, s) = (probability.as_ptr(), signal.as_ptr());
        for i in (0..body).step_by(LANES) {
            let candidates = can_fire(i);
            let u = _mm256_permutevar8x32_epi32(
                _mm256_loadu_si256(uniforms.as_ptr().add(taken).cast()),
                table(&EXPAND8, candidates),
            );
            let u_lo = to_f64(_mm256_castsi256_si128(u));
            let u_hi = to_f64(_mm256_extracti128_si256::<1>(u));
            let p_lo = _mm256_mul_pd(_mm256_loadu_pd(p.add(i)), scale);
            let p_hi = _mm256_mul_pd(_mm256_loadu_pd(p.add(i + 4)), scale);
            let lo = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(u_lo, p_lo));
            let hi = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(u_hi, p_hi));
            let fire = (lo | hi << 4) as usize & candidates;
            // −1 (all bits) where the signal is negative, else 0: sign 1 + 2m.
            let negative = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(
                _mm256_loadu_ps(s.add(i)),
                _mm256_setzero_ps(),
            ));
            let signs = _mm256_add_epi32(plus, _mm256_add_epi32(negative, negative));
            let pack = table(&COMPRESS8, fire);
            _mm256_storeu_si256(
                out.lines.as_mut_ptr().add(fired).cast(),
                _mm256_permutevar8x32_epi32(index, pack),
            );
            _mm256_storeu_si256(
                out.signs.as_mut_ptr().add(fired).cast(),
                _mm256_permutevar8x32_epi32(signs, pack),
            );
            fired += fire.count_ones() as usize;
            taken += candidates.count_ones() as usize;
            index = _mm256_add_epi32(index, step);
        }
        finish_one_slot(
            probability,
            signal,
            body,
            (taken, fired),
            &uniforms[..count],
            out,
        );
    }

    /// The start of a one-slot draw whose vector blocks cover lines
    /// `..body`, `in_blocks` of which can fire: the uniforms of all lines
    /// that can fire, one each in line order as in the portable path (so
    /// from the same stream), and room for a block to read and write
    /// `lanes` past its start. Returns how many lines can fire.
    fn start_one_slot(
        probability: &[f64],
        body: usize,
        in_blocks: usize,
        lanes: usize,
        rng: &mut impl RngCore,
        uniforms: &mut Vec<u32>,
        out: &mut TrainLists<'_>,
    ) -> usize {
        let count = in_blocks + probability[body..].iter().filter(|&&p| p > 0.0).count();
        uniforms.resize(count + lanes, 0);
        rng.fill(&mut uniforms[..count]);
        let n = probability.len();
        out.lines.resize(n + lanes, 0);
        out.signs.resize(n + lanes, 0);
        count
    }

    /// The lines from `from` on of a one-slot draw, one at a time, after
    /// the vector blocks took `taken` of the `uniforms` (one per line that
    /// can fire) and fired `fired` trains; then the lists cut to the fired
    /// lines.
    fn finish_one_slot(
        probability: &[f64],
        signal: &[f32],
        from: usize,
        (mut taken, mut fired): (usize, usize),
        uniforms: &[u32],
        out: TrainLists<'_>,
    ) {
        for line in from..probability.len() {
            let p = probability[line];
            if p > 0.0 {
                let u = uniforms[taken];
                taken += 1;
                out.lines[fired] = line as u32;
                out.signs[fired] = line_sign(signal[line]);
                fired += ((u as f64) < p * UNIFORM_SCALE) as usize;
            }
        }
        debug_assert_eq!(taken, uniforms.len());
        out.lines.truncate(fired);
        out.signs.truncate(fired);
        // A one-slot train that fires is the word 1.
        out.trains.clear();
        out.trains.resize(fired, 1);
    }

    /// For each 8-bit mask, the lanes of its set bits in ascending order
    /// (then zeros): the permutation that packs those lanes to the front.
    const COMPRESS8: [[u32; 8]; 256] = {
        let mut table = [[0u32; 8]; 256];
        let mut mask = 0;
        while mask < 256 {
            let (mut lane, mut packed) = (0, 0);
            while lane < 8 {
                if mask >> lane & 1 == 1 {
                    table[mask][packed] = lane as u32;
                    packed += 1;
                }
                lane += 1;
            }
            mask += 1;
        }
        table
    };

    /// For each 8-bit mask, the source of each lane: a set lane takes the
    /// next value in order (the number of set bits below it), so that
    /// consecutive values spread over the set lanes.
    const EXPAND8: [[u32; 8]; 256] = {
        let mut table = [[0u32; 8]; 256];
        let mut mask = 0;
        while mask < 256 {
            let mut lane = 0;
            while lane < 8 {
                table[mask][lane] = (mask & ((1 << lane) - 1)).count_ones();
                lane += 1;
            }
            mask += 1;
        }
        table
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The controller's firing probability `k |v|` (NaN stays NaN and never
    /// fires; zero never fires).
    fn probabilities(k: f64, signal: &[f32]) -> Vec<f64> {
        signal
            .iter()
            .map(|&v| {
                let p = k * v.abs() as f64;
                if p <= 0.0 {
                    0.0
                } else {
                    p
                }
            })
            .collect()
    }

    /// The signals of the bit-identity tests: zero, negative zero, NaN,
    /// clipped, tiny negative and ordinary signals, by line and seed.
    fn signals(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| match (i as u64 * 7 + seed) % 9 {
                0 | 1 => 0.0,
                2 => -0.0,
                3 => f32::NAN,
                4 => 2.0,
                5 => -1e-9,
                _ => ((i as f32 + seed as f32) * 0.37).sin(),
            })
            .collect()
    }

    #[derive(Default)]
    struct Drawn {
        lines: Vec<u32>,
        signs: Vec<i32>,
        trains: Vec<u64>,
    }

    impl Drawn {
        fn lists(&mut self) -> TrainLists<'_> {
            TrainLists {
                lines: &mut self.lines,
                signs: &mut self.signs,
                trains: &mut self.trains,
            }
        }
    }

    /// The portable draw against its definition, uniform by uniform: the
    /// lines that can fire take `bl` uniforms each, in line order, from
    /// `rng.fill`, and slot `t` fires iff `u < p·2³²` (all slots for
    /// `p ≥ 1`).
    #[test]
    fn portable_short_trains_follow_the_uniforms() {
        for bl in 1..=4u32 {
            let signal = signals(37, bl as u64);
            let p = probabilities(0.8, &signal);
            let mut drawn = Drawn::default();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(bl as u64);
            let mut reference_rng = rng.clone();
            let mut scratch = ShortTrainScratch::default();
            draw_short_trains_portable(bl, &p, &signal, &mut rng, &mut scratch, drawn.lists());
            let can_fire: Vec<usize> = (0..p.len()).filter(|&i| p[i] > 0.0).collect();
            let mut u = vec![0u32; can_fire.len() * bl as usize];
            reference_rng.fill(&mut u[..]);
            let mut expected = Drawn::default();
            for (k, &line) in can_fire.iter().enumerate() {
                let mut word = 0u64;
                for t in 0..bl as usize {
                    let fires = p[line] >= 1.0
                        || (u[k * bl as usize + t] as f64) < p[line] * 4_294_967_296.0;
                    word |= (fires as u64) << t;
                }
                if word != 0 {
                    expected.lines.push(line as u32);
                    expected.signs.push(if signal[line] < 0.0 { -1 } else { 1 });
                    expected.trains.push(word);
                }
            }
            assert_eq!(drawn.lines, expected.lines, "BL {bl}");
            assert_eq!(drawn.signs, expected.signs, "BL {bl}");
            assert_eq!(drawn.trains, expected.trains, "BL {bl}");
            assert!(!drawn.lines.is_empty(), "BL {bl}: some line fires");
            assert_eq!(rng.next_u64(), reference_rng.next_u64(), "BL {bl}: stream");
        }
    }

    /// The AVX-512 and AVX2 one-slot kernels draw the trains of the portable
    /// path: the same lines, signs and words from the same uniforms, leaving
    /// the generator in the same state — over lengths that leave every
    /// remainder of the sixteen lanes, with zero, negative, NaN, tiny and
    /// clipped signals.
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    #[test]
    fn one_slot_avx_trains_equal_the_portable_ones() {
        type Draw = unsafe fn(
            &[f64],
            &[f32],
            &mut Xoshiro256PlusPlus,
            &mut ShortTrainScratch,
            TrainLists<'_>,
        );
        let builds: [(&str, bool, Draw); 2] = [
            (
                "AVX-512",
                std::arch::is_x86_feature_detected!("avx512f"),
                |p, s, r, c, o| unsafe { x86::one_slot_avx512(p, s, r, c, o) },
            ),
            (
                "AVX2",
                std::arch::is_x86_feature_detected!("avx2"),
                |p, s, r, c, o| unsafe { x86::one_slot_avx2(p, s, r, c, o) },
            ),
        ];
        for n in 0..70usize {
            for seed in 0..4u64 {
                let signal = signals(n, seed);
                let p = probabilities(0.8, &signal);
                let mut rng_portable = Xoshiro256PlusPlus::seed_from_u64(seed);
                let mut portable = Drawn::default();
                let mut scratch = ShortTrainScratch::default();
                draw_short_trains_portable(
                    1,
                    &p,
                    &signal,
                    &mut rng_portable,
                    &mut scratch,
                    portable.lists(),
                );
                let after = rng_portable.next_u64();
                for (name, present, draw) in builds {
                    if !present {
                        continue;
                    }
                    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
                    let mut avx = Drawn::default();
                    // Scratch left over from a longer draw must not matter.
                    let mut scratch = ShortTrainScratch {
                        candidates: vec![7; 3],
                        uniforms: vec![u32::MAX; 90],
                    };
                    // SAFETY: the build's feature was detected above.
                    unsafe { draw(&p, &signal, &mut rng, &mut scratch, avx.lists()) };
                    assert_eq!(portable.lines, avx.lines, "{name}, n {n}, seed {seed}");
                    assert_eq!(portable.signs, avx.signs, "{name}, n {n}, seed {seed}");
                    assert_eq!(portable.trains, avx.trains, "{name}, n {n}, seed {seed}");
                    assert_eq!(after, rng.next_u64(), "{name}, n {n}");
                }
            }
        }
    }
}
