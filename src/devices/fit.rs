//! Fitting a device model to a pulse trace (`dyadsim devices fit`): a lab's
//! measured pulse response, or one that `dyadsim devices trace` simulated,
//! in the columns `device,pulse,direction,conductance_us` (for each device
//! its up pulses, then its down pulses, the conductance read after each).
//!
//! **Model.** The fit estimates the parameters of the pulse model of
//! DESIGN.md §2.1 with the `absolute` anchor: the step of device `i` in
//! one direction at the normalised state `x` is `s_i m(x)` plus noise,
//! where `m` is the mean response of the chosen form (`linear`:
//! `α + βx`; `soft_bounds`: the same line, vanishing at the bounds;
//! `exponential`: `α + β e^{kx}`; `piecewise`: linear interpolation of `N`
//! values at equidistant points), `s_i` the device's scale (mean 1), and the
//! noise the cycle-to-cycle part `σ b ξ` (`b` the step itself,
//! multiplicative, or the device's nominal step, additive) plus a
//! read-visible write noise `ε` redrawn at every write.
//!
//! **Procedure.**
//! 1. Devices that never move are stuck (counted as `stuck_at_min` or
//!    `stuck_at_max` by where they sit) and left out.
//! 2. The range: the mean over devices of each device's lowest and highest
//!    smoothed conductance (`soft_bounds`: where each device's fitted up
//!    and down steps vanish), `g = (G − G_min)/(G_max − G_min)`.
//! 3. Every step `Δ_k = g_k − g_{k−1}` (down: `g_{k−1} − g_k`) is paired
//!    with the state before it, extrapolated from the reads before
//!    `g_{k−1}`, so that neither the step's write noise (in `g_{k−1}`,
//!    `g_k`) nor its cycle-to-cycle noise (in every later read) is in the
//!    position it is regressed on (a plain `g_{k−1}` would bias every slope
//!    by `−σ_ε²/var(x)`). Steps that end near the bound they move towards
//!    (within 1.5 mean steps or 4 median |steps|), where the bound may have
//!    clipped the step or its noise, are left out.
//! 4. Least squares of the steps of all devices on the response's basis,
//!    each device weighted alike, gives `m_up`, `m_down` (`exponential`:
//!    the rate `k` by a grid search over `[−15, 15]` in steps of 0.5,
//!    refined in steps of 0.05); the symmetry point `x_c` where `m_up = m_down` is
//!    the model's `g_center`; `dw_min` and `up_down` are the steps there
//!    (aihwkit's convention inverted), the response's parameters follow
//!    from the coefficients.
//! 5. Each device's scale `s_i` per direction is its least-squares factor
//!    on `m`; `γ_i = (s_up + s_down)/2`, `u_i = (s_up − s_down)/2` give
//!    `dw_min_dtod` and `up_down_dtod`, their variances less the part the
//!    cycle-to-cycle noise puts into each `s_i` (from the device's own
//!    residuals). Log-normal when the `γ_i` are skewed and their logarithms
//!    are not. The bound spreads are relative to `g_center`.
//! 6. The residuals `r_k` give the noise: `−cov(r_k, r_{k+1}) = σ_ε²`
//!    (write noise; consecutive steps share one write's `ε`) and
//!    `E r² = 2σ_ε² + σ² b²`, solved for `σ` with `b` multiplicative and
//!    additive, the better fit kept.
//!
//! **Standard errors.** Steps 4–5 are repeated on bootstrap resamples of the
//! devices (`bootstrap` replicates, from per-device sufficient statistics,
//! so that a replicate costs a few sums); the spread of each parameter over
//! the replicates is its standard error. The range's errors are those of
//! the means over devices; the noise parameters' those of the means of the
//! per-device estimates.
//!
//! **Not fitted** (written as 0, "not known", for the user to fill in):
//! read noise (a trace reads each state once, so a per-read noise cannot be
//! told from write noise and appears as `write_noise`), drift, endurance,
//! quantised levels, pulse width and energy. One-sided devices (no down
//! pulses) are refused.

// `!(x > 0.0)` is meant: a NaN must fail these checks too. The two
// directions are indexed `0` (up) and `1` (down) across parallel arrays.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::needless_range_loop)]

use super::file::{FitRecord, RawDeviceModel, ResponseKind};
use super::{Anchor, DeviceModel, StepConvention, PIECEWISE_MAX_POINTS};
use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One device's trace: conductances (µS) read after each up pulse, then
/// after each down pulse.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceTrace {
    /// The `device` column's value.
    pub id: String,
    /// After up pulse 0, 1, …
    pub up: Vec<f64>,
    /// After down pulse 0, 1, … (the first follows the last up pulse).
    pub down: Vec<f64>,
}

/// A pulse trace of several devices.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The devices, in the order of their first row.
    pub devices: Vec<DeviceTrace>,
}

/// The columns a trace must have.
pub const TRACE_COLUMNS: [&str; 4] = ["device", "pulse", "direction", "conductance_us"];

/// Fewest pulses per direction and device the fit takes.
pub const MIN_PULSES: usize = 8;

