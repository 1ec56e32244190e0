//! Shared stochastic pulse trains, bit-packed (Gokmen & Vlasov 2016, as the
//! chip does it).
//!
//! In one pulse phase every row line `i` fires a train of `BL` slots, each
//! slot independently with probability `p_i`, and every column line `j` one
//! with probability `q_j`. Device `(i, j)` sees a pulse in each slot where
//! both of its lines fire, so its count is `popcount(train_i ∧ train_j)`:
//! `Binomial(BL, p_i q_j)` for each device, as in the independent sampler,
//! but devices on one line share that line's train, so their counts are
//! correlated (`Cov(n_ij, n_ik) = BL p_i (1 − p_i) q_j q_k`), as on the chip
//! and in aihwkit's pulsed update.
//!
//! The trains are packed 64 slots to a word. The rows firing in each slot
//! are indexed once per phase, and each column walks the rows of its own
//! firing slots, so the work is the number of coincidences, not firing rows
//! × firing columns. A train word is drawn by comparing every slot's
//! uniform with `p` bit by bit, all 64 slots at once ([`bernoulli_word`]):
//! exact, and about `log₂ 64 + 2` random words per word of train instead of
//! one uniform per slot; long sparse trains (BL > 64, under ~2 pulses per
//! word) place their pulses by geometric skipping instead
//! ([`sparse_train`]); short trains (at most 4 slots, nearly all of them
//! under bit-length management) take one 32-bit uniform per slot, drawn for
//! all lines at once ([`crate::kernels::trains`]). The cost per pulse phase
//! is O(lines · ⌈BL/64⌉ + BL + coincidences).

use super::{firing_probability, PulseEvent};
use crate::kernels::simd_builds;
use crate::kernels::trains::{draw_short_trains, line_sign, ShortTrainScratch, TrainLists};
use rand::{Rng, RngCore};
use rand_distr::Exp1;
use serde::{Deserialize, Serialize};

/// Whether the devices on one line share its pulse train.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum PulseTrains {
    /// One train per row and column line per pulse phase, shared by the
    /// line's devices (the chip; counts correlated along lines).
    #[default]
    Shared,
    /// Each device draws its own `Binomial(BL, p_i q_j)` count (the
    /// expectation model: no correlation between devices).
    Independent,
}

/// The non-empty pulse trains of one side (rows or columns) of an array in
/// one pulse phase.
#[derive(Clone, Debug, Default)]
pub(super) struct LineTrains {
    /// Lines whose train fires at least once, ascending.
    pub lines: Vec<u32>,
    /// Sign (±1) of each listed line's signal.
    pub signs: Vec<i32>,
    /// Their trains, `words` per line: slot `t` is bit `t % 64` of word `t / 64`.
    pub trains: Vec<u64>,
    /// Words per train, `⌈BL/64⌉`.
    pub words: usize,
    /// Σ of the unclipped firing probabilities `k |v|` of all lines.
    pub magnitude_sum: f64,
    /// Scratch for one-word trains: the signals and their probabilities.
    signal: Vec<f32>,
    probability: Vec<f64>,
    /// Scratch for short trains (the lines that can fire, their uniforms).
    short: ShortTrainScratch,
}

impl LineTrains {
    /// Draws the trains of `BL` slots for lines with signals `values`,
    /// firing probability `min(k |v|, 1)`; returns how many probabilities
    /// were clipped at 1.
    pub fn draw(
        &mut self,
        values: impl Iterator<Item = f32>,
        k: f64,
        bl: u32,
        rng: &mut impl RngCore,
    ) -> u64 {
        self.lines.clear();
        self.signs.clear();
        self.trains.clear();
        self.words = bl.div_ceil(64) as usize;
        if self.words == 1 {
            return self.draw_one_word(values, k, bl, rng);
        }
        let mut totals = (0.0, 0);
        for (line, v) in values.enumerate() {
            let Some(p) = firing_probability(k, v, &mut totals) else {
                continue;
            };
            let start = self.trains.len();
            let mut any = 0;
            if p < 1.0 && (bl as f64) * p < 2.0 * self.words as f64 {
                // Long, sparse train (fewer than ~2 pulses per word): place
                // the pulses by geometric skipping instead of drawing every
                // word bit by bit.
                self.trains.resize(start + self.words, 0);
                sparse_train(rng, p, bl, &mut self.trains[start..]);
                any = self.trains[start..].iter().fold(0, |a, &w| a | w);
            } else {
                for w in 0..self.words {
                    let slots = (bl - 64 * w as u32).min(64);
                    let word = bernoulli_word(rng, p, slots);
                    any |= word;
                    self.trains.push(word);
                }
            }
            if any == 0 {
                self.trains.truncate(start);
            } else {
                self.lines.push(line as u32);
                self.signs.push(line_sign(v));
            }
        }
        self.magnitude_sum = totals.0;
        totals.1
    }

