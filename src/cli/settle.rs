//! `dyadsim settle`: settle one batch with the continuous-time circuit
//! (DESIGN.md §3) and record how the neurons get there.
//!
//! Writes, into `--out DIR`:
//! - `trajectories.csv` — long format, one row per (rule, step, layer,
//!   neuron): `rule,alpha,t,layer,neuron,v_plus,v_minus,s_mean,delta`
//!   (t in units of τ; one sample of the batch, `--sample`);
//! - `trajectories.png` (or `.svg` with `--format svg`) — per layer, `v⁺`
//!   (solid) and `v⁻` (dashed), and `s̄` (solid) and `δ` (dashed) against t,
//!   for the `--neurons` most strongly nudged neurons of each layer;
//! - `settle.json` — the settle report(s).
//!
//! The points are the integrator's accepted steps (the adaptive rk45 takes
//! long steps once the transient is over); for smooth curves cap the step,
//! e.g. `--set circuit.h_max=0.2`, or use `--integrator rk4 --set circuit.dt=0.1`.
//!
//! `--compare` settles DP and DP⊤ with the same α, β and network and draws
//! them side by side. `--json` prints the report as the last stdout line:
//! `{"rule", "alpha", "status", "settle_time", "steps", "rhs_evals", …}`, or
//! with `--compare` `{"alpha", "dp": {…}, "dpt": {…}}`.

use super::common::RunArgs;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use dyadsim::circuit::{CircuitSettler, SettleReport, StateLayout};
use dyadsim::experiment::config::Config;
use dyadsim::experiment::run_dir::{load_parameters, write_atomic, PARAMETERS_FILE};
use dyadsim::experiment::train::build_network;
use dyadsim::experiment::ValidConfig;
use dyadsim::linalg::Mat;
use dyadsim::network::{Activation, Architecture};
use dyadsim::report::figures::{series_color, svg_string, svg_to_png, tick};
use dyadsim::rules::dual::{DualInference, DualState};
use dyadsim::rules::RuleKind;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `dyadsim settle`.
#[derive(Args, Debug, Clone)]
pub struct SettleArgs {
    /// Network, rule and circuit settings (`--integrator`, `--tol`, `--t-max`,
    /// `--set circuit.…`); the batch is the first `--batch` images.
    #[command(flatten)]
    pub run: RunArgs,
    /// Take the network from a `dyadsim train --out DIR` directory: its
    /// `config.toml` (flags still override it) and, if present, its trained
    /// `parameters.json`; otherwise the network is at initialisation.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Relative gain mismatch σ of the nudging amplifiers (≥ 0).
    #[arg(long)]
    pub gain_mismatch: Option<f32>,
    /// Std of the amplifiers' static input offsets (≥ 0, activity units).
    #[arg(long)]
    pub amp_offset: Option<f32>,
    /// Amplifier output noise σ_n per √τ (≥ 0; needs `--integrator euler_maruyama`).
    #[arg(long)]
    pub amp_noise: Option<f32>,
    /// Amplifier output rail r > 0 (|u| ≤ r).
    #[arg(long)]
    pub amp_rail: Option<f32>,
    /// Seed of the amplifier mismatch and offsets (the chip).
    #[arg(long)]
    pub amp_seed: Option<u64>,
    /// Settle DP and DP⊤ with the same α and draw them side by side.
    #[arg(long)]
    pub compare: bool,
    /// Images from `train` (default) or `test`.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Which sample of the batch to trace.
    #[arg(long, default_value_t = 0)]
    pub sample: usize,
    /// Neurons traced per layer (those with the largest final |δ|).
    #[arg(long, default_value_t = 3)]
    pub neurons: usize,
    /// Output directory for the CSV, the plot and settle.json.
    #[arg(long, value_name = "DIR", default_value = "settle-out")]
    pub out: PathBuf,
    /// Plot format: png or svg.
    #[arg(long, default_value = "png")]
    pub format: String,
    /// Print the settle report as JSON on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// The recorded trajectory of one sample through one settle.
struct Trace {
    rule: RuleKind,
    alpha: f32,
    /// Mean asymmetry of hidden layers and of the output.
    alpha_hidden: f32,
    activation: Activation,
    times: Vec<f64>,
    /// Per layer: per recorded step, `v⁺` then `v⁻` of every neuron of the sample.
    states: Vec<Vec<f32>>,
    widths: Vec<usize>,
    report: SettleReport,
}

impl Trace {
    fn steps(&self) -> usize {
        self.times.len()
    }
    fn v(&self, k: usize, step: usize, neuron: usize) -> (f32, f32) {
        let n = self.widths[k];
        let row = &self.states[k][step * 2 * n..(step + 1) * 2 * n];
        (row[neuron], row[n + neuron])
    }
    /// `(s̄, δ)` of a neuron at a step (hidden: through f; output: linear).
    fn mean_diff(&self, k: usize, step: usize, neuron: usize) -> (f32, f32) {
        let (vp, vm) = self.v(k, step, neuron);
        let hidden = k + 1 < self.widths.len();
        let (sp, sm, a) = if hidden {
            (
                self.activation.apply(vp),
                self.activation.apply(vm),
                self.alpha_hidden,
            )
        } else {
            (vp, vm, self.alpha)
        };
        (a * sp + (1.0 - a) * sm, sp - sm)
    }
    /// The `count` neurons of layer `k` with the largest final |δ|.
    fn strongest(&self, k: usize, count: usize) -> Vec<usize> {
        let last = self.steps().saturating_sub(1);
        let mut order: Vec<(usize, f32)> = (0..self.widths[k])
            .map(|i| {
                let d = self.mean_diff(k, last, i).1.abs();
                (i, if d.is_finite() { d } else { f32::INFINITY })
            })
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut picked: Vec<usize> = order.into_iter().take(count).map(|(i, _)| i).collect();
        picked.sort_unstable();
        picked
    }
}

fn rule_label(rule: RuleKind) -> &'static str {
    match rule {
        RuleKind::Dp => "DP",
        RuleKind::Dpt => "DP⊤",
        RuleKind::DpDamped => "DP (damped)",
        RuleKind::Bp => "BP",
        RuleKind::BpAdv => "BP-adv",
    }
}

