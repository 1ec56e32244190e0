//! Line resistance (IR drop): the resistive network of a crossbar tile and
//! its solution (DESIGN.md §2, "IR drop").
//!
//! A tile has `driven` lines, each connected at one end to a source through
//! the periphery (a DAC driver), and `sensed` lines, each held at virtual
//! ground at one end by a sense amplifier. Line `a` crosses line `b` at a
//! cell of conductance `G_ab`. Along every line, consecutive cells are
//! joined by a wire segment of resistance `r` (`crossbar.line_resistance_ohm`),
//! and one more segment joins the first cell to the periphery, whose own
//! resistance (`driver_resistance_ohm`, `sense_resistance_ohm`) is in series
//! with it. With `r = 0` and no periphery resistance every line is one node
//! at its source's potential and the sensed currents are `I_b = Σ_a G_ab V_a`
//! — the ideal read.
//!
//! Kirchhoff's current law at the two nodes of every cell (one on each
//! line) gives a sparse symmetric positive-definite system (the nodal
//! conductance matrix; every node reaches ground through a path of
//! positive conductance). [`TileNetwork::solve`] solves it by block
//! Gauss–Seidel over lines: with the sensed lines' potentials held, each
//! driven line is a tridiagonal system, solved exactly (Thomas algorithm,
//! factorised once per tile); then each sensed line with the driven lines'
//! potentials held. The iteration converges for every SPD system (block
//! Gauss–Seidel, e.g. Saad, *Iterative Methods for Sparse Linear Systems*,
//! §4.1) and stops when the sensed currents change by less than
//! `tolerance` relative to their largest value between two sweeps.
//!
//! The network is linear in the drives, so the sensed currents are
//! `I = T V` for a transfer matrix `T` (`sensed × driven`) that depends on
//! the conductances only. [`TileNetwork::transfer_matrix`] solves for it
//! (one unit drive per driven line); a crossbar reads through it as through
//! its weights. [`TileNetwork::first_order_transfer`] is its expansion to
//! first order in the resistances, `T_ba ≈ G_ab (1 − ρᵈ_ab − ρˢ_ab)`, where
//! `ρᵈ_ab` is the relative voltage drop along driven line `a` at cell `b`
//! and `ρˢ_ab` the relative rise along sensed line `b` at cell `a`, both
//! computed from the ideal-line currents (the usual small-drop
//! approximation, cf. Chen, "A comprehensive crossbar array model with
//! solutions for line resistance and nonlinear device characteristics",
//! IEEE TED 2013); it costs `O(driven · sensed)` instead of one solve per
//! driven line.

use anyhow::{ensure, Result};
use rayon::prelude::*;

/// The resistances of a tile's lines (Ω).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineResistance {
    /// Wire resistance of one segment between neighbouring cells.
    pub segment_ohm: f64,
    /// Output resistance of a driver (in series with the first segment).
    pub driver_ohm: f64,
    /// Input resistance of a sense amplifier (in series with the first segment).
    pub sense_ohm: f64,
}

impl LineResistance {
    /// Whether every resistance is zero (the ideal read).
    pub fn is_ideal(&self) -> bool {
        self.segment_ohm == 0.0 && self.driver_ohm == 0.0 && self.sense_ohm == 0.0
    }
}

/// Which end of a line its periphery sits at, in cell order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Before the first cell (position 0).
    Start,
    /// After the last cell.
    Finish,
}

/// When the block Gauss–Seidel iteration stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveSettings {
    /// Largest change of any sensed current between two sweeps, relative
    /// to the largest sensed current.
    pub tolerance: f64,
    /// Sweeps before giving up (the last iterate is returned, flagged).
    pub max_iterations: u32,
}

/// The outcome of a solve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Solution {
    /// Sensed-line currents (A), `sensed × rhs`, right-hand side fastest.
    pub currents: Vec<f64>,
    /// Driven-line node potentials (V), `driven × sensed × rhs`.
    pub driven_potentials: Vec<f64>,
    /// Sensed-line node potentials (V), `sensed × driven × rhs`.
    pub sensed_potentials: Vec<f64>,
    /// Block Gauss–Seidel sweeps.
    pub iterations: u32,
    /// Whether the tolerance was met.
    pub converged: bool,
}

/// How one line is solved for its node potentials.
#[derive(Clone, Debug)]
enum Line {
    /// No resistance on the way to the periphery: every node at the source.
    Ideal,
    /// No segment resistance but a periphery resistance: one node,
    /// `u = (g_c V + Σ G v)/(g_c + Σ G)`.
    Equipotential { conn: f64, inv_total: f64 },
    /// A tridiagonal system in periphery-first order (see [`Line::solve`]).
    Resistive {
        conn: f64,
        /// Inverse pivots `m_t` of the Thomas elimination.
        inv_pivot: Vec<f64>,
    },
}