impl Trace {
    /// Reads a trace file (errors name the file, row and column).
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read trace {}", path.display()))?;
        Self::from_reader(file, &path.display().to_string())
    }

    /// Parses CSV text with the columns [`TRACE_COLUMNS`] (in any order;
    /// other columns are an error, so that a misspelt one is not
    /// skipped); `origin` names the source in errors. Rows are numbered as
    /// lines of the file (the header is row 1).
    pub fn from_reader(reader: impl std::io::Read, origin: &str) -> Result<Self> {
        let mut csv = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(reader);
        let header = csv
            .headers()
            .with_context(|| format!("trace {origin}: cannot read the header row"))?
            .clone();
        let mut column = [usize::MAX; 4];
        for (k, name) in header.iter().enumerate() {
            match TRACE_COLUMNS.iter().position(|c| *c == name) {
                Some(c) => column[c] = k,
                None => bail!(
                    "trace {origin}, row 1: unknown column `{name}`; a trace has the columns {}",
                    TRACE_COLUMNS.join(", ")
                ),
            }
        }
        for (c, name) in TRACE_COLUMNS.iter().enumerate() {
            if column[c] == usize::MAX {
                bail!(
                    "trace {origin}, row 1: missing column `{name}` (the header must name {}; it has: {})",
                    TRACE_COLUMNS.join(", "),
                    header.iter().collect::<Vec<_>>().join(", ")
                );
            }
        }
        // Per device: (pulse, conductance, row) per direction.
        type Rows = Vec<(usize, f64, u64)>;
        let mut order: Vec<String> = Vec::new();
        let mut rows: HashMap<String, [Rows; 2]> = HashMap::new();
        for record in csv.records() {
            let record = record.map_err(|e| anyhow!("trace {origin}: {e}"))?;
            let row = record.position().map(|p| p.line()).unwrap_or(0);
            let field = |c: usize| record.get(column[c]).unwrap_or("");
            let device = field(0).to_string();
            if device.is_empty() {
                bail!("trace {origin}, row {row}, column device: empty");
            }
            let pulse: usize = field(1).parse().map_err(|_| {
                anyhow!(
                    "trace {origin}, row {row}, column pulse: `{}` is not a pulse number (0, 1, 2, … within each direction)",
                    field(1)
                )
            })?;
            let direction = match field(2) {
                "up" => 0,
                "down" => 1,
                other => bail!(
                    "trace {origin}, row {row}, column direction: `{other}` (expected `up` or `down`)"
                ),
            };
            let g: f64 = field(3).parse().map_err(|_| {
                anyhow!(
                    "trace {origin}, row {row}, column conductance_us: `{}` is not a number",
                    field(3)
                )
            })?;
            if !g.is_finite() {
                bail!(
                    "trace {origin}, row {row}, column conductance_us: {g} is not a finite conductance"
                );
            }
            let entry = rows.entry(device.clone()).or_insert_with(|| {
                order.push(device.clone());
                [Vec::new(), Vec::new()]
            });
            entry[direction].push((pulse, g, row));
        }
        if order.is_empty() {
            bail!("trace {origin}: no rows after the header");
        }
        let mut devices = Vec::with_capacity(order.len());
        for id in order {
            let mut dirs = rows.remove(&id).unwrap_or_default();
            let mut out: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            for (d, name) in ["up", "down"].iter().enumerate() {
                let list = &mut dirs[d];
                list.sort_by_key(|&(p, _, row)| (p, row));
                for (k, &(p, _, row)) in list.iter().enumerate() {
                    if p < k {
                        bail!("trace {origin}, row {row}: device {id} has {name} pulse {p} twice");
                    }
                    if p > k {
                        bail!(
                            "trace {origin}: device {id} lacks {name} pulse {k} (row {row} has pulse {p}; pulses count 0, 1, 2, … within each direction)"
                        );
                    }
                }
                out[d] = list.iter().map(|&(_, g, _)| g).collect();
            }
            let [up, down] = out;
            devices.push(DeviceTrace { id, up, down });
        }
        let trace = Trace { devices };
        trace.check(origin)?;
        Ok(trace)
    }

    /// What the fit needs: two devices or more, each with at least
    /// [`MIN_PULSES`] up and down pulses.
    fn check(&self, origin: &str) -> Result<()> {
        if self.devices.iter().all(|d| d.down.is_empty()) {
            bail!(
                "trace {origin}: no down pulses; the fit needs up and down pulses per device (a one-sided device, such as pcm, which has SET pulses only, cannot be fitted)"
            );
        }
        if self.devices.len() < 2 {
            bail!(
                "trace {origin}: one device ({}); the device-to-device spreads need at least 2 devices",
                self.devices[0].id
            );
        }
        for d in &self.devices {
            for (name, n) in [("up", d.up.len()), ("down", d.down.len())] {
                if n < MIN_PULSES {
                    bail!(
                        "trace {origin}: device {} has {n} {name} pulses; the fit needs at least {MIN_PULSES} per direction",
                        d.id
                    );
                }
            }
        }
        Ok(())
    }

    /// The trace a chip's test would record of `devices` devices of
    /// `model`: from each device's lower bound (an unbounded model: its
    /// start), `pulses` up pulses then `pulses` down pulses (none for a
    /// one-sided model), the read-visible conductance (µS, no read noise)
    /// after each; the devices drawn with `seed`.
    pub fn simulate(model: &DeviceModel, devices: usize, pulses: usize, seed: u64) -> Self {
        let mut array = super::DeviceArray::new(model, devices, seed);
        let (g0, g1) = (model.conductance.g_min_us, model.conductance.g_max_us);
        let to_us = |g: f32| g0 + g as f64 * (g1 - g0);
        let devices = (0..devices)
            .map(|i| {
                if model.bounds.bounded {
                    let (lo, _) = array.bounds(i);
                    array.program(i, lo);
                }
                let mut run = |n: i32, count: usize| -> Vec<f64> {
                    (0..count)
                        .map(|_| {
                            array.pulse(i, n);
                            to_us(array.visible(i))
                        })
                        .collect()
                };
                let up = run(1, pulses);
                let down = if model.pairing.one_sided {
                    Vec::new()
                } else {
                    run(-1, pulses)
                };
                DeviceTrace {
                    id: i.to_string(),
                    up,
                    down,
                }
            })
            .collect();
        Trace { devices }
    }

    /// The trace as CSV in the columns [`TRACE_COLUMNS`], one row per pulse
    /// (conductances written as `f32`).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("device,pulse,direction,conductance_us\n");
        for d in &self.devices {
            for (direction, reads) in [("up", &d.up), ("down", &d.down)] {
                for (k, g) in reads.iter().enumerate() {
                    out.push_str(&format!("{},{k},{direction},{}\n", d.id, *g as f32));
                }
            }
        }
        out
    }

    /// Total pulses.
    pub fn pulses(&self) -> usize {
        self.devices.iter().map(|d| d.up.len() + d.down.len()).sum()
    }
}

/// The response form to fit (`--response`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitResponse {
    /// `linear`: steps affine in the state.
    Linear,
    /// `soft_bounds`: steps vanishing linearly at the bounds.
    SoftBounds,
    /// `exponential`: `α + β e^{kx}` per direction.
    Exponential,
    /// `piecewise` with this many table points.
    Piecewise(usize),
}

impl FitResponse {
    /// The model file's response kind.
    pub fn kind(self) -> ResponseKind {
        match self {
            FitResponse::Linear => ResponseKind::Linear,
            FitResponse::SoftBounds => ResponseKind::SoftBounds,
            FitResponse::Exponential => ResponseKind::Exponential,
            FitResponse::Piecewise(_) => ResponseKind::Piecewise,
        }
    }
}

impl FitResponse {
    /// The form named `name` (`linear`, `soft_bounds`, `exponential`,
    /// `piecewise`), with `points` table points for `piecewise` (default
    /// 16); `points` with another form is an error, not ignored.
    pub fn from_name(name: &str, points: Option<usize>) -> Result<Self> {
        Ok(match (name, points) {
            ("piecewise", points) => FitResponse::Piecewise(points.unwrap_or(16)),
            (other, Some(_)) => bail!(
                "points (--points) set the table of the piecewise response; they have no meaning with response {other}"
            ),
            ("linear", None) => FitResponse::Linear,
            ("soft_bounds", None) => FitResponse::SoftBounds,
            ("exponential", None) => FitResponse::Exponential,
            (other, None) => bail!(
                "response {other}: expected linear, soft_bounds, exponential or piecewise"
            ),
        })
    }
}

/// A fit of a trace file into a model file, as `dyadsim devices fit` and
/// Python's `dyadsim.fit_device` ask for it.
#[derive(Clone, Debug)]
pub struct FitRequest {
    /// The trace (CSV).
    pub trace: std::path::PathBuf,
    /// The response form's name.
    pub response: String,
    /// Piecewise table points.
    pub points: Option<usize>,
    /// The model file to write (`.toml`).
    pub out: std::path::PathBuf,
    /// The model's name (default: `out`'s file stem).
    pub name: Option<String>,
    /// Bootstrap replicates.
    pub bootstrap: usize,
    /// Bootstrap seed.
    pub seed: u64,
}

/// What [`fit_file`] gives: the fit, the model file's text for
/// `request.out` (the caller writes it, atomically), the trace's device
/// count and the fit as the JSON object `--json` prints (`model`,
/// `response`, `devices`, `stuck_devices`, `steps`, `residual_rms`,
/// `noise_rms`, `parameters`, `warnings`).
pub struct FittedFile {
    /// The fit.
    pub fit: Fit,
    /// The model file's text.
    pub text: String,
    /// Devices in the trace (stuck ones included).
    pub traced_devices: usize,
    /// The fit as JSON.
    pub json: serde_json::Value,
}