fn rule_name(rule: RuleKind) -> String {
    match serde_json::to_value(rule) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{rule:?}"),
    }
}

/// Resolves the configuration: `--from DIR/config.toml` under the flags.
fn resolve(args: &SettleArgs) -> Result<Config> {
    let mut run = args.run.clone();
    if let Some(dir) = &args.from {
        if run.config.is_none() {
            let path = dir.join("config.toml");
            ensure!(
                path.exists(),
                "--from {}: no config.toml there (expected a `dyadsim train --out` directory)",
                dir.display()
            );
            run.config = Some(path);
        }
    }
    let mut sets = Vec::new();
    let mut push = |field: &str, v: Option<String>| {
        if let Some(v) = v {
            sets.push(format!("circuit.amplifier.{field}={v}"));
        }
    };
    push("gain_mismatch", args.gain_mismatch.map(|v| v.to_string()));
    push("offset", args.amp_offset.map(|v| v.to_string()));
    push("noise", args.amp_noise.map(|v| v.to_string()));
    push("rail", args.amp_rail.map(|v| v.to_string()));
    push("seed", args.amp_seed.map(|v| v.to_string()));
    // Explicit --set assignments stay last so they win.
    sets.append(&mut run.set);
    run.set = sets;
    run.resolve_raw_for("settle", UNUSED)
}

/// What `dyadsim settle` does not use of the training flags: it integrates
/// the circuit's ODE for one batch, without training.
const UNUSED: &[(&str, &str)] = &[
    ("training.epochs", "settle runs one batch, without training"),
    ("optimizer", "settle takes no optimiser step"),
    (
        "training.dynamics",
        "settle always integrates the circuit's ODE",
    ),
];