/// A tile's resistive network for one read direction.
#[derive(Clone, Debug)]
pub struct TileNetwork {
    driven: usize,
    sensed: usize,
    /// Cell conductances (S), `G[a · sensed + b]`.
    cells: Vec<f64>,
    /// The same, `G[b · driven + a]` (the sensed lines' order).
    cells_by_sensed: Vec<f64>,
    lines: LineResistance,
    drive_end: End,
    sense_end: End,
    driven_lines: Vec<Line>,
    sensed_lines: Vec<Line>,
}

impl TileNetwork {
    /// A tile of `driven × sensed` cells with conductances `cells`
    /// (siemens, `cells[a · sensed + b]` for driven line `a`, sensed line
    /// `b`), the line resistances, and where the periphery of each line
    /// family sits. Conductances must be finite and ≥ 0.
    pub fn new(
        driven: usize,
        sensed: usize,
        cells: Vec<f64>,
        lines: LineResistance,
        drive_end: End,
        sense_end: End,
    ) -> Result<Self> {
        ensure!(
            cells.len() == driven * sensed,
            "tile of {driven} × {sensed} cells given {} conductances",
            cells.len()
        );
        ensure!(
            cells.iter().all(|g| g.is_finite() && *g >= 0.0),
            "cell conductances must be finite and ≥ 0"
        );
        for (name, r) in [
            ("line_resistance_ohm", lines.segment_ohm),
            ("driver_resistance_ohm", lines.driver_ohm),
            ("sense_resistance_ohm", lines.sense_ohm),
        ] {
            ensure!(
                r.is_finite() && r >= 0.0,
                "crossbar.{name} = {r} is out of range: must be ≥ 0"
            );
        }
        let mut cells_by_sensed = vec![0.0; cells.len()];
        for a in 0..driven {
            for b in 0..sensed {
                cells_by_sensed[b * driven + a] = cells[a * sensed + b];
            }
        }
        let line = |row: &[f64], periphery_ohm: f64, end: End| {
            Line::new(row, lines.segment_ohm, periphery_ohm, end)
        };
        let driven_lines = cells
            .chunks_exact(sensed.max(1))
            .take(driven)
            .map(|row| line(row, lines.driver_ohm, drive_end))
            .collect();
        let sensed_lines = cells_by_sensed
            .chunks_exact(driven.max(1))
            .take(sensed)
            .map(|col| line(col, lines.sense_ohm, sense_end))
            .collect();
        Ok(Self {
            driven,
            sensed,
            cells,
            cells_by_sensed,
            lines,
            drive_end,
            sense_end,
            driven_lines,
            sensed_lines,
        })
    }

    /// Driven lines.
    pub fn driven(&self) -> usize {
        self.driven
    }

    /// Sensed lines.
    pub fn sensed(&self) -> usize {
        self.sensed
    }

    /// Solves the network for `rhs` sets of source voltages `drives`
    /// (`driven × rhs`, right-hand side fastest).
    pub fn solve(&self, drives: &[f64], rhs: usize, settings: SolveSettings) -> Solution {
        assert_eq!(drives.len(), self.driven * rhs, "drives: driven × rhs");
        let (nd, ns) = (self.driven, self.sensed);
        // Start from the ideal lines: driven nodes at their source, sensed at ground.
        let mut u = vec![0.0; nd * ns * rhs];
        for a in 0..nd {
            for b in 0..ns {
                let at = (a * ns + b) * rhs;
                u[at..at + rhs].copy_from_slice(&drives[a * rhs..(a + 1) * rhs]);
            }
        }
        let mut v = vec![0.0; ns * nd * rhs];
        let mut currents = self.currents(&u, &v, rhs);
        let mut iterations = 0;
        let mut converged = self.lines.is_ideal();
        while !converged && iterations < settings.max_iterations {
            iterations += 1;
            self.sweep_driven(drives, &mut u, &v, rhs);
            self.sweep_sensed(&u, &mut v, rhs);
            let next = self.currents(&u, &v, rhs);
            let scale = next.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let change = next
                .iter()
                .zip(&currents)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
            converged = change <= settings.tolerance * scale || scale == 0.0;
            currents = next;
        }
        Solution {
            currents,
            driven_potentials: u,
            sensed_potentials: v,
            iterations,
            converged,
        }
    }

