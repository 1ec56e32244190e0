//! The tile network's solve (`crossbar::ir_drop`) against independent
//! facts: the closed form of one driven line, a dense nodal solve of 2×2
//! and 16×16 tiles (nalgebra LU, assembled here from Kirchhoff's law),
//! energy conservation, and the first-order expansion's error order.

use dyadsim::crossbar::ir_drop::{End, LineResistance, SolveSettings, TileNetwork};
use nalgebra::{DMatrix, DVector};

const TIGHT: SolveSettings = SolveSettings {
    tolerance: 1e-12,
    max_iterations: 100_000,
};

/// Deterministic conductances in [lo, hi] (S).
fn conductances(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// The sensed currents of a tile by a dense solve of its nodal equations:
/// unknowns `u[a][b]` (driven line a at cell b) then `v[b][a]`; every
/// segment `r`, one more segment plus the periphery resistance to the
/// source (driven) or ground (sensed) at the given end. The sensed current
/// is the sum of its cells' currents `G (u − v)` (Kirchhoff at the line,
/// not the formula the solver uses).
fn dense_currents(
    nd: usize,
    ns: usize,
    g: &[f64],
    lines: LineResistance,
    drive_end: End,
    sense_end: End,
    drives: &[f64],
) -> Vec<f64> {
    // With r = 0 a line is one node (all its cells at one potential).
    let r = lines.segment_ohm;
    let merged = r == 0.0;
    let n = if merged { nd + ns } else { 2 * nd * ns };
    let ui = |a: usize, b: usize| if merged { a } else { a * ns + b };
    let vi = |b: usize, a: usize| if merged { nd + b } else { nd * ns + b * nd + a };
    let mut m = DMatrix::<f64>::zeros(n, n);
    let mut rhs = DVector::<f64>::zeros(n);
    let conduct = |m: &mut DMatrix<f64>, p: usize, q: usize, c: f64| {
        m[(p, p)] += c;
        m[(q, q)] += c;
        m[(p, q)] -= c;
        m[(q, p)] -= c;
    };
    for a in 0..nd {
        for b in 0..ns {
            conduct(&mut m, ui(a, b), vi(b, a), g[a * ns + b]);
            if b + 1 < ns && !merged {
                conduct(&mut m, ui(a, b), ui(a, b + 1), 1.0 / r);
            }
        }
        let near = if drive_end == End::Start { 0 } else { ns - 1 };
        let c = 1.0 / (r + lines.driver_ohm);
        m[(ui(a, near), ui(a, near))] += c;
        rhs[ui(a, near)] += c * drives[a];
    }
    for b in 0..ns {
        for a in 0..nd.saturating_sub(1).min(if merged { 0 } else { nd }) {
            conduct(&mut m, vi(b, a), vi(b, a + 1), 1.0 / r);
        }
        let near = if sense_end == End::Start { 0 } else { nd - 1 };
        m[(vi(b, near), vi(b, near))] += 1.0 / (r + lines.sense_ohm);
    }
    let x = m.lu().solve(&rhs).expect("nodal matrix is SPD");
    (0..ns)
        .map(|b| {
            (0..nd)
                .map(|a| g[a * ns + b] * (x[ui(a, b)] - x[vi(b, a)]))
                .sum()
        })
        .collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// One driven line of N cells, each to its own one-cell sensed line: the
/// cell and that line's segment in series act as `G' = G/(1 + rG)` to
/// ground, and the line's potentials solve `u_{t+1} − (2 + rG') u_t +
/// u_{t−1} = 0` with an open far end, `u_t = A cosh(λ(N − ½ − t))`,
/// `cosh λ = 1 + rG'/2`, `A` from the source node's equation.
#[test]
fn single_line_matches_its_closed_form() {
    for (n, r, g, driver, end) in [
        (64usize, 2.5, 50e-6, 100.0, End::Start),
        (256, 1.0, 100e-6, 0.0, End::Start),
        (17, 10.0, 20e-6, 1e3, End::Finish),
        (1, 5.0, 1e-4, 50.0, End::Start),
    ] {
        let lines = LineResistance {
            segment_ohm: r,
            driver_ohm: driver,
            sense_ohm: 0.0,
        };
        let tile = TileNetwork::new(1, n, vec![g; n], lines, end, End::Start).unwrap();
        let volts = 0.2;
        let s = tile.solve(&[volts], 1, TIGHT);
        assert!(s.converged);
        let g_eff = g / (1.0 + r * g);
        let lambda = (1.0 + r * g_eff / 2.0).acosh();
        let (gs, c) = (1.0 / r, 1.0 / (r + driver));
        let nf = n as f64;
        let amplitude = c * volts
            / ((c + gs + g_eff) * (lambda * (nf - 0.5)).cosh() - gs * (lambda * (nf - 1.5)).cosh());
        let expected: Vec<f64> = (0..n)
            .map(|t| {
                let cell = if end == End::Start { t } else { n - 1 - t };
                (
                    cell,
                    g_eff * amplitude * (lambda * (nf - 0.5 - t as f64)).cosh(),
                )
            })
            .fold(vec![0.0; n], |mut acc, (cell, i)| {
                acc[cell] = i;
                acc
            });
        let scale = max_abs(&expected);
        for (got, want) in s.currents.iter().zip(&expected) {
            assert!(
                (got - want).abs() <= 1e-9 * scale,
                "N = {n}, r = {r}: {got} vs {want}"
            );
        }
        // The source delivers what the cells draw.
        let u_near = amplitude * (lambda * (nf - 0.5)).cosh();
        let total: f64 = expected.iter().sum();
        assert!((c * (volts - u_near) - total).abs() <= 1e-9 * total);
        // A real drop: the far cell gets less than the near one.
        if n > 1 {
            let (near, far) = if end == End::Start {
                (s.currents[0], s.currents[n - 1])
            } else {
                (s.currents[n - 1], s.currents[0])
            };
            assert!(far < near);
        }
    }
}

/// 2×2 and 16×16 tiles (and a 5×9 one) agree with the dense solve within
/// 1e-6 relative, for several drives, both periphery ends, resistive and
/// equipotential lines; so does the transfer matrix.
#[test]
fn tiles_match_a_dense_reference_solve() {
    let cases = [
        (2usize, 2usize, 2.5, 100.0, 50.0),
        (16, 16, 2.5, 100.0, 50.0),
        (16, 16, 20.0, 0.0, 0.0),
        (5, 9, 1.0, 1e3, 2e3),
        (16, 16, 0.0, 500.0, 300.0),
    ];
    for (k, &(nd, ns, r, driver, sense)) in cases.iter().enumerate() {
        let g = conductances(nd * ns, 1e-6, 100e-6, k as u64 + 1);
        let lines = LineResistance {
            segment_ohm: r,
            driver_ohm: driver,
            sense_ohm: sense,
        };
        for (drive_end, sense_end) in [(End::Start, End::Finish), (End::Finish, End::Start)] {
            let tile = TileNetwork::new(nd, ns, g.clone(), lines, drive_end, sense_end).unwrap();
            let rhs = 3;
            let drives: Vec<f64> = conductances(nd * rhs, -0.2, 0.2, 99 + k as u64);
            let s = tile.solve(&drives, rhs, TIGHT);
            assert!(s.converged, "case {k}");
            for c in 0..rhs {
                let d: Vec<f64> = (0..nd).map(|a| drives[a * rhs + c]).collect();
                let want = dense_currents(nd, ns, &g, lines, drive_end, sense_end, &d);
                let scale = max_abs(&want);
                for (b, want) in want.iter().enumerate() {
                    let got = s.currents[b * rhs + c];
                    assert!(
                        (got - want).abs() <= 1e-6 * scale,
                        "case {k} {nd}×{ns}, line {b}, rhs {c}: {got} vs {want}"
                    );
                }
            }
            let (t, _, converged) = tile.transfer_matrix(TIGHT);
            assert!(converged);
            for a in 0..nd {
                let mut unit = vec![0.0; nd];
                unit[a] = 1.0;
                let want = dense_currents(nd, ns, &g, lines, drive_end, sense_end, &unit);
                let scale = max_abs(&want);
                for b in 0..ns {
                    assert!((t[b * nd + a] - want[b]).abs() <= 1e-6 * scale);
                }
            }
        }
    }
}

/// Zero resistance everywhere: the transfer matrix is the conductances
/// themselves (bit for bit), with no sweep.
#[test]
fn zero_resistance_is_the_ideal_read() {
    let g = conductances(12 * 7, 1e-6, 1e-4, 5);
    let lines = LineResistance {
        segment_ohm: 0.0,
        driver_ohm: 0.0,
        sense_ohm: 0.0,
    };
    let tile = TileNetwork::new(12, 7, g.clone(), lines, End::Start, End::Finish).unwrap();
    let (t, sweeps, converged) = tile.transfer_matrix(TIGHT);
    assert!(converged && sweeps == 0);
    for a in 0..12 {
        for b in 0..7 {
            assert_eq!(t[b * 12 + a], g[a * 7 + b]);
        }
    }
    let first = tile.first_order_transfer();
    assert_eq!(first, t);
}

/// The sources deliver exactly the power dissipated in cells, wires and
/// periphery (Tellegen's theorem) at the solved potentials.
#[test]
fn power_is_conserved() {
    let (nd, ns) = (16, 16);
    let g = conductances(nd * ns, 1e-6, 100e-6, 11);
    let lines = LineResistance {
        segment_ohm: 5.0,
        driver_ohm: 200.0,
        sense_ohm: 100.0,
    };
    let tile = TileNetwork::new(nd, ns, g, lines, End::Start, End::Finish).unwrap();
    let drives = conductances(nd, 0.0, 0.3, 12);
    let s = tile.solve(&drives, 1, TIGHT);
    let p = tile.power(&drives, &s, 0);
    // Source current of driven line a: through its connection (r + R_drv).
    let delivered: f64 = (0..nd)
        .map(|a| {
            let near = s.driven_potentials[a * ns];
            drives[a] * (drives[a] - near) / (lines.segment_ohm + lines.driver_ohm)
        })
        .sum();
    let total = p.cells_w + p.lines_w + p.periphery_w;
    assert!(
        (total - delivered).abs() <= 1e-9 * delivered,
        "{total} vs {delivered}"
    );
    assert!(p.lines_w > 0.0 && p.periphery_w > 0.0);
}

/// The first-order transfer matrix approaches the exact one as the
/// resistance shrinks, its error shrinking with the square of `r`.
#[test]
fn first_order_error_is_second_order() {
    let (nd, ns) = (32, 32);
    let g = conductances(nd * ns, 1e-6, 100e-6, 21);
    let error = |r: f64| {
        let lines = LineResistance {
            segment_ohm: r,
            driver_ohm: 10.0 * r,
            sense_ohm: 10.0 * r,
        };
        let tile = TileNetwork::new(nd, ns, g.clone(), lines, End::Start, End::Finish).unwrap();
        let (exact, _, _) = tile.transfer_matrix(TIGHT);
        let approx = tile.first_order_transfer();
        let diff: Vec<f64> = exact.iter().zip(&approx).map(|(x, y)| x - y).collect();
        let dropped: Vec<f64> = exact
            .iter()
            .zip(&g_by_sensed(&g, nd, ns))
            .map(|(x, y)| x - y)
            .collect();
        (max_abs(&diff), max_abs(&dropped))
    };
    let (e1, d1) = error(1.0);
    let (e2, d2) = error(0.5);
    // The drop itself is first order, the approximation's error second.
    assert!((d1 / d2 - 2.0).abs() < 0.1, "drop ratio {}", d1 / d2);
    assert!((e1 / e2 - 4.0).abs() < 0.4, "error ratio {}", e1 / e2);
    assert!(e1 < 0.1 * d1);
}

fn g_by_sensed(g: &[f64], nd: usize, ns: usize) -> Vec<f64> {
    let mut out = vec![0.0; nd * ns];
    for a in 0..nd {
        for b in 0..ns {
            out[b * nd + a] = g[a * ns + b];
        }
    }
    out
}

/// Bad networks are refused with the field named.
#[test]
fn bad_networks_are_refused() {
    let lines = LineResistance {
        segment_ohm: -1.0,
        driver_ohm: 0.0,
        sense_ohm: 0.0,
    };
    let e = TileNetwork::new(1, 1, vec![1e-5], lines, End::Start, End::Start).unwrap_err();
    assert!(e.to_string().contains("line_resistance_ohm"), "{e}");
    let lines = LineResistance {
        segment_ohm: 1.0,
        driver_ohm: 0.0,
        sense_ohm: 0.0,
    };
    let e =
        TileNetwork::new(1, 2, vec![1e-5, f64::NAN], lines, End::Start, End::Start).unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
}

// ---------------------------------------------------------------------------
// A crossbar layer read through resistive lines.

use dyadsim::crossbar::{Crossbar, CrossbarConfig, IrDropSolver};
use dyadsim::linalg::{Mat, Vector};
use dyadsim::substrate::WeightArray;

/// Periphery that passes values through, so that a read is the analog product.
fn clean_config(device: &str) -> CrossbarConfig {
    CrossbarConfig {
        device: device.into(),
        write: dyadsim::controller::WriteScheme::Exact,
        dac_bits: 0,
        adc_bits: 0,
        adc_range: 0.0,
        output_noise: 0.0,
        w_scale: 1.0,
        ..CrossbarConfig::default()
    }
}

fn no_read_noise() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("read_noise".into(), toml::Value::Float(0.0));
    t
}

/// The forward and transposed reads of a tiled layer with line resistance
/// equal the dense solve of each tile, assembled by hand: input line `j`
/// (bias line last) is a row, output `i` owns device columns `2i` (`G⁺`)
/// and `2i + 1` (`G⁻`), forward reads drive rows from the tile's first
/// column and sense at its last row, transposed reads the reverse.
#[test]
fn crossbar_reads_match_dense_tile_solves() {
    let (n_out, n_in, batch) = (3usize, 4usize, 2usize);
    let lines = LineResistance {
        segment_ohm: 2_000.0,
        driver_ohm: 5_000.0,
        sense_ohm: 3_000.0,
    };
    let cfg = CrossbarConfig {
        line_resistance_ohm: lines.segment_ohm,
        driver_resistance_ohm: lines.driver_ohm,
        sense_resistance_ohm: lines.sense_ohm,
        ir_drop_tolerance: 1e-10,
        tile_rows: 3,
        tile_cols: 4,
        ..clean_config("reram_es")
    };
    let w = Mat::from_fn(n_out, n_in, |i, j| {
        ((i * 5 + j * 3) as f32 * 0.37).sin() * 0.8
    });
    let bias = Vector::from_fn(n_out, |i, _| 0.3 - 0.2 * i as f32);
    let mut xb = Crossbar::with_parameters(&cfg, &no_read_noise(), &w, &bias, 7).unwrap();
    let model = xb.model().clone();
    let (g_min, span) = (
        model.conductance.g_min_us,
        model.conductance.g_max_us - model.conductance.g_min_us,
    );
    // Conductance (S) of row j, device column c.
    let cell = |j: usize, c: usize| {
        let idx = c / 2 + j * n_out;
        let d = if c.is_multiple_of(2) {
            xb.plus_index(idx)
        } else {
            xb.minus_index(idx).unwrap()
        };
        ((g_min + xb.devices().visible(d) as f64 * span) * 1e-6).max(0.0)
    };
    let (rows, cols) = (n_in + 1, 2 * n_out);
    // Forward transfer T[c][j] and transposed transfer U[j][c] over all tiles.
    let mut forward = vec![vec![0.0f64; rows]; cols];
    let mut transposed = vec![vec![0.0f64; cols]; rows];
    for r0 in (0..rows).step_by(3) {
        for c0 in (0..cols).step_by(4) {
            let (nr, nc) = (3.min(rows - r0), 4.min(cols - c0));
            let g: Vec<f64> = (0..nr * nc)
                .map(|k| cell(r0 + k / nc, c0 + k % nc))
                .collect();
            for a in 0..nr {
                let mut unit = vec![0.0; nr];
                unit[a] = 1.0;
                let i = dense_currents(nr, nc, &g, lines, End::Start, End::Finish, &unit);
                for b in 0..nc {
                    forward[c0 + b][r0 + a] = i[b];
                }
            }
            let gt: Vec<f64> = (0..nc * nr)
                .map(|k| cell(r0 + k % nr, c0 + k / nr))
                .collect();
            for b in 0..nc {
                let mut unit = vec![0.0; nc];
                unit[b] = 1.0;
                let i = dense_currents(nc, nr, &gt, lines, End::Finish, End::Start, &unit);
                for a in 0..nr {
                    transposed[r0 + a][c0 + b] = i[a];
                }
            }
        }
    }
    let k = 1.0 / (span * 1e-6);
    let x = Mat::from_fn(n_in, batch, |j, b| {
        0.2 + 0.15 * (j + 2 * b) as f64 as f32 * 0.5
    });
    let mut y = Mat::zeros(0, 0);
    xb.forward(&x, &mut y);
    for i in 0..n_out {
        for b in 0..batch {
            let want: f64 = (0..rows)
                .map(|j| {
                    let xj = if j < n_in { x[(j, b)] as f64 } else { 1.0 };
                    k * (forward[2 * i][j] - forward[2 * i + 1][j]) * xj
                })
                .sum();
            let got = y[(i, b)] as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(0.1),
                "y[{i},{b}] {got} vs {want}"
            );
        }
    }
    // The lines lose something: the read differs from the ideal weights.
    let ideal = &w * &x;
    assert!((&y - &ideal).abs().max() > 1e-3);
    let d = Mat::from_fn(n_out, batch, |i, b| 0.5 - 0.3 * i as f32 + 0.1 * b as f32);
    let mut z = Mat::zeros(0, 0);
    xb.transposed(&d, &mut z);
    for j in 0..n_in {
        for b in 0..batch {
            let want: f64 = (0..n_out)
                .map(|i| k * (transposed[j][2 * i] - transposed[j][2 * i + 1]) * d[(i, b)] as f64)
                .sum();
            let got = z[(j, b)] as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(0.1),
                "z[{j},{b}] {got} vs {want}"
            );
        }
    }
}

