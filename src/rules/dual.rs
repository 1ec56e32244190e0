//! Dual propagation (DP) and its adjoint variant DP⊤: dyadic states, the
//! hidden and output nudging rules, damped DP, the inference schedules and
//! the local weight rule (DESIGN.md §1).
//!
//! Every neuron is a dyad (s⁺, s⁻) with mean s̄ = α s⁺ + (1−α) s⁻ (sent up)
//! and difference δ = s⁺ − s⁻ (sent down); the drive of layer k is
//! a_k = W_k s̄_{k−1} + b_k.
//!
//! * **DP⊤** hidden (paper Eq. 19): s⁺ = f(a + (1−α) Wᵀδ), s⁻ = f(a − α Wᵀδ);
//!   output (Eq. 22, linearised loss, g = ∇ℓ(a_L)):
//!   s⁺_L = a_L − (1−α)βg, s⁻_L = a_L + αβg, so δ_L = −βg and s̄_L = a_L.
//! * **DP** hidden (Eq. 2): s⁺ = f(a + α Wᵀδ), s⁻ = f(a − (1−α) Wᵀδ);
//!   output, least squares (Eq. 3): s⁺_L = (a_L + αβy)/(1 + αβ),
//!   s⁻_L = (a_L − (1−α)βy)/(1 − (1−α)β). For cross-entropy DP uses the
//!   linearised form s⁺_L = a_L − αβg, s⁻_L = a_L + (1−α)βg.
//! * **Damped DP** (Appendix F): s±_k ← f((a_k + L_k s±_k ± c± Wᵀδ)/(1 + L_k)),
//!   L_k = max(0, γ²_{k+1} − 1)/2 · |1 − 2α|, γ_{k+1} ≈ ‖W_{k+1}‖₂ by power iteration.
//! * **Local rule**: ∇W_k = −δ_k s̄ᵀ_{k−1}/(Bβ), ∇b_k = −δ_k 1/(Bβ).

use crate::linalg::{ensure_shape, max_abs, Mat};
use crate::network::{Loss, Network, WithActivation};
use crate::rules::Schedule;
use crate::substrate::OuterProductGradient;

/// Per-element output nudge: (a_i, r_i) ↦ (s⁺_i, s⁻_i).
type ElementNudge = Box<dyn Fn(f32, f32) -> (f32, f32)>;

/// Which member of the DP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DualVariant {
    /// Original dual propagation.
    Dp,
    /// Adjoint dual propagation DP⊤.
    Dpt,
    /// DP with damped (stabilised) fixed-point updates.
    DpDamped,
}

impl DualVariant {
    /// The nudging gains `(c⁺, c⁻)` of the hidden rule at asymmetry `α`,
    /// `s⁺ = f(a + c⁺ Wᵀδ)`, `s⁻ = f(a − c⁻ Wᵀδ)` (DESIGN.md §1; paper
    /// Eq. 19 for DP⊤, Eq. 2 for DP): DP⊤ `(1 − α, α)`, DP `(α, 1 − α)`.
    /// Damped DP has DP's gains: its damping changes the iteration, not
    /// the fixed point. The circuit's amplifiers take these as nominal gains.
    pub fn nudging_gains(self, alpha: f32) -> (f32, f32) {
        match self {
            DualVariant::Dpt => (1.0 - alpha, alpha),
            DualVariant::Dp | DualVariant::DpDamped => (alpha, 1.0 - alpha),
        }
    }
}

/// Hyper-parameters of a DP-family rule.
#[derive(Clone, Debug, PartialEq)]
pub struct DualParams {
    /// The variant.
    pub variant: DualVariant,
    /// α at the output (and in the hidden layers of DP⊤).
    pub alpha: f32,
    /// α of DP's hidden layers (equal to `alpha` unless set separately).
    pub hidden_alpha: f32,
    /// Nudging strength β > 0.
    pub beta: f32,
    /// Treat the input as a dyad too (input-robust DP).
    pub robust_input: bool,
    /// Power-iteration steps for damped DP's spectral-norm estimates.
    pub power_iterations: usize,
}