/// Settles the batch for one rule and records sample `sample`.
fn trace_one(
    cfg: &ValidConfig,
    from: Option<&Path>,
    x: &Mat,
    y: &Mat,
    sample: usize,
) -> Result<Trace> {
    let mut net = build_network(cfg)?;
    if let Some(dir) = from {
        let path = dir.join(PARAMETERS_FILE);
        if path.exists() {
            load_parameters(&path, &mut net)?;
        } else {
            eprintln!(
                "note: {} not found; settling the network of that configuration at initialisation",
                path.display()
            );
        }
    }
    let Some(params) = cfg.learning().dual().cloned() else {
        bail!(
            "learning.rule = {:?}: the circuit settles dual-propagation rules only (dp, dpt, dp-damped)",
            cfg.raw().learning.rule
        );
    };
    let widths: Vec<usize> = net.layers.iter().map(|l| l.n_out()).collect();
    let layout = StateLayout::new(&widths, x.ncols());
    let mut settler = CircuitSettler::new(cfg.circuit())?;
    let mut state = DualState::default();
    let mut inference = DualInference {
        params: &params,
        net: &mut net,
        state: &mut state,
    };
    inference.forward_init(x, y);
    let mut times = Vec::new();
    let mut states: Vec<Vec<f32>> = vec![Vec::new(); widths.len()];
    let (report, _) = settler.settle_observed(&mut inference, y, |t, v, _| {
        times.push(t);
        for (k, rec) in states.iter_mut().enumerate() {
            let n = widths[k];
            let p = layout.index(k, true, 0, sample);
            let m = layout.index(k, false, 0, sample);
            rec.extend_from_slice(&v[p..p + n]);
            rec.extend_from_slice(&v[m..m + n]);
        }
    });
    Ok(Trace {
        rule: cfg.raw().learning.rule,
        alpha: params.alpha,
        alpha_hidden: params.mean_alpha(),
        activation: net.activation,
        times,
        states,
        widths,
        report,
    })
}

fn report_json(trace: &Trace) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(trace.report).context("serialising settle report")?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("rule".into(), rule_name(trace.rule).into());
        obj.insert("alpha".into(), f64::from(trace.alpha).into());
    }
    Ok(v)
}