/// Zero resistance reads bit for bit as a crossbar without the settings,
/// on a noisy device through the default periphery, tiles or not.
#[test]
fn zero_resistance_crossbar_reads_keep_their_bits() {
    let (n_out, n_in) = (7usize, 9usize);
    let w = Mat::from_fn(n_out, n_in, |i, j| ((i * 3 + j) as f32 * 0.71).cos() * 0.5);
    let bias = Vector::from_fn(n_out, |i, _| 0.1 * i as f32);
    let base = CrossbarConfig {
        device: "reram_es".into(),
        ..CrossbarConfig::default()
    };
    let tiled = CrossbarConfig {
        tile_rows: 4,
        tile_cols: 6,
        ..base.clone()
    };
    let x = Mat::from_fn(n_in, 3, |j, b| (j as f32 - 4.0) * 0.1 + b as f32 * 0.05);
    let d = Mat::from_fn(n_out, 3, |i, b| (i as f32 - 3.0) * 0.2 + b as f32 * 0.1);
    let reads = |cfg: &CrossbarConfig| {
        let mut xb = Crossbar::with_parameters(cfg, &toml::Table::new(), &w, &bias, 3).unwrap();
        let (mut y, mut z) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
        xb.forward(&x, &mut y);
        xb.transposed(&d, &mut z);
        (y, z)
    };
    let (y0, z0) = reads(&base);
    let (y1, z1) = reads(&tiled);
    let bits = |m: &Mat| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&y0), bits(&y1));
    assert_eq!(bits(&z0), bits(&z1));
}