/// Runs `request`: checks it, reads the trace and fits (the caller writes
/// [`FittedFile::text`] to `request.out`).
pub fn fit_file(request: &FitRequest) -> Result<FittedFile> {
    let response = FitResponse::from_name(&request.response, request.points)?;
    let out = &request.out;
    if out.extension().and_then(|e| e.to_str()) != Some("toml") {
        bail!(
            "the model file {} (--out) must end in .toml (it loads with --device FILE.toml)",
            out.display()
        );
    }
    let name = match &request.name {
        Some(n) => n.clone(),
        None => out
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("fitted")
            .to_string(),
    };
    let trace = Trace::read(&request.trace)?;
    let fit = fit_trace(
        &trace,
        &FitOptions {
            response,
            name,
            origin: request.trace.display().to_string(),
            bootstrap: request.bootstrap,
            seed: request.seed,
        },
    )?;
    let text = fit.model_toml()?;
    let json = serde_json::json!({
        "model": out.display().to_string(),
        "response": request.response,
        "devices": fit.devices,
        "stuck_devices": trace.devices.len() - fit.devices,
        "steps": fit.steps,
        "residual_rms": fit.residual_rms,
        "noise_rms": fit.noise_rms,
        "parameters": fit.values,
        "warnings": fit.warnings,
    });
    Ok(FittedFile {
        fit,
        text,
        traced_devices: trace.devices.len(),
        json,
    })
}

/// Settings of a fit.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// The response form.
    pub response: FitResponse,
    /// The fitted model's `name`.
    pub name: String,
    /// Where the trace came from (the model's `source`).
    pub origin: String,
    /// Bootstrap replicates for the standard errors (≥ 20).
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
}

/// One fitted parameter: the model file key, its value and standard error.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FittedValue {
    /// Model file key (`dw_min`, `piecewise_up[3]`, …).
    pub key: String,
    /// Fitted value (the unit of the key, `device_models/README.md`).
    pub value: f64,
    /// Standard error.
    pub std_error: f64,
}

/// The result of a fit.
#[derive(Clone, Debug)]
pub struct Fit {
    /// The fitted model (loads with `--device`).
    pub model: DeviceModel,
    /// Every fitted parameter with its standard error.
    pub values: Vec<FittedValue>,
    /// Root-mean-square residual of the steps (fraction of the range).
    pub residual_rms: f64,
    /// The noise model's predicted root-mean-square step noise (fraction of
    /// the range): about `residual_rms` when the mean response fits.
    pub noise_rms: f64,
    /// Devices fitted (not stuck).
    pub devices: usize,
    /// Steps used (clipped steps left out).
    pub steps: usize,
    /// What the trace leaves uncertain (devices that never reached a bound).
    pub warnings: Vec<String>,
}

impl Fit {
    /// The value and standard error of `key`.
    pub fn get(&self, key: &str) -> Option<&FittedValue> {
        self.values.iter().find(|v| v.key == key)
    }

    /// The model as model-file text, with the fit's record (`[fit]`).
    pub fn model_toml(&self) -> Result<String> {
        let raw = RawDeviceModel::from(&self.model);
        toml::to_string(&raw).context("writing the fitted model")
    }
}

/// One device's steps in one direction: (position before, step magnitude).
struct Steps {
    x: Vec<f64>,
    dg: Vec<f64>,
}

impl Steps {
    /// The steps of one direction's reads `v` (magnitudes: `v_k − v_{k−1}`
    /// up, `v_{k−1} − v_k` down), each with its position before
    /// ([`position_before`]), for the reads `k` that `keep` accepts.
    fn of(v: &[f64], up: bool, keep: impl Fn(usize) -> bool) -> Self {
        let mut out = Steps {
            x: Vec::new(),
            dg: Vec::new(),
        };
        for k in (1..v.len()).filter(|&k| keep(k)) {
            out.x.push(position_before(v, k, POSITION_WINDOW));
            let dg = v[k] - v[k - 1];
            out.dg.push(if up { dg } else { -dg });
        }
        out
    }
}

/// Sufficient statistics of one device and direction on a basis.
#[derive(Clone)]
struct Stats {
    gram: Vec<f64>,
    rhs: Vec<f64>,
    yy: f64,
    n: f64,
}

impl Stats {
    fn new(p: usize) -> Self {
        Self {
            gram: vec![0.0; p * p],
            rhs: vec![0.0; p],
            yy: 0.0,
            n: 0.0,
        }
    }

    fn of(steps: &Steps, basis: &Basis) -> Self {
        let p = basis.len();
        let mut s = Self::new(p);
        let mut phi = vec![0.0; p];
        for (&x, &y) in steps.x.iter().zip(&steps.dg) {
            basis.eval(x, &mut phi);
            for a in 0..p {
                if phi[a] == 0.0 {
                    continue;
                }
                s.rhs[a] += phi[a] * y;
                for b in 0..p {
                    s.gram[a * p + b] += phi[a] * phi[b];
                }
            }
            s.yy += y * y;
            s.n += 1.0;
        }
        s
    }

    /// Adds `o` with weight `1/o.n`: every device counts alike in the
    /// pooled mean, however many steps it took to cross its range (a
    /// device with small steps takes more, and would weigh the mean
    /// response towards small steps by `1/E[1/γ]`).
    fn add_device(&mut self, o: &Stats) {
        if o.n <= 0.0 {
            return;
        }
        let w = 1.0 / o.n;
        for (a, b) in self.gram.iter_mut().zip(&o.gram) {
            *a += w * b;
        }
        for (a, b) in self.rhs.iter_mut().zip(&o.rhs) {
            *a += w * b;
        }
        self.yy += w * o.yy;
        self.n += 1.0;
    }

    /// `cᵀ G c`, `cᵀ b`.
    fn quad(&self, c: &[f64]) -> (f64, f64) {
        let p = c.len();
        let mut q = 0.0;
        for a in 0..p {
            for b in 0..p {
                q += c[a] * self.gram[a * p + b] * c[b];
            }
        }
        let l = c.iter().zip(&self.rhs).map(|(a, b)| a * b).sum();
        (q, l)
    }
}

/// A basis of the mean step `m(x) = Σ c_j φ_j(x)`.
#[derive(Clone, Copy)]
enum Basis {
    /// `[1, x]`.
    Line,
    /// `[1, e^{kx}]`.
    Exp(f64),
    /// Hat functions at `n` equidistant points.
    Hats(usize),
}

impl Basis {
    fn len(&self) -> usize {
        match self {
            Basis::Line | Basis::Exp(_) => 2,
            Basis::Hats(n) => *n,
        }
    }

    fn eval(&self, x: f64, out: &mut [f64]) {
        match *self {
            Basis::Line => {
                out[0] = 1.0;
                out[1] = x;
            }
            Basis::Exp(k) => {
                out[0] = 1.0;
                out[1] = (k * x).exp();
            }
            Basis::Hats(n) => {
                out.iter_mut().for_each(|v| *v = 0.0);
                let s = x.clamp(0.0, 1.0) * (n - 1) as f64;
                let k = (s as usize).min(n - 2);
                let t = s - k as f64;
                out[k] = 1.0 - t;
                out[k + 1] = t;
            }
        }
    }