/// Runs `dyadsim settle`.
pub fn run(args: &SettleArgs) -> Result<()> {
    let format = args.format.to_ascii_lowercase();
    ensure!(
        format == "png" || format == "svg",
        "--format {}: allowed values are png and svg",
        args.format
    );
    let raw = resolve(args)?;
    let data = dyadsim::data::load(&raw.data)?;
    let split = match args.split.as_str() {
        "train" => &data.train,
        "test" => &data.test,
        other => bail!("--split {other}: allowed values are train and test"),
    };
    ensure!(
        raw.training.batch > 0,
        "--batch 0 (training.batch): settle needs a batch of at least 1 image"
    );
    let batch = raw.training.batch.min(split.len());
    ensure!(
        batch > 0,
        "the {} split is empty (data.{}_size = 0)",
        args.split,
        args.split
    );
    ensure!(
        args.sample < batch,
        "--sample {} is outside the batch of {batch} (training.batch)",
        args.sample
    );
    let classes = raw
        .network
        .arch
        .parse::<Architecture>()
        .map_err(|e| anyhow::anyhow!("network.arch: {e}"))?
        .outputs();
    let indices: Vec<usize> = (0..batch).collect();
    let (mut x, mut y) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
    split.batch(&indices, classes, &mut x, &mut y);

    let rules: Vec<RuleKind> = if args.compare {
        vec![RuleKind::Dp, RuleKind::Dpt]
    } else {
        vec![raw.learning.rule]
    };
    let mut traces = Vec::new();
    for rule in rules {
        let mut c = raw.clone();
        c.learning.rule = rule;
        let cfg = c
            .check()
            .with_context(|| format!("configuration for rule {}", rule_name(rule)))?;
        traces.push(trace_one(&cfg, args.from.as_deref(), &x, &y, args.sample)?);
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create directory {}", args.out.display()))?;
    let mut csv = String::from("rule,alpha,t,layer,neuron,v_plus,v_minus,s_mean,delta\n");
    let mut picked = Vec::new();
    for tr in &traces {
        let name = rule_name(tr.rule);
        let per_layer: Vec<Vec<usize>> = (0..tr.widths.len())
            .map(|k| tr.strongest(k, args.neurons))
            .collect();
        for s in 0..tr.steps() {
            for (k, neurons) in per_layer.iter().enumerate() {
                for &i in neurons {
                    let (vp, vm) = tr.v(k, s, i);
                    let (m, d) = tr.mean_diff(k, s, i);
                    let _ = writeln!(
                        csv,
                        "{name},{},{},{},{i},{vp},{vm},{m},{d}",
                        tr.alpha,
                        tr.times[s],
                        k + 1
                    );
                }
            }
        }
        picked.push(per_layer);
    }
    let csv_path = args.out.join("trajectories.csv");
    write_atomic(&csv_path, csv.as_bytes())?;
    let plot_path = args.out.join(format!("trajectories.{format}"));
    plot(&plot_path, &traces, &picked)?;
    let json = if args.compare {
        serde_json::json!({
            "alpha": raw.learning.alpha,
            "dp": report_json(&traces[0])?,
            "dpt": report_json(&traces[1])?,
        })
    } else {
        report_json(&traces[0])?
    };
    let pretty = serde_json::to_string_pretty(&json).context("serialising settle report")?;
    write_atomic(&args.out.join("settle.json"), pretty.as_bytes())?;

    for tr in &traces {
        let r = &tr.report;
        let mut line = format!(
            "{} α = {}: {} at t = {:.3} τ after {} steps ({} rejected), {} RHS evaluations, ‖dv/dt‖∞·τ = {:.2e}",
            rule_label(tr.rule),
            tr.alpha,
            serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            r.settle_time,
            r.steps,
            r.rejected_steps,
            r.rhs_evals,
            r.residual
        );
        if let Some(d) = r.divergence {
            let _ = write!(
                line,
                "; diverged ({}) in layer {} at t = {:.3} τ",
                d.reason, d.layer, d.time
            );
        }
        eprintln!("{line}");
    }
    eprintln!(
        "wrote {}, {} and {}",
        csv_path.display(),
        plot_path.display(),
        args.out.join("settle.json").display()
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&json).context("serialising settle report")?
        );
    }
    Ok(())
}

/// `(t, value)` points of one line.
type Curve = Vec<(f64, f32)>;

const PANEL_W: u32 = 460;
const PANEL_H: u32 = 230;