    /// [`LineTrains::draw`] for trains of one word (BL ≤ 64), in two
    /// passes: first every line's firing probability and their sum, in
    /// lanes (one running sum is a serial chain of additions that held the
    /// per-line loop up), then the trains ([`LineTrains::draw_short`] for
    /// short ones). The lines draw in the same order from the same stream
    /// as one pass would, so the trains are the same; only the rounding of
    /// the summed probabilities (a statistic) differs.
    /// No branch on whether a line fired: every drawn line is written at the
    /// end of the list, which only grows past it if the train is not empty
    /// (whether a line fires is a coin flip, which a branch would mispredict
    /// half the time).
    fn draw_one_word(
        &mut self,
        values: impl Iterator<Item = f32>,
        k: f64,
        bl: u32,
        rng: &mut impl RngCore,
    ) -> u64 {
        self.signal.clear();
        self.signal.extend(values);
        let n = self.signal.len();
        self.probability.resize(n, 0.0);
        let (sum, clipped) = firing_probabilities(k, &self.signal, &mut self.probability);
        if bl <= SHORT_TRAIN {
            // At most `SHORT_TRAIN` slots (bit-length management makes
            // nearly all trains one slot long): one 32-bit uniform per slot,
            // all lines at once (the kernel's vector builds for one slot).
            let lists = TrainLists {
                lines: &mut self.lines,
                signs: &mut self.signs,
                trains: &mut self.trains,
            };
            draw_short_trains(
                bl,
                &self.probability,
                &self.signal,
                rng,
                &mut self.short,
                lists,
            );
            self.magnitude_sum = sum;
            return clipped;
        }
        self.lines.resize(n, 0);
        self.signs.resize(n, 0);
        self.trains.resize(n, 0);
        let mut fired = 0usize;
        for (line, (&p, &v)) in self.probability.iter().zip(&self.signal).enumerate() {
            // As `firing_probability`: a line with p ≤ 0 never fires.
            if p <= 0.0 {
                continue;
            }
            let word = bernoulli_word(rng, p, bl);
            self.lines[fired] = line as u32;
            self.signs[fired] = line_sign(v);
            self.trains[fired] = word;
            fired += (word != 0) as usize;
        }
        self.lines.truncate(fired);
        self.signs.truncate(fired);
        self.trains.truncate(fired);
        self.magnitude_sum = sum;
        clipped
    }
}

simd_builds!(
    /// [`firing_probabilities_portable`], built for AVX-512/AVX2 where the
    /// CPU has them (the same four lanes of totals: the same bits).
    fn firing_probabilities, firing_probabilities_avx512, firing_probabilities_avx2 =
        firing_probabilities_portable(k: f64, signal: &[f32], probability: &mut [f64]) -> (f64, u64)
);

/// [`firing_probability`] of every line, into `probability` (0 for a line
/// that never fires), with its totals (Σ of the probabilities, how many
/// will be clipped) kept in four lanes rather than one serial chain.
#[inline(always)]
fn firing_probabilities_portable(k: f64, signal: &[f32], probability: &mut [f64]) -> (f64, u64) {
    const LANES: usize = 4;
    let mut totals = [(0.0f64, 0u64); LANES];
    let body = signal.len() - signal.len() % LANES;
    for (ps, vs) in probability[..body]
        .chunks_exact_mut(LANES)
        .zip(signal[..body].chunks_exact(LANES))
    {
        for lane in 0..LANES {
            ps[lane] = firing_probability(k, vs[lane], &mut totals[lane]).unwrap_or(0.0);
        }
    }
    for (p, &v) in probability[body..].iter_mut().zip(&signal[body..]) {
        *p = firing_probability(k, v, &mut totals[0]).unwrap_or(0.0);
    }
    totals
        .iter()
        .fold((0.0, 0), |(sum, clipped), t| (sum + t.0, clipped + t.1))
}