    fn value(&self, c: &[f64], x: f64) -> f64 {
        let mut phi = [0.0; PIECEWISE_MAX_POINTS];
        let phi = &mut phi[..self.len()];
        self.eval(x, phi);
        phi.iter().zip(c).map(|(a, b)| a * b).sum()
    }
}

/// Solves the pooled least squares `(G + λ R) c = b`: a ridge tied to the
/// neighbours for hat bases (second differences, so that a table point no
/// step falls near is interpolated), a tiny diagonal otherwise.
fn solve(s: &Stats, basis: &Basis) -> Option<Vec<f64>> {
    let p = basis.len();
    let mut a = s.gram.clone();
    let scale = (0..p).map(|i| a[i * p + i]).sum::<f64>() / p as f64;
    if !(scale > 0.0) {
        return None;
    }
    if let Basis::Hats(_) = basis {
        let lambda = 1e-4 * scale;
        for k in 1..p - 1 {
            let idx = [k - 1, k, k + 1];
            let w = [1.0, -2.0, 1.0];
            for (i, wi) in idx.iter().zip(w) {
                for (j, wj) in idx.iter().zip(w) {
                    a[i * p + j] += lambda * wi * wj;
                }
            }
        }
    }
    for i in 0..p {
        a[i * p + i] += 1e-12 * scale;
    }
    let a = nalgebra::DMatrix::from_row_slice(p, p, &a);
    let b = nalgebra::DVector::from_column_slice(&s.rhs);
    a.lu()
        .solve(&b)
        .map(|c| c.iter().copied().collect())
        .filter(|c: &Vec<f64>| c.iter().all(|v| v.is_finite()))
}

/// The mean response of one direction, fitted.
#[derive(Clone)]
struct Mean {
    basis: Basis,
    c: Vec<f64>,
}

impl Mean {
    fn at(&self, x: f64) -> f64 {
        self.basis.value(&self.c, x)
    }
}

/// The exponential rates tried (per unit x), before refinement.
fn exp_grid() -> Vec<f64> {
    (-30..=30)
        .map(|k| k as f64 * 0.5)
        .filter(|k: &f64| k.abs() > 0.1)
        .collect()
}

/// Everything the bootstrap refits: per device, per direction, statistics
/// on each candidate basis.
struct Summaries {
    bases: Vec<Basis>,
    /// `[device][basis][direction]`.
    stats: Vec<Vec<[Stats; 2]>>,
}

impl Summaries {
    /// Pooled fit of the devices `pick` (indices, repeats allowed):
    /// the best basis's mean per direction.
    fn fit(&self, pick: &[usize]) -> Option<[Mean; 2]> {
        let mut best: [Option<(f64, Mean)>; 2] = [None, None];
        for (b, basis) in self.bases.iter().enumerate() {
            for dir in 0..2 {
                let mut pooled = Stats::new(basis.len());
                for &i in pick {
                    pooled.add_device(&self.stats[i][b][dir]);
                }
                let Some(c) = solve(&pooled, basis) else {
                    continue;
                };
                let (q, l) = pooled.quad(&c);
                let sse = pooled.yy - 2.0 * l + q;
                if best[dir].as_ref().is_none_or(|(e, _)| sse < *e) {
                    best[dir] = Some((sse, Mean { basis: *basis, c }));
                }
            }
        }
        let [u, d] = best;
        Some([u?.1, d?.1])
    }

    /// Each device's least-squares scale on `means` per direction, with the
    /// sampling variance of the scale from its own residuals.
    fn scales(&self, i: usize, means: &[Mean; 2]) -> [(f64, f64); 2] {
        let mut out = [(f64::NAN, 0.0); 2];
        for dir in 0..2 {
            let m = &means[dir];
            let b = self
                .bases
                .iter()
                .position(|x| same_basis(x, &m.basis))
                .unwrap_or(0);
            let s = &self.stats[i][b][dir];
            let (q, l) = s.quad(&m.c);
            if q > 0.0 && s.n > 1.0 {
                let scale = l / q;
                let sse = (s.yy - 2.0 * scale * l + scale * scale * q).max(0.0);
                let var = sse / (s.n - 1.0) / q;
                out[dir] = (scale, var);
            }
        }
        out
    }
}

impl Summaries {
    /// Device `i`'s own line `a + b x` in one direction (a line basis),
    /// with its residual variance per step and `(GᵀG)⁻¹` for the variance
    /// of a value on it.
    fn own_line(&self, i: usize, dir: usize) -> Option<OwnLine> {
        if !matches!(self.bases.first(), Some(Basis::Line)) {
            return None;
        }
        let s = &self.stats[i][0][dir];
        if s.n < 3.0 {
            return None;
        }
        let c = solve(s, &Basis::Line)?;
        let (q, l) = s.quad(&c);
        let var = ((s.yy - 2.0 * l + q) / (s.n - 2.0)).max(0.0);
        let g = nalgebra::Matrix2::new(s.gram[0], s.gram[1], s.gram[2], s.gram[3]);
        let inv = g.try_inverse()?;
        Some(OwnLine {
            a: c[0],
            b: c[1],
            var,
            inv,
        })
    }
}

/// One device's fitted line of steps (soft bounds).
struct OwnLine {
    a: f64,
    b: f64,
    var: f64,
    inv: nalgebra::Matrix2<f64>,
}

impl OwnLine {
    fn at(&self, x: f64) -> f64 {
        self.a + self.b * x
    }

    /// Sampling variance of the line's value at `x`.
    fn var_at(&self, x: f64) -> f64 {
        let v = nalgebra::Vector2::new(1.0, x);
        self.var * (v.transpose() * self.inv * v)[(0, 0)]
    }
}

fn same_basis(a: &Basis, b: &Basis) -> bool {
    match (a, b) {
        (Basis::Line, Basis::Line) => true,
        (Basis::Exp(x), Basis::Exp(y)) => x == y,
        (Basis::Hats(x), Basis::Hats(y)) => x == y,
        _ => false,
    }
}

/// The parameters steps 4–5 give, as `(key, value)` in model-file units.
struct Derived {
    values: Vec<(String, f64)>,
}

/// The symmetry point of the mean curves: where `m_up = m_down` in
/// `[0, 1]` (the crossing nearest ½ if several), else where they are closest.
fn symmetry_point(means: &[Mean; 2]) -> f64 {
    let f = |x: f64| means[0].at(x) - means[1].at(x);
    let n = 1000;
    let mut crossings = Vec::new();
    let mut prev = f(0.0);
    for k in 1..=n {
        let x = k as f64 / n as f64;
        let v = f(x);
        if prev == 0.0 {
            crossings.push((k - 1) as f64 / n as f64);
        } else if prev.signum() != v.signum() {
            let (mut a, mut b) = ((k - 1) as f64 / n as f64, x);
            let fa = prev;
            for _ in 0..50 {
                let m = 0.5 * (a + b);
                if f(m).signum() == fa.signum() {
                    a = m;
                } else {
                    b = m;
                }
            }
            crossings.push(0.5 * (a + b));
        }
        prev = v;
    }
    if let Some(c) = crossings
        .into_iter()
        .min_by(|a, b| (a - 0.5).abs().total_cmp(&(b - 0.5).abs()))
    {
        return c;
    }
    (0..=n)
        .map(|k| k as f64 / n as f64)
        .min_by(|a, b| f(*a).abs().total_cmp(&f(*b).abs()))
        .unwrap_or(0.5)
}