/// The first-order solver reads close to the exact one at small drops.
#[test]
fn first_order_crossbar_reads_track_the_exact_ones() {
    let (n_out, n_in) = (16usize, 31usize);
    let w = Mat::from_fn(n_out, n_in, |i, j| {
        ((i * 7 + j * 3) as f32 * 0.13).sin() * 0.9
    });
    let bias = Vector::zeros(n_out);
    let read = |solver| {
        let cfg = CrossbarConfig {
            line_resistance_ohm: 20.0,
            ir_drop: solver,
            ..clean_config("reram_es")
        };
        let mut xb = Crossbar::with_parameters(&cfg, &no_read_noise(), &w, &bias, 3).unwrap();
        let x = Mat::from_element(n_in, 1, 1.0);
        let mut y = Mat::zeros(0, 0);
        xb.forward(&x, &mut y);
        y
    };
    let exact = read(IrDropSolver::Exact);
    let first = read(IrDropSolver::FirstOrder);
    let ideal = &w * Mat::from_element(n_in, 1, 1.0);
    let drop = (&exact - &ideal).abs().max();
    let error = (&exact - &first).abs().max();
    assert!(drop > 1e-3, "the lines must matter here ({drop})");
    assert!(
        error < 0.1 * drop,
        "first order {error} against a drop of {drop}"
    );
}