    /// The transfer matrix `T` (`sensed × driven`, driven fastest:
    /// `T[b · driven + a]`, siemens): sensed current of line `b` per volt
    /// on driven line `a`, from one solve per driven line (in blocks of
    /// unit drives). Returns it with the most sweeps any block took and
    /// whether every block converged.
    pub fn transfer_matrix(&self, settings: SolveSettings) -> (Vec<f64>, u32, bool) {
        let (nd, ns) = (self.driven, self.sensed);
        let mut t = vec![0.0; ns * nd];
        if self.lines.is_ideal() {
            t.copy_from_slice(&self.cells_by_sensed);
            return (t, 0, true);
        }
        // Blocks of unit drives small enough that the node potentials stay
        // within a few tens of MB.
        let block = (4_000_000 / (2 * nd * ns).max(1))
            .clamp(1, 64)
            .min(nd.max(1));
        let mut worst = 0;
        let mut all_converged = true;
        for first in (0..nd).step_by(block) {
            let k = block.min(nd - first);
            let mut drives = vec![0.0; nd * k];
            for c in 0..k {
                drives[(first + c) * k + c] = 1.0;
            }
            let s = self.solve(&drives, k, settings);
            worst = worst.max(s.iterations);
            all_converged &= s.converged;
            for b in 0..ns {
                for c in 0..k {
                    t[b * nd + first + c] = s.currents[b * k + c];
                }
            }
        }
        (t, worst, all_converged)
    }

    /// The transfer matrix to first order in the resistances (same layout
    /// as [`TileNetwork::transfer_matrix`]): `T_ba = G_ab (1 − ρᵈ_ab − ρˢ_ab)`
    /// with `ρᵈ_ab = Σ_c R_a(b, c) G_ac` — `R_a(b, c)` the resistance that
    /// the paths from cells `b` and `c` of driven line `a` to its source
    /// share — and `ρˢ_ab = Σ_c R_b(a, c) G_cb` on sensed line `b`. Held
    /// at ≥ 0 (the expansion is meant for drops of a few percent).
    pub fn first_order_transfer(&self) -> Vec<f64> {
        let (nd, ns) = (self.driven, self.sensed);
        let drop_driven: Vec<f64> = self
            .cells
            .par_chunks_exact(ns.max(1))
            .take(nd)
            .flat_map_iter(|row| shared_resistance_sums(row, &self.lines, true, self.drive_end))
            .collect();
        let rise_sensed: Vec<f64> = self
            .cells_by_sensed
            .par_chunks_exact(nd.max(1))
            .take(ns)
            .flat_map_iter(|col| shared_resistance_sums(col, &self.lines, false, self.sense_end))
            .collect();
        let mut t = vec![0.0; ns * nd];
        for b in 0..ns {
            for a in 0..nd {
                let g = self.cells[a * ns + b];
                let rho = drop_driven[a * ns + b] + rise_sensed[b * nd + a];
                t[b * nd + a] = g * (1.0 - rho).max(0.0);
            }
        }
        t
    }

    /// Power (W) dissipated in the cells, in the line segments and in the
    /// periphery resistances of solution `s` for right-hand side `k` of
    /// the `drives` it solved.
    pub fn power(&self, drives: &[f64], s: &Solution, k: usize) -> Power {
        let rhs = drives.len() / self.driven.max(1);
        let (nd, ns) = (self.driven, self.sensed);
        let u = |a: usize, b: usize| s.driven_potentials[(a * ns + b) * rhs + k];
        let v = |b: usize, a: usize| s.sensed_potentials[(b * nd + a) * rhs + k];
        let mut p = Power::default();
        for a in 0..nd {
            for b in 0..ns {
                let dv = u(a, b) - v(b, a);
                p.cells_w += self.cells[a * ns + b] * dv * dv;
            }
        }
        let r = self.lines.segment_ohm;
        let line_power = |nodes: &[f64], source: f64, periphery_ohm: f64, end: End| -> (f64, f64) {
            let n = nodes.len();
            if n == 0 {
                return (0.0, 0.0);
            }
            let mut wires = 0.0;
            if r > 0.0 {
                for w in nodes.windows(2) {
                    wires += (w[0] - w[1]).powi(2) / r;
                }
            }
            let near = match end {
                End::Start => nodes[0],
                End::Finish => nodes[n - 1],
            };
            let conn = r + periphery_ohm;
            if conn == 0.0 {
                return (wires, 0.0);
            }
            // The connection carries (near − source)/conn through r and the periphery.
            let i = (near - source) / conn;
            (wires + i * i * r, i * i * periphery_ohm)
        };
        for a in 0..nd {
            let nodes: Vec<f64> = (0..ns).map(|b| u(a, b)).collect();
            let (w, q) = line_power(
                &nodes,
                drives[a * rhs + k],
                self.lines.driver_ohm,
                self.drive_end,
            );
            p.lines_w += w;
            p.periphery_w += q;
        }
        for b in 0..ns {
            let nodes: Vec<f64> = (0..nd).map(|a| v(b, a)).collect();
            let (w, q) = line_power(&nodes, 0.0, self.lines.sense_ohm, self.sense_end);
            p.lines_w += w;
            p.periphery_w += q;
        }
        p
    }