/// The nominal up/down steps as aihwkit's convention writes them:
/// `(dw_min, up_down)` with `up = dw_min (1 + min(u, 0))`,
/// `down = dw_min (1 − max(u, 0))`.
fn split_steps(up: f64, down: f64) -> (f64, f64) {
    if up >= down {
        (up, 1.0 - down / up)
    } else {
        (down, up / down - 1.0)
    }
}

/// Sample mean and standard deviation (n − 1).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

fn skewness(v: &[f64]) -> f64 {
    let (m, sd) = mean_sd(v);
    if !(sd > 0.0) {
        return 0.0;
    }
    v.iter().map(|x| ((x - m) / sd).powi(3)).sum::<f64>() / v.len() as f64
}

/// Steps 4–5 on the devices `pick`: the mean response's parameters and the
/// device-to-device spreads.
fn derive(
    sums: &Summaries,
    pick: &[usize],
    response: FitResponse,
    bounds: &[(f64, f64)],
) -> Option<(Derived, [Mean; 2])> {
    let means = sums.fit(pick)?;
    if response == FitResponse::SoftBounds {
        return derive_soft_bounds(sums, pick, bounds).map(|d| (d, means));
    }
    let c = symmetry_point(&means);
    let (up_c, down_c) = (means[0].at(c), means[1].at(c));
    let mut values: Vec<(String, f64)> = vec![("g_center".into(), c)];
    let (dw_min, up_down) = match response {
        FitResponse::Exponential => {
            // m(x) = α + β e^{kx} = D (1 − A e^{kx}): D = α, A = −β/α.
            let (du, dd) = (means[0].c[0], means[1].c[0]);
            let (dw, u) = split_steps(du, dd);
            for (dir, name) in [(0, "up"), (1, "down")] {
                let Basis::Exp(k) = means[dir].basis else {
                    return None;
                };
                let m = &means[dir];
                values.push((format!("exp_a_{name}"), -m.c[1] / m.c[0]));
                // The model's down factor is 1 − A_down e^{−γ_down z}
                // (z = x here): γ_down = −k; up, 1 − A_up e^{γ_up z}: γ_up = k.
                values.push((format!("exp_gamma_{name}"), if dir == 0 { k } else { -k }));
            }
            (dw, u)
        }
        _ => split_steps(up_c, down_c),
    };
    if !(dw_min > 0.0 && up_down.abs() < 1.0) {
        return None;
    }
    values.push(("dw_min".into(), dw_min));
    values.push(("up_down".into(), up_down));
    match response {
        FitResponse::Linear => {
            // m_up = D (1 − s_up (x − c)), m_down = D (1 + s_down (x − c)).
            values.push(("slope_up".into(), -means[0].c[1] / up_c));
            values.push(("slope_down".into(), means[1].c[1] / down_c));
        }
        FitResponse::Piecewise(n) => {
            for (dir, name) in [(0, "up"), (1, "down")] {
                for k in 0..n {
                    let f = (means[dir].at(k as f64 / (n - 1) as f64) / dw_min).max(0.0);
                    values.push((format!("piecewise_{name}[{k}]"), f));
                }
            }
        }
        _ => {}
    }
    // Device-to-device: γ_i, u_i, noise-corrected variances.
    let mut gammas = Vec::new();
    let mut us = Vec::new();
    let mut noise_g = 0.0;
    for &i in pick {
        let [(su, vu), (sd, vd)] = sums.scales(i, &means);
        if su.is_finite() && sd.is_finite() {
            gammas.push(0.5 * (su + sd));
            us.push(0.5 * (su - sd));
            noise_g += 0.25 * (vu + vd);
        }
    }
    if gammas.len() < 2 {
        return None;
    }
    let noise = noise_g / gammas.len() as f64;
    values.extend(spreads(&gammas, &us, noise));
    values.extend(bound_spreads(pick, bounds, c));
    Some((Derived { values }, means))
}

/// Steps 4–5 for soft bounds, from each device's own lines: under the
/// `absolute` anchor every device's up line vanishes at its own upper bound
/// and its down line at its lower bound, so the devices' lines differ in
/// slope and a pooled line would be pulled towards the devices that dwell
/// longest near their bounds. Each device's lines cross at its symmetry
/// point; `g_center` is their median, and each device's steps there give
/// `γ_i`, `u_i`.
fn derive_soft_bounds(sums: &Summaries, pick: &[usize], bounds: &[(f64, f64)]) -> Option<Derived> {
    let lines: Vec<(OwnLine, OwnLine)> = pick
        .iter()
        .filter_map(|&i| Some((sums.own_line(i, 0)?, sums.own_line(i, 1)?)))
        .collect();
    let mut crossings: Vec<f64> = lines
        .iter()
        .map(|(u, d)| (d.a - u.a) / (u.b - d.b))
        .filter(|x| x.is_finite() && *x > 0.0 && *x < 1.0)
        .collect();
    if crossings.len() < 2 {
        return None;
    }
    crossings.sort_by(f64::total_cmp);
    let c = crossings[crossings.len() / 2];
    let ups: Vec<f64> = lines.iter().map(|(u, _)| u.at(c)).collect();
    let downs: Vec<f64> = lines.iter().map(|(_, d)| d.at(c)).collect();
    let (mu, _) = mean_sd(&ups);
    let (md, _) = mean_sd(&downs);
    let (dw_min, up_down) = split_steps(mu, md);
    if !(dw_min > 0.0) {
        return None;
    }
    let scale = 0.5 * (mu + md);
    let gammas: Vec<f64> = ups
        .iter()
        .zip(&downs)
        .map(|(u, d)| 0.5 * (u + d) / scale)
        .collect();
    let us: Vec<f64> = ups
        .iter()
        .zip(&downs)
        .map(|(u, d)| 0.5 * (u - d) / scale)
        .collect();
    let noise = lines
        .iter()
        .map(|(u, d)| 0.25 * (u.var_at(c) + d.var_at(c)))
        .sum::<f64>()
        / lines.len() as f64
        / (scale * scale);
    let mut values: Vec<(String, f64)> = vec![
        ("g_center".into(), c),
        ("dw_min".into(), dw_min),
        ("up_down".into(), up_down),
    ];
    values.extend(spreads(&gammas, &us, noise));
    values.extend(bound_spreads(pick, bounds, c));
    Some(Derived { values })
}

/// `dw_min_dtod` (normal, or log-normal when the gains are skewed and
/// their logarithms are not), `dtod_lognormal` (1 or 0) and `up_down_dtod`
/// from the devices' gains `γ_i` (about 1) and biases `u_i`, each
/// variance less `noise`, the variance the step noise puts into one
/// device's estimate; spreads relative to the mean gain.
fn spreads(gammas: &[f64], us: &[f64], noise: f64) -> Vec<(String, f64)> {
    let (gm, gsd) = mean_sd(gammas);
    let (_, usd) = mean_sd(us);
    let logs: Vec<f64> = gammas
        .iter()
        .filter(|g| **g > 0.0)
        .map(|g| g.ln())
        .collect();
    let lognormal = logs.len() == gammas.len() && {
        let (s, sl) = (skewness(gammas), skewness(&logs));
        s > 0.5 && sl.abs() < s.abs()
    };
    let dtod = if lognormal {
        let (_, lsd) = mean_sd(&logs);
        (lsd * lsd - noise / (gm * gm)).max(0.0).sqrt()
    } else {
        (gsd * gsd - noise).max(0.0).sqrt() / gm
    };
    vec![
        ("dw_min_dtod".into(), dtod),
        ("dtod_lognormal".into(), if lognormal { 1.0 } else { 0.0 }),
        (
            "up_down_dtod".into(),
            (usd * usd - noise).max(0.0).sqrt() / gm,
        ),
    ]
}