impl DualParams {
    /// α used to form s̄ in hidden layers (and the input dyad).
    pub fn mean_alpha(&self) -> f32 {
        self.hidden_alpha
    }

    /// Nudging gains (c⁺, c⁻) of the hidden rule: s⁺ = f(a + c⁺ Wᵀδ),
    /// s⁻ = f(a − c⁻ Wᵀδ). DP⊤: (1−α, α); DP: (α, 1−α).
    pub fn hidden_gains(&self) -> (f32, f32) {
        self.variant.nudging_gains(self.hidden_alpha)
    }

    /// The nudged output dyad (s⁺_L, s⁻_L) for drive `a` (the un-nudged
    /// prediction) and one-hot target `y`, written into `plus`/`minus`.
    pub fn nudge_output(
        &self,
        loss: Loss,
        a: &Mat,
        y: &Mat,
        grad: &mut Mat,
        plus: &mut Mat,
        minus: &mut Mat,
    ) {
        ensure_shape(plus, a.nrows(), a.ncols());
        ensure_shape(minus, a.nrows(), a.ncols());
        let (alpha, beta) = (self.alpha, self.beta);
        // Each branch maps (a_i, r_i) to (s⁺_i, s⁻_i), with r the loss gradient
        // g (linearised nudge) or the target y (DP's closed-form least squares).
        let closed_form_mse = self.variant != DualVariant::Dpt && loss == Loss::Mse;
        if !closed_form_mse {
            loss.gradient(a, y, grad);
        }
        let (reference, rule): (&Mat, ElementNudge) = match (self.variant, loss) {
            (DualVariant::Dpt, _) => (
                grad,
                Box::new(move |a, g| (a - (1.0 - alpha) * beta * g, a + alpha * beta * g)),
            ),
            (DualVariant::Dp | DualVariant::DpDamped, Loss::Mse) => {
                let (cp, cm) = (alpha * beta, (1.0 - alpha) * beta);
                (
                    y,
                    Box::new(move |a, y| ((a + cp * y) / (1.0 + cp), (a - cm * y) / (1.0 - cm))),
                )
            }
            (DualVariant::Dp | DualVariant::DpDamped, Loss::Ce) => (
                grad,
                Box::new(move |a, g| (a - alpha * beta * g, a + (1.0 - alpha) * beta * g)),
            ),
        };
        for (((p, m), &ai), &ri) in plus
            .as_mut_slice()
            .iter_mut()
            .zip(minus.as_mut_slice().iter_mut())
            .zip(a.as_slice())
            .zip(reference.as_slice())
        {
            (*p, *m) = rule(ai, ri);
        }
    }
}

/// The dyadic state of every layer during inference, with the drives and
/// the cached means and differences. Index k = 0..L−1 holds layer k+1.
#[derive(Clone, Debug, Default)]
pub struct DualState {
    /// Mean input s̄_0 (= x unless the input is a dyad).
    pub input_mean: Mat,
    /// The clean input x.
    pub input: Mat,
    /// s⁺_k.
    pub plus: Vec<Mat>,
    /// s⁻_k.
    pub minus: Vec<Mat>,
    /// Drives a_k = W_k s̄_{k−1} + b_k (the output's a_L is the free prediction).
    pub drive: Vec<Mat>,
    /// s̄_k = α s⁺_k + (1−α) s⁻_k.
    pub mean: Vec<Mat>,
    /// δ_k = s⁺_k − s⁻_k.
    pub diff: Vec<Mat>,
    /// Free-phase prediction a_L from the initial forward pass.
    pub free_output: Mat,
    feedback: Mat,
    loss_grad: Mat,
    damping: Vec<f32>,
}