/// Sets each of the `bl` slots of `train` (zeroed, `⌈bl/64⌉` words)
/// independently with probability `p < 1`: the gaps between pulses are
/// Geometric(p), drawn as `⌊E/λ⌋` with `E ~ Exp(1)` and `λ = −ln(1 − p)`
/// (`P(⌊E/λ⌋ ≥ k) = (1 − p)^k`). Costs one draw per pulse plus one.
pub fn sparse_train(rng: &mut impl RngCore, p: f64, bl: u32, train: &mut [u64]) {
    let inv_rate = -1.0 / (-p).ln_1p();
    let bl = bl as u64;
    let mut t = 0u64;
    while t < bl {
        let e: f64 = rng.sample(Exp1);
        let skip = (e * inv_rate).floor();
        if skip >= (bl - t) as f64 {
            break;
        }
        t += skip as u64;
        train[(t / 64) as usize] |= 1 << (t % 64);
        t += 1;
    }
}

/// Trains of at most this many slots are drawn with one uniform per slot.
const SHORT_TRAIN: u32 = 4;

/// A word whose lowest `slots` bits (1..=64) are set independently with
/// probability `p` each (`p ≥ 1`: all of them).
///
/// Slot `t` fires iff `U_t < p` for a uniform `U_t`; the bits of all `U_t`
/// are drawn most significant first, one random word per bit position, and
/// compared with the binary expansion of `p`: a slot is decided at the first
/// bit where its `U_t` differs from `p` (fires if `U_t` has the 0). Each
/// round decides half of the undecided slots on average, so about
/// `log₂ slots + 2` words are drawn; the result is exact to `p`'s `f64`
/// precision. Trains of up to 4 slots draw one uniform per
/// slot instead (fewer words there).
#[inline]
pub fn bernoulli_word(rng: &mut impl RngCore, p: f64, slots: u32) -> u64 {
    let valid = if slots >= 64 {
        u64::MAX
    } else {
        (1u64 << slots) - 1
    };
    if p >= 1.0 {
        return valid;
    }
    if slots <= SHORT_TRAIN {
        // Short trains (bit-length management makes most of them 1–3 slots):
        // one 53-bit uniform per slot is fewer random words than the
        // bit-serial comparison (≈ log₂ slots + 2), and as exact: a slot
        // fires with probability ⌈p·2⁵³⌉/2⁵³.
        let mut fire = 0u64;
        for t in 0..slots {
            let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            fire |= ((u < p) as u64) << t;
        }
        return fire;
    }
    let mut undecided = valid;
    let mut fire = 0u64;
    let mut rest = p;
    while undecided != 0 && rest > 0.0 {
        // Next binary digit of p (exact: doubling and subtracting 1 are
        // exact in floating point).
        rest *= 2.0;
        let digit = rest >= 1.0;
        let u_bits = rng.next_u64();
        if digit {
            rest -= 1.0;
            // U's digit 0 against p's 1: U < p.
            fire |= undecided & !u_bits;
            undecided &= u_bits;
        } else {
            // U's digit 1 against p's 0: U > p.
            undecided &= !u_bits;
        }
    }
    // Slots still undecided when p's expansion ends have U ≥ p: no pulse.
    fire
}

/// Which rows fire in each slot: the rows (positions in a [`LineTrains`])
/// firing in slot `t` are `members[start[t]..start[t + 1]]`, ascending.
#[derive(Clone, Debug, Default)]
pub(super) struct SlotIndex {
    start: Vec<u32>,
    members: Vec<u32>,
    /// Per-row coincidence counter of the current column and the rows it
    /// touched (scratch).
    count: Vec<u32>,
    touched: Vec<u32>,
    /// The line and sign of each row in `members` (so that a one-slot
    /// column's events are read from two contiguous runs).
    member_lines: Vec<u32>,
    member_signs: Vec<i32>,
}