/// The bound spreads relative to the distance from `g_center` (aihwkit's
/// `w_min_dtod`, `w_max_dtod`).
fn bound_spreads(pick: &[usize], bounds: &[(f64, f64)], c: f64) -> Vec<(String, f64)> {
    let lo: Vec<f64> = pick.iter().map(|&i| (c - bounds[i].0) / c).collect();
    let hi: Vec<f64> = pick
        .iter()
        .map(|&i| (bounds[i].1 - c) / (1.0 - c))
        .collect();
    vec![
        ("bound_dtod_lo".into(), mean_sd(&lo).1),
        ("bound_dtod_hi".into(), mean_sd(&hi).1),
    ]
}

/// The position before the step from read `k − 1` to read `k`: the line
/// through the `w` reads before `k − 1` (`k − 1 − w … k − 2`), extrapolated
/// to `k − 1`. Reads `k − 1` and `k` are left out because the step's own
/// write noise is in them (regressing on `v[k − 1]` would bias every slope
/// by `−σ_ε²/var(x)`), later reads because the step's cycle-to-cycle noise
/// is (the state is its running sum). Fewer than 3 reads before: `v[k − 1]`.
fn position_before(v: &[f64], k: usize, w: usize) -> f64 {
    if k < 4 {
        return v[k - 1];
    }
    let lo = k.saturating_sub(1 + w);
    let window = &v[lo..k - 1];
    let n = window.len() as f64;
    let tm = (n - 1.0) / 2.0;
    let vm = window.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, &y) in window.iter().enumerate() {
        let dt = t as f64 - tm;
        sxy += dt * (y - vm);
        sxx += dt * dt;
    }
    // Index k − 1 is at t = n in the window's coordinates.
    vm + sxy / sxx * (n - tm)
}

/// Reads before a step that give its position ([`position_before`]).
const POSITION_WINDOW: usize = 8;