    /// Sensed currents of the iterate `(u, v)`.
    fn currents(&self, u: &[f64], v: &[f64], rhs: usize) -> Vec<f64> {
        let (nd, ns) = (self.driven, self.sensed);
        let mut out = vec![0.0; ns * rhs];
        for (b, line) in self.sensed_lines.iter().enumerate() {
            let o = &mut out[b * rhs..(b + 1) * rhs];
            match line {
                Line::Ideal => {
                    // Sensed line at ground: the cells' currents sum into the amplifier.
                    for a in 0..nd {
                        let g = self.cells[a * ns + b];
                        let ua = &u[(a * ns + b) * rhs..(a * ns + b + 1) * rhs];
                        for (o, x) in o.iter_mut().zip(ua) {
                            *o += g * x;
                        }
                    }
                }
                Line::Equipotential { conn, .. } | Line::Resistive { conn, .. } => {
                    let near = match (line, self.sense_end) {
                        (Line::Equipotential { .. }, _) | (_, End::Start) => 0,
                        (_, End::Finish) => nd - 1,
                    };
                    let vn = &v[(b * nd + near) * rhs..(b * nd + near + 1) * rhs];
                    for (o, x) in o.iter_mut().zip(vn) {
                        *o = conn * x;
                    }
                }
            }
        }
        out
    }

    /// Solves every driven line with the sensed potentials `v` held.
    fn sweep_driven(&self, drives: &[f64], u: &mut [f64], v: &[f64], rhs: usize) {
        let (nd, ns) = (self.driven, self.sensed);
        u.par_chunks_exact_mut((ns * rhs).max(1))
            .take(nd)
            .enumerate()
            .for_each(|(a, ua)| {
                let g = &self.cells[a * ns..(a + 1) * ns];
                let far = |b: usize| &v[(b * nd + a) * rhs..(b * nd + a + 1) * rhs];
                let source = &drives[a * rhs..(a + 1) * rhs];
                self.driven_lines[a].solve(
                    ua,
                    g,
                    far,
                    source,
                    self.lines.segment_ohm,
                    self.drive_end,
                    rhs,
                );
            });
    }

    /// Solves every sensed line with the driven potentials `u` held.
    fn sweep_sensed(&self, u: &[f64], v: &mut [f64], rhs: usize) {
        let (nd, ns) = (self.driven, self.sensed);
        let ground = vec![0.0; rhs];
        v.par_chunks_exact_mut((nd * rhs).max(1))
            .take(ns)
            .enumerate()
            .for_each(|(b, vb)| {
                let g = &self.cells_by_sensed[b * nd..(b + 1) * nd];
                let far = |a: usize| &u[(a * ns + b) * rhs..(a * ns + b + 1) * rhs];
                self.sensed_lines[b].solve(
                    vb,
                    g,
                    far,
                    &ground,
                    self.lines.segment_ohm,
                    self.sense_end,
                    rhs,
                );
            });
    }
}

/// Power of a solved read, by where it is dissipated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Power {
    /// In the cells (the read itself).
    pub cells_w: f64,
    /// In the wire segments.
    pub lines_w: f64,
    /// In the drivers' and sense amplifiers' resistance.
    pub periphery_w: f64,
}

impl Line {
    /// The solver of a line with cell conductances `g` (in cell order).
    fn new(g: &[f64], segment_ohm: f64, periphery_ohm: f64, end: End) -> Self {
        let conn_ohm = segment_ohm + periphery_ohm;
        if conn_ohm == 0.0 {
            return Line::Ideal;
        }
        let conn = 1.0 / conn_ohm;
        if segment_ohm == 0.0 {
            let total: f64 = g.iter().sum();
            return Line::Equipotential {
                conn,
                inv_total: 1.0 / (conn + total),
            };
        }
        // Periphery-first order t: node t joins t ± 1 by g_s = 1/r, node 0
        // also the periphery by `conn`. Row t of the nodal matrix:
        // −g_s x_{t−1} + d_t x_t − g_s x_{t+1}, d_t = G_t + g_s·(neighbours) (+ conn at t = 0).
        let gs = 1.0 / segment_ohm;
        let n = g.len();
        let mut inv_pivot = Vec::with_capacity(n);
        let mut c_prev = 0.0;
        for t in 0..n {
            let b = position(t, n, end);
            let neighbours = (t > 0) as u32 + (t + 1 < n) as u32;
            let d = g[b] + gs * neighbours as f64 + if t == 0 { conn } else { 0.0 };
            let m = 1.0 / (d - gs * c_prev);
            inv_pivot.push(m);
            c_prev = gs * m;
        }
        Line::Resistive { conn, inv_pivot }
    }