fn plot(path: &Path, traces: &[Trace], picked: &[Vec<Vec<usize>>]) -> Result<()> {
    let layers = traces.first().map_or(0, |t| t.widths.len()) as u32;
    let size = (PANEL_W * 2 * traces.len() as u32, PANEL_H * layers + 40);
    let is_svg = path.extension().is_some_and(|e| e == "svg");
    let err = |e: String| anyhow::anyhow!("cannot draw {}: {e}", path.display());
    // Drawn as SVG; a PNG is that SVG rasterised with the bundled font.
    let svg = svg_string(size, |root| draw(root, traces, picked).map_err(err))?;
    let bytes = if is_svg {
        svg.into_bytes()
    } else {
        svg_to_png(&svg).with_context(|| format!("rasterising {}", path.display()))?
    };
    write_atomic(path, &bytes)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    traces: &[Trace],
    picked: &[Vec<Vec<usize>>],
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (title, body) = root.split_vertically(40);
    let heading = traces
        .iter()
        .map(|t| {
            format!(
                "{} α = {}: {} ({:.1} τ)",
                rule_label(t.rule),
                t.alpha,
                serde_json::to_value(t.report.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                t.report.settle_time
            )
        })
        .collect::<Vec<_>>()
        .join("   |   ");
    title.titled(&heading, ("sans-serif", 20)).map_err(e)?;
    let layers = traces.first().map_or(0, |t| t.widths.len());
    let panels = body.split_evenly((layers, 2 * traces.len()));
    for (c, (tr, per_layer)) in traces.iter().zip(picked).enumerate() {
        for (k, neurons) in per_layer.iter().enumerate() {
            for (half, membrane) in [(0usize, true), (1, false)] {
                let area = &panels[k * 2 * traces.len() + 2 * c + half];
                let series: Vec<(usize, Curve, Curve)> = neurons
                    .iter()
                    .map(|&i| {
                        let (mut a, mut b) = (Vec::new(), Vec::new());
                        for s in 0..tr.steps() {
                            let (p, q) = if membrane {
                                tr.v(k, s, i)
                            } else {
                                tr.mean_diff(k, s, i)
                            };
                            a.push((tr.times[s], p));
                            b.push((tr.times[s], q));
                        }
                        (i, a, b)
                    })
                    .collect();
                let finite = series
                    .iter()
                    .flat_map(|(_, a, b)| a.iter().chain(b.iter()).map(|p| p.1))
                    .filter(|v| v.is_finite());
                let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| {
                    (l.min(v), h.max(v))
                });
                let (lo, hi) = if lo.is_finite() && hi > lo {
                    let pad = 0.05 * (hi - lo);
                    (lo - pad, hi + pad)
                } else if lo.is_finite() {
                    (lo - 1.0, lo + 1.0)
                } else {
                    (-1.0, 1.0)
                };
                let t_end = tr.times.last().copied().unwrap_or(1.0).max(1e-6);
                let layer_name = if k + 1 == layers {
                    format!("output layer {}", k + 1)
                } else {
                    format!("layer {}", k + 1)
                };
                let caption = if membrane {
                    format!(
                        "{} {layer_name}: v⁺ (solid), v⁻ (dashed)",
                        rule_label(tr.rule)
                    )
                } else {
                    format!(
                        "{} {layer_name}: s̄ (solid), δ (dashed)",
                        rule_label(tr.rule)
                    )
                };
                let mut chart = ChartBuilder::on(area)
                    .caption(caption, ("sans-serif", 14))
                    .margin(6)
                    .x_label_area_size(28)
                    .y_label_area_size(48)
                    .build_cartesian_2d(0.0..t_end, lo..hi)
                    .map_err(e)?;
                chart
                    .configure_mesh()
                    .x_desc("t / τ")
                    .x_label_formatter(&|x: &f64| tick(*x))
                    .y_label_formatter(&|y: &f32| tick(f64::from(*y)))
                    .label_style(("sans-serif", 11))
                    .light_line_style(WHITE.mix(0.0))
                    .draw()
                    .map_err(e)?;
                for (j, (i, a, b)) in series.into_iter().enumerate() {
                    let color = series_color(j);
                    let clean = |v: Vec<(f64, f32)>| {
                        v.into_iter()
                            .filter(|p| p.1.is_finite())
                            .map(|(t, y)| (t, y.clamp(lo, hi)))
                            .collect::<Vec<_>>()
                    };
                    chart
                        .draw_series(LineSeries::new(clean(a), color.stroke_width(2)))
                        .map_err(e)?
                        .label(format!("neuron {i}"))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(DashedLineSeries::new(clean(b), 6, 4, color.stroke_width(1)))
                        .map_err(e)?;
                }
                chart
                    .configure_series_labels()
                    .label_font(("sans-serif", 11))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .draw()
                    .map_err(e)?;
            }
        }
    }
    Ok(())
}