/// Fits a model to `trace` (module documentation).
pub fn fit_trace(trace: &Trace, opts: &FitOptions) -> Result<Fit> {
    if let FitResponse::Piecewise(n) = opts.response {
        if !(2..=PIECEWISE_MAX_POINTS).contains(&n) {
            bail!("--points {n}: a piecewise table has 2 to {PIECEWISE_MAX_POINTS} points");
        }
    }
    if opts.bootstrap < 20 {
        bail!(
            "--bootstrap {}: at least 20 replicates are needed for standard errors",
            opts.bootstrap
        );
    }
    // 1. Stuck devices: no read differs from the first by more than 1e-9
    //    of the trace's range.
    let all: Vec<f64> = trace
        .devices
        .iter()
        .flat_map(|d| d.up.iter().chain(&d.down).copied())
        .collect();
    let gmin = all.iter().copied().fold(f64::INFINITY, f64::min);
    let gmax = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(gmax > gmin) {
        bail!(
            "trace {}: every read is the same conductance ({gmin} µS); no device moves",
            opts.origin
        );
    }
    let tol = 1e-9 * (gmax - gmin);
    let moves = |d: &DeviceTrace| {
        let first = d.up[0];
        d.up.iter().chain(&d.down).any(|&g| (g - first).abs() > tol)
    };
    let active: Vec<&DeviceTrace> = trace.devices.iter().filter(|d| moves(d)).collect();
    let stuck: Vec<&DeviceTrace> = trace.devices.iter().filter(|d| !moves(d)).collect();
    if active.len() < 2 {
        bail!(
            "trace {}: {} of {} devices never change; the fit needs at least 2 that do",
            opts.origin,
            stuck.len(),
            trace.devices.len()
        );
    }
    // Each direction's sequence of reads, the down one starting at the last up read.
    let sequences = |d: &DeviceTrace| -> [Vec<f64>; 2] {
        let mut down = Vec::with_capacity(d.down.len() + 1);
        down.push(*d.up.last().unwrap_or(&d.down[0]));
        down.extend_from_slice(&d.down);
        [d.up.clone(), down]
    };
    let smooth = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|k| {
                let lo = k.saturating_sub(POSITION_WINDOW);
                let hi = (k + POSITION_WINDOW).min(v.len() - 1);
                v[lo..=hi].iter().sum::<f64>() / (hi - lo + 1) as f64
            })
            .collect()
    };
    // Devices still moving at the end of a direction did not reach that
    // bound: their bounds, and the range, are underestimated.
    let unsaturated = active
        .iter()
        .filter(|d| {
            sequences(d).iter().any(|v| {
                let sm = smooth(v);
                let q = sm.len() / 4;
                let first = (sm[q] - sm[0]).abs();
                let last = (sm[sm.len() - 1] - sm[sm.len() - 1 - q]).abs();
                last > 0.25 * first
            })
        })
        .count();
    let mut warnings = Vec::new();
    if unsaturated * 10 > active.len() {
        warnings.push(format!(
            "{unsaturated} of {} devices are still moving at the end of their up or down pulses: they did not reach their bounds, so the range and the bound spreads are underestimated (a trace should drive every device into both bounds: more pulses)",
            active.len()
        ));
    }
    // 2. Bounds per device (µS).
    let mut bounds_us: Vec<(f64, f64)> = active
        .iter()
        .map(|d| {
            let [u, dn] = sequences(d);
            let s: Vec<f64> = smooth(&u).into_iter().chain(smooth(&dn)).collect();
            let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        })
        .collect();
    if opts.response == FitResponse::SoftBounds {
        // Where each device's up (down) steps, a line in G, reach 0.
        for (b, d) in bounds_us.iter_mut().zip(&active) {
            let seqs = sequences(d);
            let mut ends = [b.1, b.0];
            for (dir, v) in seqs.iter().enumerate() {
                let steps = Steps::of(v, dir == 0, |_| true);
                let s = Stats::of(&steps, &Basis::Line);
                if let Some(c) = solve(&s, &Basis::Line) {
                    // up: α + βG = 0 at G_hi (β < 0); down: at G_lo (β > 0).
                    let zero = -c[0] / c[1];
                    let ok = if dir == 0 { c[1] < 0.0 } else { c[1] > 0.0 };
                    if ok && zero.is_finite() {
                        ends[dir] = zero;
                    }
                }
            }
            *b = (ends[1].min(ends[0]), ends[0].max(ends[1]));
        }
    }
    let n_active = active.len() as f64;
    let lo_us: Vec<f64> = bounds_us.iter().map(|b| b.0).collect();
    let hi_us: Vec<f64> = bounds_us.iter().map(|b| b.1).collect();
    let (g_min_us, lo_sd) = mean_sd(&lo_us);
    // A conductance is ≥ 0 (a mean lower bound a hair below 0 µS is the
    // bound spread of devices near 0).
    let g_min_us = g_min_us.max(0.0);
    let (g_max_us, hi_sd) = mean_sd(&hi_us);
    let width = g_max_us - g_min_us;
    if !(width > 0.0) {
        bail!(
            "trace {}: the devices' lower bounds ({g_min_us:.4} µS on average) are not below their upper bounds ({g_max_us:.4} µS)",
            opts.origin
        );
    }
    let norm = |g: f64| (g - g_min_us) / width;
    let bounds: Vec<(f64, f64)> = bounds_us.iter().map(|b| (norm(b.0), norm(b.1))).collect();
    // 3. Steps, normalised.
    let mut steps: Vec<[Steps; 2]> = Vec::with_capacity(active.len());
    for (i, d) in active.iter().enumerate() {
        let seqs = sequences(d);
        let per_dir = [0, 1].map(|dir| {
            let v: Vec<f64> = seqs[dir].iter().map(|&g| norm(g)).collect();
            let sm = smooth(&v);
            let (lo, hi) = bounds[i];
            // A step ending near the bound it moves towards may be
            // clipped there (its noise, too): within 1.5 mean steps or 4
            // median |steps| (which the noise sets) of that bound.
            let q = (v.len() / 4).max(2);
            let typical = (sm[q.min(sm.len() - 1)] - sm[0]).abs() / q as f64;
            let mut sizes: Vec<f64> = v.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
            sizes.sort_by(f64::total_cmp);
            let median = sizes[sizes.len() / 2];
            let margin = (1.5 * typical).max(4.0 * median);
            Steps::of(&v, dir == 0, |k| {
                let at = sm[k];
                // Not clipped.
                if dir == 0 {
                    at < hi - margin
                } else {
                    at > lo + margin
                }
            })
        });
        steps.push(per_dir);
    }
    // 4. Candidate bases and per-device statistics.
    let mut bases: Vec<Basis> = match opts.response {
        FitResponse::Linear | FitResponse::SoftBounds => vec![Basis::Line],
        FitResponse::Exponential => exp_grid().into_iter().map(Basis::Exp).collect(),
        FitResponse::Piecewise(n) => vec![Basis::Hats(n)],
    };
    let build = |bases: &[Basis]| Summaries {
        bases: bases.to_vec(),
        stats: steps
            .par_iter()
            .map(|s| {
                bases
                    .iter()
                    .map(|b| [Stats::of(&s[0], b), Stats::of(&s[1], b)])
                    .collect()
            })
            .collect(),
    };
    let everyone: Vec<usize> = (0..active.len()).collect();
    let mut sums = build(&bases);
    if opts.response == FitResponse::Exponential {
        // Refine each direction's rate around the grid's best.
        let first = sums
            .fit(&everyone)
            .ok_or_else(|| anyhow!("trace {}: the exponential fit failed", opts.origin))?;
        let mut refined = Vec::new();
        for m in &first {
            if let Basis::Exp(k) = m.basis {
                refined.extend((-10..=10).map(|j| Basis::Exp(k + j as f64 * 0.05)));
            }
        }
        refined.retain(|b| matches!(b, Basis::Exp(k) if k.abs() > 0.05));
        bases = refined;
        sums = build(&bases);
    }
    let (derived, means) = derive(&sums, &everyone, opts.response, &bounds).ok_or_else(|| {
        let why = match opts.response {
            FitResponse::Exponential => "its nominal up and down steps (the constant terms of α + β e^{kx}) are not both positive, or their ratio is beyond what up_down in (−1, 1) expresses: the steps of this trace do not follow an exponential form; fit it as linear or piecewise",
            _ => "no positive up and down steps at the symmetry point, or their ratio is beyond what up_down in (−1, 1) expresses: do the devices move up with up pulses and down with down pulses?",
        };
        anyhow!(
            "trace {}: the {} fit failed: {why}",
            opts.origin,
            opts.response.kind().name()
        )
    })?;
    // 5. Bootstrap over devices.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed);
    let mut replicates: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..opts.bootstrap {
        let pick: Vec<usize> = (0..active.len())
            .map(|_| rng.gen_range(0..active.len()))
            .collect();
        if let Some((d, _)) = derive(&sums, &pick, opts.response, &bounds) {
            for (k, v) in d.values {
                replicates.entry(k).or_default().push(v);
            }
        }
    }
    let se = |key: &str| {
        replicates
            .get(key)
            .filter(|v| v.len() >= 2)
            .map(|v| mean_sd(v).1)
            .unwrap_or(f64::NAN)
    };
    // 6. Noise from the residuals.
    let mut lag = Vec::new();
    let mut resid2 = Vec::new();
    let mut per_device_noise: Vec<(f64, f64, f64)> = Vec::new(); // (σ_w², σ²_mult, σ²_add)
    let mut pairs: Vec<(f64, f64, f64)> = Vec::new(); // (r², b_mult², b_add²)
    let soft = opts.response == FitResponse::SoftBounds;
    let center = derived_value(&derived, "g_center");
    for (i, s) in steps.iter().enumerate() {
        let scales = sums.scales(i, &means);
        let own = if soft {
            [sums.own_line(i, 0), sums.own_line(i, 1)]
        } else {
            [None, None]
        };
        let mut dev_lag = Vec::new();
        let mut dev_pairs = Vec::new();
        for dir in 0..2 {
            let (scale, _) = scales[dir];
            if !scale.is_finite() || (soft && own[dir].is_none()) {
                continue;
            }
            // The device's predicted step at x: its own line (soft
            // bounds), else its scale times the mean response.
            let predict = |x: f64| match (&own[dir], soft) {
                (Some(line), true) => line.at(x),
                _ => scale * means[dir].at(x),
            };
            // The device's nominal step: D of the exponential form, else
            // the step at the symmetry point.
            let nominal = match means[dir].basis {
                Basis::Exp(_) => scale * means[dir].c[0],
                _ => predict(center),
            };
            let mut prev: Option<(f64, f64)> = None;
            for (&x, &y) in s[dir].x.iter().zip(&s[dir].dg) {
                let predicted = predict(x);
                let r = y - predicted;
                if let Some((px, pr)) = prev {
                    // Consecutive steps (no clipped step between).
                    if (x - px).abs() < 0.05 {
                        dev_lag.push(r * pr);
                    }
                }
                prev = Some((x, r));
                dev_pairs.push((r * r, predicted * predicted, nominal * nominal));
                resid2.push(r * r);
            }
        }
        if dev_pairs.len() > 2 {
            let w2 = -dev_lag.iter().sum::<f64>() / dev_lag.len().max(1) as f64;
            let fit_sigma = |pick: fn(&(f64, f64, f64)) -> f64| {
                let num: f64 = dev_pairs
                    .iter()
                    .map(|p| (p.0 - 2.0 * w2.max(0.0)) * pick(p))
                    .sum();
                let den: f64 = dev_pairs.iter().map(|p| pick(p) * pick(p)).sum();
                if den > 0.0 {
                    num / den
                } else {
                    0.0
                }
            };
            per_device_noise.push((w2, fit_sigma(|p| p.1), fit_sigma(|p| p.2)));
            lag.extend(dev_lag);
            pairs.extend(dev_pairs);
        }
    }
    let mean_of = |f: fn(&(f64, f64, f64)) -> f64| {
        let v: Vec<f64> = per_device_noise.iter().map(f).collect();
        let (m, sd) = mean_sd(&v);
        (m, sd / (v.len() as f64).sqrt())
    };
    let (w2, w2_se) = mean_of(|p| p.0);
    let w2 = w2.max(0.0);
    let (s2_mult, s2_mult_se) = mean_of(|p| p.1);
    let (s2_add, s2_add_se) = mean_of(|p| p.2);
    let sse_of = |s2: f64, pick: fn(&(f64, f64, f64)) -> f64| {
        pairs
            .iter()
            .map(|p| (p.0 - 2.0 * w2 - s2.max(0.0) * pick(p)).powi(2))
            .sum::<f64>()
    };
    let multiplicative = sse_of(s2_mult, |p| p.1) <= sse_of(s2_add, |p| p.2);
    let (s2, s2_se) = if multiplicative {
        (s2_mult.max(0.0), s2_mult_se)
    } else {
        (s2_add.max(0.0), s2_add_se)
    };
    let sigma = s2.sqrt();
    // SE of √v from the SE of v (delta method), 0 at 0.
    let sqrt_se = |v: f64, v_se: f64| {
        if v > 0.0 {
            v_se / (2.0 * v.sqrt())
        } else {
            v_se.sqrt()
        }
    };
    let residual_rms = (resid2.iter().sum::<f64>() / resid2.len().max(1) as f64).sqrt();
    let noise_rms = {
        let pick = if multiplicative { 1 } else { 2 };
        let v: f64 = pairs
            .iter()
            .map(|p| 2.0 * w2 + s2 * if pick == 1 { p.1 } else { p.2 })
            .sum::<f64>()
            / pairs.len().max(1) as f64;
        v.sqrt()
    };
    let dw_min = derived_value(&derived, "dw_min");
    // Stuck devices: at the lower or upper half of the range.
    let mid = 0.5 * (g_min_us + g_max_us);
    let n_all = trace.devices.len() as f64;
    let stuck_min = stuck.iter().filter(|d| d.up[0] < mid).count() as f64 / n_all;
    let stuck_max = stuck.iter().filter(|d| d.up[0] >= mid).count() as f64 / n_all;
    // The model.
    let mut values: Vec<FittedValue> = Vec::new();
    let mut push = |key: &str, value: f64, std_error: f64| {
        values.push(FittedValue {
            key: key.to_string(),
            value,
            std_error,
        })
    };
    push("g_min_us", g_min_us, lo_sd / n_active.sqrt());
    push("g_max_us", g_max_us, hi_sd / n_active.sqrt());
    for (k, v) in &derived.values {
        if k == "dtod_lognormal" {
            continue;
        }
        push(k, *v, se(k));
    }
    push("dw_min_std", sigma, sqrt_se(s2, s2_se));
    push(
        "write_noise",
        w2.sqrt() / dw_min,
        sqrt_se(w2, w2_se) / dw_min,
    );
    push(
        "stuck_at_min",
        stuck_min,
        (stuck_min * (1.0 - stuck_min) / n_all).sqrt(),
    );
    push(
        "stuck_at_max",
        stuck_max,
        (stuck_max * (1.0 - stuck_max) / n_all).sqrt(),
    );
    let lognormal = derived_value(&derived, "dtod_lognormal") > 0.5;
    let steps_used: usize = steps.iter().map(|s| s[0].dg.len() + s[1].dg.len()).sum();
    let value_of = |key: &str| values.iter().find(|v| v.key == key).map(|v| v.value);
    let f = |key: &str| value_of(key).map(|v| v as f32);
    let table = |name: &str| -> Option<Vec<f32>> {
        match opts.response {
            FitResponse::Piecewise(n) => (0..n)
                .map(|k| f(&format!("piecewise_{name}[{k}]")))
                .collect(),
            _ => None,
        }
    };
    let raw = RawDeviceModel {
        name: opts.name.clone(),
        description: format!(
            "fitted to {} ({} devices, {} pulses): {} response",
            opts.origin,
            trace.devices.len(),
            trace.pulses(),
            opts.response.kind().name()
        ),
        source: format!(
            "dyadsim devices fit {} --response {}; not fitted (0 = not known): read_noise, drift, endurance, levels, pulse width and energy",
            opts.origin,
            opts.response.kind().name()
        ),
        response: opts.response.kind(),
        one_sided: false,
        g_min_us,
        g_max_us,
        bounded: true,
        g_center: f("g_center").unwrap_or(0.5),
        anchor: Anchor::Absolute,
        bound_dtod_lo: f("bound_dtod_lo").unwrap_or(0.0),
        bound_dtod_hi: f("bound_dtod_hi").unwrap_or(0.0),
        bound_dtod_relative: true,
        dw_min: dw_min as f32,
        dw_min_dtod: f("dw_min_dtod").unwrap_or(0.0),
        dtod_lognormal: lognormal,
        step_convention: StepConvention::Aihwkit,
        up_down: f("up_down").unwrap_or(0.0),
        up_down_dtod: f("up_down_dtod").unwrap_or(0.0),
        dw_min_std: sigma as f32,
        c2c_multiplicative: multiplicative,
        c2c_add: 0.0,
        c2c_slope: 0.0,
        write_noise: f("write_noise").unwrap_or(0.0),
        slope_up: f("slope_up"),
        slope_down: f("slope_down"),
        exp_a_up: f("exp_a_up"),
        exp_a_down: f("exp_a_down"),
        exp_gamma_up: f("exp_gamma_up"),
        exp_gamma_down: f("exp_gamma_down"),
        exp_z_slope: (opts.response == FitResponse::Exponential).then_some(1.0),
        exp_z_offset: (opts.response == FitResponse::Exponential).then_some(0.0),
        piecewise_up: table("up"),
        piecewise_down: table("down"),
        program_noise_us: None,
        read_noise_1f_q: None,
        read_noise_1f_exponent: None,
        read_noise_1f_max: None,
        read_noise_1f_t_read: None,
        levels: 0,
        read_noise: 0.0,
        stuck_at_min: f("stuck_at_min").unwrap_or(0.0),
        stuck_at_max: f("stuck_at_max").unwrap_or(0.0),
        endurance: 0.0,
        endurance_dtod: 0.0,
        drift_nu: 0.0,
        drift_nu_dtod: 0.0,
        drift_t0: 1.0,
        refresh_threshold: 0.0,
        pulse_width_ns: 0.0,
        pulse_energy_pj: 0.0,
        recommended: None,
        fit: Some(FitRecord {
            trace: opts.origin.clone(),
            response: opts.response.kind().name().to_string(),
            devices: active.len(),
            stuck_devices: stuck.len(),
            steps: steps_used,
            bootstrap: opts.bootstrap,
            residual_rms,
            noise_rms,
            std_errors: values
                .iter()
                .map(|v| (v.key.clone(), v.std_error))
                .collect(),
        }),
    };
    let text = toml::to_string(&raw).context("writing the fitted model")?;
    let model = DeviceModel::from_toml_str(
        &text,
        &format!("the model fitted to {}", opts.origin),
        &toml::Table::new(),
    )?;
    Ok(Fit {
        model,
        values,
        residual_rms,
        noise_rms,
        devices: active.len(),
        steps: steps_used,
        warnings,
    })
}

fn derived_value(d: &Derived, key: &str) -> f64 {
    d.values
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or(f64::NAN)
}