    /// Solves for the node potentials `x` (`cells × rhs`, in cell order)
    /// with the crossing lines' potentials `far(cell)` held and the
    /// periphery at `source` (Thomas algorithm: `y_t = (r_t + g_s y_{t−1}) m_t`,
    /// `x_t = y_t + g_s m_t x_{t+1}`).
    #[allow(clippy::too_many_arguments)]
    fn solve<'a>(
        &self,
        x: &mut [f64],
        g: &[f64],
        far: impl Fn(usize) -> &'a [f64],
        source: &[f64],
        segment_ohm: f64,
        end: End,
        rhs: usize,
    ) {
        let n = g.len();
        if n == 0 {
            return;
        }
        match self {
            Line::Ideal => {
                for c in x.chunks_exact_mut(rhs.max(1)) {
                    c.copy_from_slice(source);
                }
            }
            Line::Equipotential { conn, inv_total } => {
                let mut acc: Vec<f64> = source.iter().map(|s| conn * s).collect();
                for (b, gb) in g.iter().enumerate() {
                    for (a, f) in acc.iter_mut().zip(far(b)) {
                        *a += gb * f;
                    }
                }
                for a in acc.iter_mut() {
                    *a *= inv_total;
                }
                for c in x.chunks_exact_mut(rhs.max(1)) {
                    c.copy_from_slice(&acc);
                }
            }
            Line::Resistive { conn, inv_pivot } => {
                let gs = 1.0 / segment_ohm;
                // Forward elimination in periphery-first order (y into x;
                // `carry` holds g_s·y_{t−1}, first the periphery's conn·V).
                let mut carry: Vec<f64> = source.iter().map(|s| conn * s).collect();
                for (t, m) in inv_pivot.iter().enumerate() {
                    let b = position(t, n, end);
                    let gb = g[b];
                    for ((y, f), c) in x[b * rhs..(b + 1) * rhs]
                        .iter_mut()
                        .zip(far(b))
                        .zip(carry.iter_mut())
                    {
                        *y = (gb * f + *c) * m;
                        *c = gs * *y;
                    }
                }
                // Back substitution from the far end (`carry` holds x_{t+1}).
                let last = position(n - 1, n, end);
                carry.copy_from_slice(&x[last * rhs..(last + 1) * rhs]);
                for t in (0..n - 1).rev() {
                    let b = position(t, n, end);
                    let c = gs * inv_pivot[t];
                    for (y, z) in x[b * rhs..(b + 1) * rhs].iter_mut().zip(carry.iter_mut()) {
                        *y += c * *z;
                        *z = *y;
                    }
                }
            }
        }
    }
}

/// Cell index of position `t` (periphery first) on a line of `n` cells.
#[inline]
fn position(t: usize, n: usize, end: End) -> usize {
    match end {
        End::Start => t,
        End::Finish => n - 1 - t,
    }
}

/// `Σ_c R(b, c) G_c` for every cell `b` of a line with cells `g`: the
/// relative potential change at `b` from the ideal-line currents `G_c`
/// per volt, `R(b, c) = R_conn + r·min(t_b, t_c)` in periphery-first
/// positions `t`. Prefix sums make it `O(n)`.
fn shared_resistance_sums(g: &[f64], lines: &LineResistance, driven: bool, end: End) -> Vec<f64> {
    let n = g.len();
    let r = lines.segment_ohm;
    let conn = r + if driven {
        lines.driver_ohm
    } else {
        lines.sense_ohm
    };
    let ordered: Vec<f64> = (0..n).map(|t| g[position(t, n, end)]).collect();
    let total: f64 = ordered.iter().sum();
    // Σ_c min(t, t_c) G_c = Σ_{t_c ≤ t} t_c G_c + t Σ_{t_c > t} G_c.
    let mut out = vec![0.0; n];
    let (mut weighted, mut below) = (0.0, 0.0);
    for (t, gt) in ordered.iter().enumerate() {
        weighted += t as f64 * gt;
        below += gt;
        let shared = weighted + t as f64 * (total - below);
        out[position(t, n, end)] = conn * total + r * shared;
    }
    out
}

// ---------------------------------------------------------------------------
// A crossbar layer read through its lines.

use super::config::IrDropSolver;
use super::periphery::ReadDirection;
use super::Crossbar;
use crate::linalg::{Mat, Vector};
use serde::{Deserialize, Serialize};

/// Counters of a layer's line solves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LineSolveCounts {
    /// Transfer matrices computed (per tile and read direction; one per
    /// device change that a read followed).
    pub refreshes: u64,
    /// Block Gauss–Seidel sweeps over all exact solves.
    pub sweeps_total: u64,
    /// Most sweeps one exact solve took.
    pub sweeps_max: u32,
    /// Exact solves that stopped at `ir_drop_max_iterations` unconverged.
    pub unconverged: u64,
}