/// Appends one event per device with at least one coincidence — device
/// `(i, j)` at index `j · n_out + i`, as many pulses as slots where both of
/// its lines fire, signed by its lines' signs and `flip` — column by
/// column (columns ascending, so a column's devices are together).
///
/// Each column walks only the rows firing in its own slots, so the work is
/// the number of coincidences, not firing rows × firing columns.
pub(super) fn coincidences(
    rows: &LineTrains,
    cols: &LineTrains,
    bl: u32,
    n_out: u32,
    flip: i32,
    slots: &mut SlotIndex,
    events: &mut Vec<PulseEvent>,
) {
    if rows.lines.is_empty() || cols.lines.is_empty() {
        return;
    }
    let words = rows.words;
    // Counting sort of the rows' set slots by slot.
    let SlotIndex {
        start,
        members,
        count,
        touched,
        member_lines,
        member_signs,
    } = slots;
    start.clear();
    start.resize(bl as usize + 2, 0);
    for train in rows.trains.chunks_exact(words) {
        for_each_slot(train, |t| start[t + 2] += 1);
    }
    for t in 2..start.len() {
        start[t] += start[t - 1];
    }
    members.clear();
    members.resize(start[bl as usize + 1] as usize, 0);
    for (r, train) in rows.trains.chunks_exact(words).enumerate() {
        for_each_slot(train, |t| {
            members[start[t + 1] as usize] = r as u32;
            start[t + 1] += 1;
        });
    }
    // Now slot t's rows are members[start[t]..start[t + 1]].
    // Only one-word trains can have one-slot columns, which read these.
    if words == 1 {
        member_lines.clear();
        member_lines.extend(members.iter().map(|&r| rows.lines[r as usize]));
        member_signs.clear();
        member_signs.extend(members.iter().map(|&r| rows.signs[r as usize]));
    }
    count.clear();
    count.resize(rows.lines.len(), 0);
    for (c, col_train) in cols.trains.chunks_exact(words).enumerate() {
        let base = cols.lines[c] * n_out;
        let sign = cols.signs[c] * flip;
        if words == 1 && col_train[0].count_ones() == 1 {
            // One slot (the common case with BL management): each row
            // firing in it coincides exactly once, ascending already.
            let t = col_train[0].trailing_zeros() as usize;
            let slot = start[t] as usize..start[t + 1] as usize;
            let (lines, signs) = (&member_lines[slot.clone()], &member_signs[slot]);
            events.extend(
                lines
                    .iter()
                    .zip(signs)
                    .map(|(&line, &row_sign)| PulseEvent {
                        index: base + line,
                        pulses: row_sign * sign,
                    }),
            );
            continue;
        }
        for_each_slot(col_train, |t| {
            for &r in &members[start[t] as usize..start[t + 1] as usize] {
                let k = &mut count[r as usize];
                if *k == 0 {
                    touched.push(r);
                }
                *k += 1;
            }
        });
        for &r in touched.iter() {
            let r = r as usize;
            events.push(PulseEvent {
                index: base + rows.lines[r],
                pulses: count[r] as i32 * rows.signs[r] * sign,
            });
            count[r] = 0;
        }
        touched.clear();
    }
}