/// What one inference reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferenceReport {
    /// max |s±| per layer (index 0 = layer 1); infinite if non-finite.
    pub layer_max_state: Vec<f32>,
    /// Largest change of any state in the last sweep/iteration.
    pub last_change: f32,
}

impl InferenceReport {
    /// max |s±| over all layers.
    pub fn max_state(&self) -> f32 {
        self.layer_max_state.iter().cloned().fold(0.0, f32::max)
    }
}

/// The hidden nudging step s±_k = f(a_k ± c± W_{k+1}ᵀ δ_{k+1}) of DP and
/// DP⊤ (DESIGN.md §1), optionally damped toward the previous state.
struct HiddenRule {
    cp: f32,
    cm: f32,
    damping: f32,
}

impl HiddenRule {
    /// Updates `plus`/`minus` in place from the drive `a` and feedback `fb`
    /// and returns the largest change of any state, or +∞ if a state became
    /// NaN (so that a settle loop does not take a NaN for convergence:
    /// `f32::max` would drop it).
    #[inline(always)]
    fn run(
        &self,
        f: impl Fn(f32) -> f32 + Copy,
        plus: &mut [f32],
        minus: &mut [f32],
        a: &[f32],
        fb: &[f32],
    ) -> f32 {
        let Self { cp, cm, damping } = *self;
        if damping == 0.0 {
            largest_change(plus, minus, a, fb, |_, _, ai, g| {
                (f(ai + cp * g), f(ai - cm * g))
            })
        } else {
            let inv = 1.0 / (1.0 + damping);
            largest_change(plus, minus, a, fb, |p, m, ai, g| {
                (
                    f((ai + damping * p + cp * g) * inv),
                    f((ai + damping * m - cm * g) * inv),
                )
            })
        }
    }
}

/// [`HiddenRule::run`] on one layer's states, for
/// [`Activation::dispatch`](crate::network::Activation::dispatch).
struct HiddenStep<'a> {
    rule: HiddenRule,
    plus: &'a mut [f32],
    minus: &'a mut [f32],
    drive: &'a [f32],
    fb: &'a [f32],
}

impl WithActivation for HiddenStep<'_> {
    type Output = f32;
    fn run(self, f: impl Fn(f32) -> f32 + Copy) -> f32 {
        self.rule.run(f, self.plus, self.minus, self.drive, self.fb)
    }
}

/// Sets `(plus[i], minus[i]) = step(plus[i], minus[i], a[i], fb[i])` and
/// returns the largest change of any entry (+∞ if one became NaN). Eight
/// lanes of running maxima, so that the loop vectorises (a single `max`
/// chain does not).
#[inline(always)]
fn largest_change(
    plus: &mut [f32],
    minus: &mut [f32],
    a: &[f32],
    fb: &[f32],
    step: impl Fn(f32, f32, f32, f32) -> (f32, f32),
) -> f32 {
    const LANES: usize = 8;
    let mut lane_max = [0.0f32; LANES];
    // A NaN change makes its lane's sum NaN (the changes are ≥ 0, so no
    // ∞ − ∞ can make one).
    let mut lane_sum = [0.0f32; LANES];
    let one = |p: &mut f32, m: &mut f32, ai: f32, g: f32, max: &mut f32, sum: &mut f32| {
        let (np, nm) = step(*p, *m, ai, g);
        let (dp, dm) = ((np - *p).abs(), (nm - *m).abs());
        *sum += dp + dm;
        // `>` selects, ignoring NaN (caught by the sum) like maxps.
        let d = if dp > dm { dp } else { dm };
        *max = if d > *max { d } else { *max };
        *p = np;
        *m = nm;
    };
    let mut plus_chunks = plus.chunks_exact_mut(LANES);
    let mut minus_chunks = minus.chunks_exact_mut(LANES);
    let mut a_chunks = a.chunks_exact(LANES);
    let mut fb_chunks = fb.chunks_exact(LANES);
    for (((p, m), ai), g) in (&mut plus_chunks)
        .zip(&mut minus_chunks)
        .zip(&mut a_chunks)
        .zip(&mut fb_chunks)
    {
        for k in 0..LANES {
            one(
                &mut p[k],
                &mut m[k],
                ai[k],
                g[k],
                &mut lane_max[k],
                &mut lane_sum[k],
            );
        }
    }
    for (((p, m), &ai), &g) in plus_chunks
        .into_remainder()
        .iter_mut()
        .zip(minus_chunks.into_remainder().iter_mut())
        .zip(a_chunks.remainder())
        .zip(fb_chunks.remainder())
    {
        one(p, m, ai, g, &mut lane_max[0], &mut lane_sum[0]);
    }
    if lane_sum.iter().any(|s| s.is_nan()) {
        f32::INFINITY
    } else {
        lane_max.iter().fold(0.0f32, |x, &y| x.max(y))
    }
}