impl LineSolveCounts {
    /// Counts one exact solve of `sweeps` sweeps.
    fn record_exact(&mut self, sweeps: u32, converged: bool) {
        self.refreshes += 1;
        self.sweeps_total += sweeps as u64;
        self.sweeps_max = self.sweeps_max.max(sweeps);
        self.unconverged += (!converged) as u64;
    }
}

/// The sign device column `c` enters its output with: `G⁺` (even
/// columns) adds, `G⁻` (odd) subtracts.
fn column_sign(c: usize) -> f64 {
    if c.is_multiple_of(2) {
        1.0
    } else {
        -1.0
    }
}

/// The read weights of a layer with line resistance: its tiles' transfer
/// matrices in weight units, for the device generation each was computed at.
#[derive(Clone, Debug, Default)]
pub(super) struct LineReads {
    forward: Mat,
    bias: Vector,
    forward_generation: Option<u64>,
    /// `n_out × n_in`, read with `Op::T` like the ideal weights.
    transposed: Mat,
    transposed_generation: Option<u64>,
    pub(super) counts: LineSolveCounts,
}

/// One tile of a layer: input lines `rows` (bias line `n_in` included)
/// and device columns `cols` (column `2i` holds `G⁺` of output `i`,
/// `2i + 1` its `G⁻`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSpan {
    /// First input line.
    pub row: usize,
    /// Input lines.
    pub rows: usize,
    /// First device column.
    pub col: usize,
    /// Device columns.
    pub cols: usize,
}

/// The tiles of an `inputs × device_columns` layer cut into tiles of at
/// most `tile_rows × tile_cols` (0 = no limit), row-major.
pub fn tiles(
    inputs: usize,
    device_columns: usize,
    tile_rows: usize,
    tile_cols: usize,
) -> Vec<TileSpan> {
    let tr = if tile_rows == 0 {
        inputs.max(1)
    } else {
        tile_rows
    };
    let tc = if tile_cols == 0 {
        device_columns.max(1)
    } else {
        tile_cols
    };
    let mut out = Vec::new();
    for row in (0..inputs).step_by(tr) {
        for col in (0..device_columns).step_by(tc) {
            out.push(TileSpan {
                row,
                rows: tr.min(inputs - row),
                col,
                cols: tc.min(device_columns - col),
            });
        }
    }
    out
}

impl Crossbar {
    /// The line and periphery resistances of the configuration.
    pub(super) fn line_resistance(&self) -> LineResistance {
        LineResistance {
            segment_ohm: self.config.line_resistance_ohm,
            driver_ohm: self.config.driver_resistance_ohm,
            sense_ohm: self.config.sense_resistance_ohm,
        }
    }

    /// `w_scale/(G_max − G_min)`: turns a column current per volt (S)
    /// into weight units (`w = w_scale (G⁺ − G⁻)/(G_max − G_min)`).
    fn weight_per_siemens(&self) -> f64 {
        let span_s = (self.model.conductance.g_max_us - self.model.conductance.g_min_us) * 1e-6;
        self.config.w_scale as f64 / span_s
    }

    /// The tiles of this layer (`crossbar.tile_rows × tile_cols`).
    pub fn tiles(&self) -> Vec<TileSpan> {
        tiles(
            self.n_in + 1,
            2 * self.n_out,
            self.config.tile_rows,
            self.config.tile_cols,
        )
    }

    /// Physical conductance (S, held ≥ 0) of the cell on input line `j`
    /// and device column `c`.
    fn cell_conductance_s(&self, j: usize, c: usize) -> f64 {
        let idx = c / 2 + j * self.n_out;
        let device = 2 * idx + c % 2;
        let span = self.model.conductance.g_max_us - self.model.conductance.g_min_us;
        let g = self.model.conductance.g_min_us + self.devices.visible(device) as f64 * span;
        (g * 1e-6).max(0.0)
    }

    /// The resistive network of `tile` for a read `direction`: forward
    /// reads drive the input lines from their drivers at the tile's first
    /// column and sense the device columns at the tile's last row;
    /// transposed reads drive the columns from that end and sense the
    /// input lines at the first column (each line's periphery sits at one
    /// end and serves both directions).
    pub fn tile_network(&self, tile: TileSpan, direction: ReadDirection) -> Result<TileNetwork> {
        let (rows, cols) = (tile.rows, tile.cols);
        let lines = self.line_resistance();
        let cell = |a: usize, b: usize| self.cell_conductance_s(tile.row + a, tile.col + b);
        match direction {
            ReadDirection::Forward => {
                let cells = (0..rows * cols).map(|k| cell(k / cols, k % cols)).collect();
                TileNetwork::new(rows, cols, cells, lines, End::Start, End::Finish)
            }
            ReadDirection::Transposed => {
                let cells = (0..rows * cols).map(|k| cell(k % rows, k / rows)).collect();
                TileNetwork::new(cols, rows, cells, lines, End::Finish, End::Start)
            }
        }
    }