/// Calls `f(t)` for every set slot `t` of a train, ascending.
#[inline(always)]
fn for_each_slot(train: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in train.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            f(64 * w + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The two-pass probabilities equal the one-line ones: the same values,
    /// the same clip count, the same sum up to rounding (over lengths that
    /// leave every remainder of the four lanes, with zeros, negatives and
    /// clipped lines).
    #[test]
    fn lane_probabilities_equal_the_per_line_ones() {
        for n in 0..23usize {
            let signal: Vec<f32> = (0..n)
                .map(|i| match i % 5 {
                    0 => 0.0,
                    1 => -(i as f32) * 0.3,
                    _ => (i as f32 * 0.7).sin(),
                })
                .collect();
            let k = 0.9;
            let mut lanes = vec![0.0; n];
            let (sum, clipped) = firing_probabilities(k, &signal, &mut lanes);
            let mut totals = (0.0, 0);
            for (&v, &p) in signal.iter().zip(&lanes) {
                match firing_probability(k, v, &mut totals) {
                    Some(q) => assert_eq!(p, q),
                    None => assert_eq!(p, 0.0),
                }
            }
            assert_eq!(clipped, totals.1, "length {n}");
            assert!(
                (sum - totals.0).abs() <= 1e-12 * totals.0.max(1.0),
                "length {n}"
            );
        }
    }

    /// Short trains (the branch-free path): for 1–4 slots, every listed line
    /// is one with a non-empty train and the right sign, in ascending
    /// order; each slot fires with probability `k |v|` (clipped lines in
    /// every slot, zero signals never), independently of the line's other
    /// slots and of the neighbouring line.
    #[test]
    fn short_trains_fire_each_slot_with_the_line_probability() {
        let signal = [0.2f32, 0.0, -0.05, 3.0, -0.6, 0.0, 0.01];
        let k = 1.0;
        let reps = 60_000;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        for bl in 1..=SHORT_TRAIN {
            let mut trains = LineTrains::default();
            let mut ones = vec![vec![0f64; bl as usize]; signal.len()];
            let (mut same_line, mut neighbours) = (0f64, 0f64);
            for _ in 0..reps {
                trains.draw(signal.iter().copied(), k, bl, &mut rng);
                assert!(trains.lines.windows(2).all(|w| w[0] < w[1]));
                let mut word_of = [0u64; 7];
                for ((&line, &sign), &word) in
                    trains.lines.iter().zip(&trains.signs).zip(&trains.trains)
                {
                    assert_ne!(word, 0);
                    assert_eq!(word >> bl, 0, "bits beyond {bl}");
                    let v = signal[line as usize];
                    assert_eq!(sign, if v < 0.0 { -1 } else { 1 });
                    word_of[line as usize] = word;
                }
                for (line, word) in word_of.iter().enumerate() {
                    for (t, count) in ones[line].iter_mut().enumerate() {
                        *count += ((word >> t) & 1) as f64;
                    }
                }
                same_line += (word_of[0] & 3 == 3) as u8 as f64;
                neighbours += (word_of[0] & word_of[2] & 1) as f64;
            }
            let n = reps as f64;
            for (line, &v) in signal.iter().enumerate() {
                let p = (k * v.abs() as f64).min(1.0);
                let se = (p * (1.0 - p) / n).sqrt();
                for (t, &count) in ones[line].iter().enumerate() {
                    let got = count / n;
                    assert!(
                        (got - p).abs() <= 5.0 * se + 1e-9,
                        "BL {bl}, line {line}, slot {t}: {got} for p {p}"
                    );
                }
            }
            let (p0, p2) = (0.2f64, 0.05f64);
            if bl >= 2 {
                let se = (p0 * p0 * (1.0 - p0 * p0) / n).sqrt();
                assert!(
                    (same_line / n - p0 * p0).abs() < 5.0 * se,
                    "BL {bl}: same line"
                );
            }
            let se = (p0 * p2 * (1.0 - p0 * p2) / n).sqrt();
            assert!(
                (neighbours / n - p0 * p2).abs() < 5.0 * se,
                "BL {bl}: neighbours"
            );
        }
    }

    /// Every slot of a drawn word fires with probability p, independently
    /// of the other slots (pairwise), and no bit beyond `slots` is set.
    #[test]
    fn bernoulli_words_fire_each_slot_with_probability_p() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let reps = 100_000;
        for &(p, slots) in &[
            (0.3f64, 31u32),
            (0.9, 64),
            (1e-3, 17),
            (0.5, 1),
            (0.0625, 40),
            (0.2, 2),
            (0.7, 4),
            (0.01, 3),
        ] {
            let mut ones = vec![0f64; 64];
            let mut both = 0f64;
            for _ in 0..reps {
                let w = bernoulli_word(&mut rng, p, slots);
                if slots < 64 {
                    assert_eq!(w >> slots, 0, "bits beyond {slots}");
                }
                for (t, count) in ones.iter_mut().enumerate() {
                    *count += ((w >> t) & 1) as f64;
                }
                if slots >= 2 {
                    both += (w & 3 == 3) as u8 as f64;
                }
            }
            let se = (p * (1.0 - p) / reps as f64).sqrt();
            for (t, &count) in ones.iter().enumerate().take(slots as usize) {
                let got = count / reps as f64;
                assert!((got - p).abs() < 5.0 * se + 1e-5, "p {p} slot {t}: {got}");
            }
            if slots >= 2 {
                let got = both / reps as f64;
                let se2 = (p * p * (1.0 - p * p) / reps as f64).sqrt();
                assert!(
                    (got - p * p).abs() < 5.0 * se2 + 1e-5,
                    "p {p}: P(both) {got}"
                );
            }
        }
        assert_eq!(bernoulli_word(&mut rng, 1.0, 31), (1 << 31) - 1);
        assert_eq!(bernoulli_word(&mut rng, 0.0, 64), 0);
    }

    /// Long sparse trains (geometric skipping) fire every slot with
    /// probability p, independently (pairwise, across word boundaries).
    #[test]
    fn sparse_trains_fire_each_slot_with_probability_p() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let (bl, p, reps) = (200u32, 0.05f64, 200_000);
        let mut ones = vec![0f64; bl as usize];
        let mut pairs = 0f64;
        for _ in 0..reps {
            let mut train = vec![0u64; 4];
            sparse_train(&mut rng, p, bl, &mut train);
            assert_eq!(train[3] >> (bl - 192), 0, "slots beyond BL");
            for (t, count) in ones.iter_mut().enumerate() {
                *count += ((train[t / 64] >> (t % 64)) & 1) as f64;
            }
            // Slots 63 and 64 straddle a word boundary.
            pairs += ((train[0] >> 63) & train[1] & 1) as f64;
        }
        let se = (p * (1.0 - p) / reps as f64).sqrt();
        let mean = ones.iter().sum::<f64>() / (bl as f64 * reps as f64);
        assert!(
            (mean - p).abs() < 5.0 * se / (bl as f64).sqrt(),
            "mean rate {mean}"
        );
        for (t, &count) in ones.iter().enumerate() {
            let got = count / reps as f64;
            assert!((got - p).abs() < 5.0 * se, "slot {t}: {got}");
        }
        let got = pairs / reps as f64;
        assert!(
            (got - p * p).abs() < 5.0 * (p * p / reps as f64).sqrt() + 1e-6,
            "pair {got}"
        );
    }

    /// Coincidences of multi-word trains (BL > 64) are the popcount of the
    /// AND over all words, like the one-word path's.
    #[test]
    fn coincidences_count_every_word() {
        let rows = LineTrains {
            lines: vec![0, 2],
            signs: vec![1, -1],
            trains: vec![0b1011, 1 << 5, 0b0001, 0],
            words: 2,
            magnitude_sum: 0.0,
            ..LineTrains::default()
        };
        let cols = LineTrains {
            lines: vec![1],
            signs: vec![-1],
            trains: vec![0b0011, 1 << 5],
            words: 2,
            magnitude_sum: 0.0,
            ..LineTrains::default()
        };
        let mut events = Vec::new();
        coincidences(
            &rows,
            &cols,
            128,
            3,
            1,
            &mut SlotIndex::default(),
            &mut events,
        );
        assert_eq!(
            events,
            vec![
                PulseEvent {
                    index: 3,
                    pulses: -3
                },
                PulseEvent {
                    index: 5,
                    pulses: 1
                }
            ]
        );
    }

    /// The vector builds of the firing probabilities give the portable
    /// build's probabilities and totals, bit for bit.
    #[test]
    fn firing_probabilities_are_bit_identical_on_every_path() {
        for n in [0usize, 1, 3, 4, 5, 9, 257, 785] {
            let signal: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 5 == 0 {
                        0.0
                    } else {
                        (i as f32 * 0.37).sin() * 2.0
                    }
                })
                .collect();
            let mut base = vec![0.0; n];
            let t0 = firing_probabilities_portable(0.9, &signal, &mut base);
            let mut fast = vec![0.0; n];
            let t1 = firing_probabilities(0.9, &signal, &mut fast);
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&base), bits(&fast), "n {n}");
            assert_eq!((t0.0.to_bits(), t0.1), (t1.0.to_bits(), t1.1), "n {n}");
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0.0; n];
                // SAFETY: AVX2 was detected just above.
                let t2 = unsafe { firing_probabilities_avx2(0.9, &signal, &mut avx2) };
                assert_eq!(bits(&base), bits(&avx2), "AVX2, n {n}");
                assert_eq!(
                    (t0.0.to_bits(), t0.1),
                    (t2.0.to_bits(), t2.1),
                    "AVX2, n {n}"
                );
            }
            assert!(
                t0.1 > 0 || n < 5,
                "some probabilities clip at k = 0.9, |v| ≤ 2"
            );
        }
    }
}