fn combine_mean(alpha: f32, plus: &Mat, minus: &Mat, mean: &mut Mat, diff: &mut Mat) {
    ensure_shape(mean, plus.nrows(), plus.ncols());
    ensure_shape(diff, plus.nrows(), plus.ncols());
    for (((m, d), &p), &n) in mean
        .as_mut_slice()
        .iter_mut()
        .zip(diff.as_mut_slice().iter_mut())
        .zip(plus.as_slice().iter())
        .zip(minus.as_slice().iter())
    {
        *m = alpha * p + (1.0 - alpha) * n;
        *d = p - n;
    }
}

/// Power-iteration estimate of the spectral norm ‖W‖₂ (`iterations` steps of
/// v ← WᵀW v / ‖WᵀW v‖ from a fixed start vector).
pub fn spectral_norm_estimate(w: &Mat, iterations: usize) -> f32 {
    let n = w.ncols();
    if n == 0 || w.nrows() == 0 {
        return 0.0;
    }
    // Deterministic, non-degenerate start vector.
    let mut v = crate::linalg::Vector::from_fn(n, |i, _| 1.0 + 0.1 * ((i * 7919) % 13) as f32);
    v /= v.norm();
    let mut sigma = 0.0;
    for _ in 0..iterations.max(1) {
        let u = w * &v;
        sigma = u.norm();
        let z = w.transpose() * u;
        let zn = z.norm();
        if zn == 0.0 || !zn.is_finite() {
            return sigma;
        }
        v = z / zn;
    }
    (w * &v).norm().max(sigma)
}

/// Runs DP-family inference on a network and produces the local gradients.
pub struct DualInference<'a> {
    /// The rule's parameters.
    pub params: &'a DualParams,
    /// The network whose arrays are read.
    pub net: &'a mut Network,
    /// The states being settled.
    pub state: &'a mut DualState,
}