    /// The transfer matrix of `tile` (exact or first order, as configured).
    fn tile_transfer(&mut self, tile: TileSpan, direction: ReadDirection) -> Vec<f64> {
        let network = match self.tile_network(tile, direction) {
            Ok(n) => n,
            // Conductances are finite and resistances checked: unreachable,
            // but a read must not panic; the ideal cells stand in.
            Err(_) => return Vec::new(),
        };
        let Some(lines) = self.lines.as_deref_mut() else {
            return Vec::new();
        };
        match self.config.ir_drop {
            IrDropSolver::Exact => {
                let (t, sweeps, converged) = network.transfer_matrix(solve_settings(&self.config));
                lines.counts.record_exact(sweeps, converged);
                t
            }
            IrDropSolver::FirstOrder => {
                lines.counts.refreshes += 1;
                network.first_order_transfer()
            }
        }
    }

    /// Brings the read weights of `direction` up to date with the devices
    /// (nothing without line resistance).
    pub(super) fn ensure_line_reads(&mut self, direction: ReadDirection) {
        let Some(lines) = self.lines.as_deref() else {
            return;
        };
        let current = Some(self.generation);
        let stale = match direction {
            ReadDirection::Forward => lines.forward_generation != current,
            ReadDirection::Transposed => lines.transposed_generation != current,
        };
        if !stale {
            return;
        }
        let (n_out, n_in) = (self.n_out, self.n_in);
        let k = self.weight_per_siemens();
        let mut w = vec![0.0f64; n_out * (n_in + 1)];
        for tile in self.tiles() {
            let t = self.tile_transfer(tile, direction);
            if t.is_empty() {
                continue;
            }
            for a in 0..tile.rows {
                for b in 0..tile.cols {
                    let (j, c) = (tile.row + a, tile.col + b);
                    // Forward: sensed column b, driven row a; transposed: the reverse.
                    let value = match direction {
                        ReadDirection::Forward => t[b * tile.rows + a],
                        ReadDirection::Transposed => t[a * tile.cols + b],
                    };
                    w[c / 2 + j * n_out] += column_sign(c) * k * value;
                }
            }
        }
        let Some(lines) = self.lines.as_deref_mut() else {
            return;
        };
        let weights = Mat::from_fn(n_out, n_in, |i, j| w[i + j * n_out] as f32);
        match direction {
            ReadDirection::Forward => {
                lines.forward = weights;
                lines.bias = Vector::from_fn(n_out, |i, _| w[i + n_in * n_out] as f32);
                lines.forward_generation = current;
            }
            ReadDirection::Transposed => {
                lines.transposed = weights;
                lines.transposed_generation = current;
            }
        }
    }

    /// The noise-free one-hot forward read of input line `j` through the
    /// lines (weight units, `n_out` values into `out`): one solve with a
    /// unit drive per tile on that line, not the whole transfer matrix —
    /// what a Tiki-Taka transfer reads from its fast array.
    pub(super) fn line_column(&mut self, j: usize, out: &mut Vec<f32>) {
        let n_out = self.n_out;
        let k = self.weight_per_siemens();
        let mut w = vec![0.0f64; n_out];
        let settings = solve_settings(&self.config);
        let spans: Vec<TileSpan> = self
            .tiles()
            .into_iter()
            .filter(|t| (t.row..t.row + t.rows).contains(&j))
            .collect();
        for tile in spans {
            let Ok(network) = self.tile_network(tile, ReadDirection::Forward) else {
                continue;
            };
            let mut drive = vec![0.0; tile.rows];
            drive[j - tile.row] = 1.0;
            let currents = match self.config.ir_drop {
                IrDropSolver::Exact => {
                    let s = network.solve(&drive, 1, settings);
                    if let Some(lines) = self.lines.as_deref_mut() {
                        lines.counts.record_exact(s.iterations, s.converged);
                    }
                    s.currents
                }
                IrDropSolver::FirstOrder => {
                    let t = network.first_order_transfer();
                    (0..tile.cols)
                        .map(|b| t[b * tile.rows + j - tile.row])
                        .collect()
                }
            };
            for (b, current) in currents.iter().enumerate() {
                let c = tile.col + b;
                w[c / 2] += column_sign(c) * k * current;
            }
        }
        out.extend(w.iter().map(|v| *v as f32));
    }

    /// The weights (and, forward, bias) a read of `direction` multiplies
    /// by: the lines' transfer matrices with line resistance, else the
    /// read caches. Call [`Crossbar::ensure_line_reads`] first.
    pub(super) fn read_matrices(&self, direction: ReadDirection) -> (&Mat, &Vector) {
        match (self.lines.as_deref(), direction) {
            (Some(l), ReadDirection::Forward) => (&l.forward, &l.bias),
            (Some(l), ReadDirection::Transposed) => (&l.transposed, &self.b_read),
            (None, _) => (&self.w_read, &self.b_read),
        }
    }
}