/// Bad line and tile settings are refused, naming the field and range.
#[test]
fn bad_line_settings_are_refused() {
    let check = |cfg: CrossbarConfig, field: &str| {
        let e = Crossbar::new(&cfg, &toml::Table::new(), 2, 2, 1)
            .err()
            .unwrap_or_else(|| panic!("{field} accepted"));
        let msg = format!("{e:#}");
        assert!(msg.contains(field), "{field}: {msg}");
    };
    let base = clean_config("constant_step");
    check(
        CrossbarConfig {
            line_resistance_ohm: -1.0,
            ..base.clone()
        },
        "crossbar.line_resistance_ohm",
    );
    check(
        CrossbarConfig {
            driver_resistance_ohm: f64::NAN,
            ..base.clone()
        },
        "crossbar.driver_resistance_ohm",
    );
    check(
        CrossbarConfig {
            tile_cols: 3,
            ..base.clone()
        },
        "crossbar.tile_cols",
    );
    check(
        CrossbarConfig {
            tile_rows: 1,
            ..base.clone()
        },
        "crossbar.tile_rows",
    );
    check(
        CrossbarConfig {
            ir_drop: IrDropSolver::FirstOrder,
            ..base.clone()
        },
        "crossbar.ir_drop",
    );
    check(
        CrossbarConfig {
            line_resistance_ohm: 1.0,
            ir_drop_tolerance: 0.0,
            ..base.clone()
        },
        "crossbar.ir_drop_tolerance",
    );
    check(
        CrossbarConfig {
            line_resistance_ohm: 1.0,
            mapping: dyadsim::crossbar::Mapping::Reference,
            ..base
        },
        "crossbar.mapping",
    );
}