impl DualInference<'_> {
    fn depth(&self) -> usize {
        self.net.depth()
    }

    /// Forward initialisation s⁺_k = s⁻_k = f(a_k) with a_k from s̄_{k−1},
    /// then the output nudge (the first step of every schedule).
    pub fn forward_init(&mut self, x: &Mat, y: &Mat) {
        let depth = self.depth();
        let st = &mut *self.state;
        st.plus.resize_with(depth, Mat::default);
        st.minus.resize_with(depth, Mat::default);
        st.drive.resize_with(depth, Mat::default);
        st.mean.resize_with(depth, Mat::default);
        st.diff.resize_with(depth, Mat::default);
        ensure_shape(&mut st.input, x.nrows(), x.ncols());
        st.input.copy_from(x);
        ensure_shape(&mut st.input_mean, x.nrows(), x.ncols());
        st.input_mean.copy_from(x);
        if self.params.variant == DualVariant::DpDamped {
            let (_, c_minus) = self.params.hidden_gains();
            let asym = (1.0 - 2.0 * c_minus).abs();
            st.damping = (0..depth)
                .map(|k| {
                    if k + 1 < depth {
                        let gamma = spectral_norm_estimate(
                            &self.net.layers[k + 1].weights(),
                            self.params.power_iterations,
                        );
                        (gamma * gamma - 1.0).max(0.0) / 2.0 * asym
                    } else {
                        0.0
                    }
                })
                .collect();
        }
        for k in 0..depth {
            self.recompute_drive(k);
            let st = &mut *self.state;
            if k + 1 < depth {
                let f = self.net.activation;
                let a = &st.drive[k];
                ensure_shape(&mut st.plus[k], a.nrows(), a.ncols());
                f.apply_slice(a.as_slice(), st.plus[k].as_mut_slice());
                ensure_shape(&mut st.minus[k], a.nrows(), a.ncols());
                st.minus[k].copy_from(&st.plus[k]);
                combine_mean(
                    self.params.mean_alpha(),
                    &st.plus[k],
                    &st.minus[k],
                    &mut st.mean[k],
                    &mut st.diff[k],
                );
            }
        }
        let st = &mut *self.state;
        ensure_shape(
            &mut st.free_output,
            st.drive[depth - 1].nrows(),
            st.drive[depth - 1].ncols(),
        );
        st.free_output.copy_from(&st.drive[depth - 1]);
        self.nudge(y);
    }

    /// a_k = W_k s̄_{k−1} + b_k (forward read of array k).
    pub fn recompute_drive(&mut self, k: usize) {
        let st = &mut *self.state;
        let input = if k == 0 {
            &st.input_mean
        } else {
            &st.mean[k - 1]
        };
        self.net.layers[k].forward(input, &mut st.drive[k]);
    }

    /// Recomputes the output's nudged dyad from its current drive.
    pub fn nudge(&mut self, y: &Mat) {
        let l = self.depth() - 1;
        let st = &mut *self.state;
        self.params.nudge_output(
            self.net.loss,
            &st.drive[l],
            y,
            &mut st.loss_grad,
            &mut st.plus[l],
            &mut st.minus[l],
        );
        combine_mean(
            self.params.alpha,
            &st.plus[l],
            &st.minus[l],
            &mut st.mean[l],
            &mut st.diff[l],
        );
    }

    /// I_fb of hidden layer k: W_{k+1}ᵀ δ_{k+1} (transposed read of array k+1).
    pub fn feedback_into(&mut self, k: usize, out: &mut Mat) {
        let st = &*self.state;
        self.net.layers[k + 1].transposed(&st.diff[k + 1], out);
    }

    /// Updates hidden layer k from its stored drive and the current feedback
    /// (DP⊤/DP/damped rule). Returns the largest change of s±.
    pub fn update_hidden(&mut self, k: usize) -> f32 {
        let mut fb = std::mem::take(&mut self.state.feedback);
        self.feedback_into(k, &mut fb);
        let change = self.apply_hidden_rule(k, &fb);
        self.state.feedback = fb;
        change
    }

    /// The hidden rule given the feedback current `fb` = W_{k+1}ᵀ δ_{k+1}.
    pub fn apply_hidden_rule(&mut self, k: usize, fb: &Mat) -> f32 {
        let (cp, cm) = self.params.hidden_gains();
        let st = &mut *self.state;
        let damping = if self.params.variant == DualVariant::DpDamped {
            st.damping[k]
        } else {
            0.0
        };
        // One dispatch on f per layer rather than one per neuron, so that
        // the loop inlines f and vectorises.
        let change = self.net.activation.dispatch(HiddenStep {
            rule: HiddenRule { cp, cm, damping },
            plus: st.plus[k].as_mut_slice(),
            minus: st.minus[k].as_mut_slice(),
            drive: st.drive[k].as_slice(),
            fb: fb.as_slice(),
        });
        combine_mean(
            self.params.mean_alpha(),
            &st.plus[k],
            &st.minus[k],
            &mut st.mean[k],
            &mut st.diff[k],
        );
        change
    }

    /// Input-robust variant: s±_0 = x ± c± W_1ᵀ δ_1, so
    /// s̄_0 = x + (α c⁺ − (1−α) c⁻) W_1ᵀ δ_1 (zero shift for DP⊤, whose gains make s̄_0 = x).
    pub fn update_input(&mut self) {
        let mut fb = std::mem::take(&mut self.state.feedback);
        self.net.layers[0].transposed(&self.state.diff[0], &mut fb);
        self.set_input_mean(&fb);
        self.state.feedback = fb;
    }

    /// s̄_0 = x + (α c⁺ − (1−α) c⁻)·`fb` for the input feedback `fb` = W_1ᵀ δ_1.
    fn set_input_mean(&mut self, fb: &Mat) {
        let (cp, cm) = self.params.hidden_gains();
        let a = self.params.mean_alpha();
        let coef = a * cp - (1.0 - a) * cm;
        let st = &mut *self.state;
        for ((m, &x), &g) in st
            .input_mean
            .as_mut_slice()
            .iter_mut()
            .zip(st.input.as_slice())
            .zip(fb.as_slice())
        {
            *m = x + coef * g;
        }
    }

    fn backward_sweep(&mut self) -> f32 {
        let hidden = self.depth() - 1;
        let mut change = 0.0f32;
        for k in (0..hidden).rev() {
            change = change.max(self.update_hidden(k));
        }
        if self.params.robust_input {
            self.update_input();
        }
        change
    }

    fn forward_sweep_and_output(&mut self, y: &Mat) -> f32 {
        let depth = self.depth();
        let first = if self.params.robust_input { 0 } else { 1 };
        let mut change = 0.0f32;
        for k in first..depth.saturating_sub(1) {
            self.recompute_drive(k);
            change = change.max(self.update_hidden(k));
        }
        self.recompute_drive(depth - 1);
        change.max(self.nudge_and_measure(y))
    }

    /// One synchronous (Jacobi) iteration: every layer's new state from the
    /// previous states of its neighbours. Returns the largest change.
    pub fn jacobi_iteration(&mut self, y: &Mat) -> f32 {
        let depth = self.depth();
        // Feedback from the *previous* differences, for every hidden layer, before any update.
        let mut feedbacks: Vec<Mat> = Vec::with_capacity(depth.saturating_sub(1));
        for k in 0..depth - 1 {
            let mut fb = Mat::zeros(0, 0);
            self.feedback_into(k, &mut fb);
            feedbacks.push(fb);
        }
        let input_fb = if self.params.robust_input {
            let mut fb = Mat::zeros(0, 0);
            self.net.layers[0].transposed(&self.state.diff[0], &mut fb);
            Some(fb)
        } else {
            None
        };
        // Drives from the *previous* means.
        let prev_means: Vec<Mat> = self.state.mean.clone();
        let prev_input = self.state.input_mean.clone();
        for k in 0..depth {
            let input = if k == 0 {
                &prev_input
            } else {
                &prev_means[k - 1]
            };
            self.net.layers[k].forward(input, &mut self.state.drive[k]);
        }
        let mut change = 0.0f32;
        for (k, fb) in feedbacks.iter().enumerate() {
            change = change.max(self.apply_hidden_rule(k, fb));
        }
        if let Some(fb) = input_fb {
            self.set_input_mean(&fb);
        }
        change.max(self.nudge_and_measure(y))
    }

    /// Re-nudges the output from its current drive; returns how far s⁺_L moved.
    fn nudge_and_measure(&mut self, y: &Mat) -> f32 {
        let before = self.state.plus[self.depth() - 1].clone();
        self.nudge(y);
        (&self.state.plus[self.depth() - 1] - before).amax()
    }

    /// Settles the states with `schedule` (after [`Self::forward_init`]).
    pub fn run_schedule(&mut self, schedule: Schedule, y: &Mat) -> f32 {
        let mut change = 0.0;
        match schedule {
            Schedule::FwBw { rounds } => {
                for _ in 1..rounds {
                    self.backward_sweep();
                    change = self.forward_sweep_and_output(y);
                }
                change = change.max(self.backward_sweep());
            }
            Schedule::Forward { sweeps } => {
                for _ in 0..sweeps {
                    change = self.forward_sweep_all(y);
                }
            }
            Schedule::Jacobi { iterations } => {
                for _ in 0..iterations {
                    change = self.jacobi_iteration(y);
                }
            }
        }
        change
    }

    fn forward_sweep_all(&mut self, y: &Mat) -> f32 {
        if self.params.robust_input {
            self.update_input();
        }
        let depth = self.depth();
        let mut change = 0.0f32;
        for k in 0..depth - 1 {
            self.recompute_drive(k);
            change = change.max(self.update_hidden(k));
        }
        self.recompute_drive(depth - 1);
        self.nudge(y);
        change
    }

    /// max |s±| per layer of the current state.
    pub fn report(&self, last_change: f32) -> InferenceReport {
        let st = &*self.state;
        InferenceReport {
            layer_max_state: st
                .plus
                .iter()
                .zip(&st.minus)
                .map(|(p, m)| max_abs(p).max(max_abs(m)))
                .collect(),
            last_change,
        }
    }

    /// The local weight rule ∇W_k = −δ_k s̄ᵀ_{k−1}/(Bβ), ∇b_k = −δ_k 1/(Bβ),
    /// for every layer, in factored form.
    pub fn local_gradients(&self) -> Vec<OuterProductGradient> {
        let st = &*self.state;
        let batch = st.input.ncols() as f32;
        let scale = -1.0 / (batch * self.params.beta);
        (0..self.net.depth())
            .map(|k| OuterProductGradient {
                left: st.diff[k].clone(),
                right: if k == 0 {
                    st.input_mean.clone()
                } else {
                    st.mean[k - 1].clone()
                },
                scale,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane-wise hidden step against a plain scalar loop, for lengths
    /// around the lane width, and a NaN state in any position (full lanes
    /// and remainder) reported as an infinite change.
    #[test]
    fn the_hidden_step_matches_a_scalar_loop_and_reports_nan_as_infinite_change() {
        let relu = |v: f32| v.max(0.0);
        let rule = HiddenRule {
            cp: 0.5,
            cm: 0.5,
            damping: 0.0,
        };
        for n in [0usize, 1, 7, 8, 9, 17, 40] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let fb: Vec<f32> = (0..n).map(|i| (i as f32 * 0.91).cos()).collect();
            let old: Vec<f32> = (0..n).map(|i| 0.1 * i as f32).collect();
            let (mut plus, mut minus) = (old.clone(), old.clone());
            let change = rule.run(relu, &mut plus, &mut minus, &a, &fb);
            let mut expected = 0.0f32;
            for i in 0..n {
                let (p, m) = (relu(a[i] + 0.5 * fb[i]), relu(a[i] - 0.5 * fb[i]));
                assert_eq!((plus[i], minus[i]), (p, m), "n {n}, entry {i}");
                expected = expected.max((p - old[i]).abs()).max((m - old[i]).abs());
            }
            assert_eq!(change, expected, "n {n}");
            for at in 0..n {
                let mut a_nan = a.clone();
                a_nan[at] = f32::NAN;
                let (mut plus, mut minus) = (old.clone(), old.clone());
                // Identity f: relu would turn the NaN drive into 0.
                let change = rule.run(|v| v, &mut plus, &mut minus, &a_nan, &fb);
                assert_eq!(change, f32::INFINITY, "n {n}, NaN at {at}");
            }
        }
    }
}