use crate::substrate::{FullScaleRead, IrDropStats};

/// The exact solve's stopping rule from the `[crossbar]` settings.
fn solve_settings(config: &super::CrossbarConfig) -> SolveSettings {
    SolveSettings {
        tolerance: config.ir_drop_tolerance,
        max_iterations: config.ir_drop_max_iterations,
    }
}

impl Crossbar {
    /// The layer's IR-drop statistics (`None` with ideal lines): its solve
    /// counters and full-scale reads of the present devices at its own
    /// tile size and at square tiles of 64 … 1024 lines (those smaller
    /// than the layer) and the whole layer in one tile.
    pub(super) fn ir_drop_stats(&self) -> Option<IrDropStats> {
        let lines = self.lines.as_deref()?;
        let (rows, cols) = (self.n_in + 1, 2 * self.n_out);
        let own = (
            if self.config.tile_rows == 0 {
                rows
            } else {
                self.config.tile_rows.min(rows)
            },
            if self.config.tile_cols == 0 {
                cols
            } else {
                self.config.tile_cols.min(cols)
            },
        );
        let mut sizes = vec![own];
        for s in [64usize, 128, 256, 512, 1024] {
            let size = (s.min(rows), s.min(cols));
            if s < rows.max(cols) && !sizes.contains(&size) {
                sizes.push(size);
            }
        }
        if !sizes.contains(&(rows, cols)) {
            sizes.push((rows, cols));
        }
        let full_scale_reads = sizes
            .into_iter()
            .map(|(r, c)| self.full_scale_read(r, c))
            .collect();
        let c = lines.counts;
        Some(IrDropStats {
            line_resistance_ohm: self.config.line_resistance_ohm,
            driver_resistance_ohm: self.config.driver_resistance_ohm,
            sense_resistance_ohm: self.config.sense_resistance_ohm,
            solver: self.config.ir_drop.name().into(),
            tile_rows: own.0,
            tile_cols: own.1,
            tiles: self.tiles().len(),
            refreshes: c.refreshes,
            sweeps_total: c.sweeps_total,
            sweeps_max: c.sweeps_max,
            unconverged: c.unconverged,
            full_scale_reads,
        })
    }

    /// A full-scale forward read (every input line at 1 V) of the present
    /// devices cut into `tile_rows × tile_cols` tiles, solved exactly.
    fn full_scale_read(&self, tile_rows: usize, tile_cols: usize) -> FullScaleRead {
        let n_out = self.n_out;
        let settings = solve_settings(&self.config);
        let spans = tiles(self.n_in + 1, 2 * n_out, tile_rows, tile_cols);
        let (mut loss_sum, mut loss_max, mut cells) = (0.0f64, 0.0f64, 0usize);
        let (mut line_power, mut total_power) = (0.0f64, 0.0f64);
        let mut converged = true;
        let mut with_lines = vec![0.0f64; n_out];
        let mut ideal = vec![0.0f64; n_out];
        for tile in &spans {
            let Ok(network) = self.tile_network(*tile, ReadDirection::Forward) else {
                converged = false;
                continue;
            };
            let drives = vec![1.0; tile.rows];
            let s = network.solve(&drives, 1, settings);
            converged &= s.converged;
            let p = network.power(&drives, &s, 0);
            line_power += p.lines_w + p.periphery_w;
            total_power += p.cells_w + p.lines_w + p.periphery_w;
            for a in 0..tile.rows {
                for b in 0..tile.cols {
                    let drop = s.driven_potentials[a * tile.cols + b]
                        - s.sensed_potentials[b * tile.rows + a];
                    let loss = 1.0 - drop;
                    loss_sum += loss;
                    loss_max = loss_max.max(loss);
                    cells += 1;
                    let c = tile.col + b;
                    ideal[c / 2] += column_sign(c) * self.cell_conductance_s(tile.row + a, c);
                }
            }
            for (b, current) in s.currents.iter().enumerate() {
                let c = tile.col + b;
                with_lines[c / 2] += column_sign(c) * current;
            }
        }
        let rms = |v: &mut dyn Iterator<Item = f64>| {
            let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
            (sum / n.max(1) as f64).sqrt()
        };
        let error = rms(&mut with_lines.iter().zip(&ideal).map(|(a, b)| a - b));
        let scale = rms(&mut ideal.iter().copied());
        FullScaleRead {
            tile_rows,
            tile_cols,
            tiles: spans.len(),
            mean_voltage_loss: loss_sum / cells.max(1) as f64,
            max_voltage_loss: loss_max,
            line_power_fraction: if total_power > 0.0 {
                line_power / total_power
            } else {
                0.0
            },
            output_error: if scale > 0.0 { error / scale } else { 0.0 },
            converged,
        }
    }
}
