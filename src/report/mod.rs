//! Reports: figures, a Markdown page and a self-contained HTML page from a
//! sweep's results or a single run, with a hardware-feasibility section
//! (DESIGN.md §5).
//!
//! [`generate`] reads the input ([`load()`]), turns it into figures
//! ([`figures::Figure`], drawn as PNG and SVG) and a list of document
//! [`Block`]s, and renders the blocks twice: `report.md` (figures linked
//! from `figures/`) and `report.html` (figures embedded as base64 PNG, so
//! the page can be mailed on its own).
//!
//! Statistics: a point of "accuracy vs axis" is the mean over every run
//! sharing that axis value and the values of the other non-seed axes of its
//! series; the error bar is the sample standard deviation (n − 1) over those
//! runs (in a grid with a `seed` axis: over seeds). A diverged run counts
//! with the accuracy it had when training stopped (none if its weights were
//! not finite); a failed run has none. The divergence map shows both.

pub mod feasibility;
pub mod figures;
pub mod load;
pub mod table;
pub mod technology;

use crate::experiment::sweep::JobStatus;
pub use crate::numbers::{lifetime_words, scientific, si, significant};
use crate::substrate::LayerHardwareStats;
use anyhow::{Context, Result};
use base64::Engine;
use feasibility::{estimate, Estimate, Provenance, Requirements, RunCounts, Term, Verdict};
use figures::{Figure, Series};
pub use load::{load, Dataset, Run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use technology::Technology;

/// The technology used when none is given: TaOx/HfOx ReRAM at 32 nm.
pub const DEFAULT_TECHNOLOGY: &str =
    include_str!("../../device_models/technology/reram_taox_32nm.toml");

/// Options of [`generate`].
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Output directory (created).
    pub out: PathBuf,
    /// Technology file (else the sweep's `[report] technology`, else
    /// [`DEFAULT_TECHNOLOGY`]).
    pub technology: Option<PathBuf>,
    /// Requirements (each set field overrides the sweep's).
    pub requirements: Requirements,
    /// Report title.
    pub title: Option<String>,
}

/// What [`generate`] wrote.
#[derive(Clone, Debug)]
pub struct ReportSummary {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Every PNG and SVG written.
    pub figures: Vec<PathBuf>,
    /// Runs reported on.
    pub runs: usize,
}

/// A piece of the report document.
#[derive(Clone, Debug)]
pub enum Block {
    /// Heading of level 1–3.
    Heading(u8, String),
    /// A paragraph (plain text; `**bold**` is kept in Markdown only).
    Para(String),
    /// A table.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A figure: caption and the PNG/SVG paths relative to the report.
    Figure(String, String, String),
    /// Blocks shown folded, under a one-line summary (`<details>`).
    Collapsed(String, Vec<Block>),
    /// The table of contents: a link to every level-2 heading.
    Contents,
}

/// `n` and the noun, plural unless `n` is 1: `1 job`, `3 jobs`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Sample mean and standard deviation (n − 1; 0 for one value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn is_seed(path: &str) -> bool {
    path == "seed" || path.ends_with(".seed")
}

/// A swept configuration path in words: the axis label (with its unit)
/// and the short name legends use. Unknown paths fall back to their last
/// segment.
pub fn axis_words(path: &str) -> (String, String) {
    let known: Option<(&str, &str)> = match path {
        "learning.alpha" => Some(("nudging asymmetry α", "α")),
        "learning.beta" => Some(("nudging strength β", "β")),
        "learning.rule" => Some(("learning rule", "rule")),
        "learning.schedule" => Some(("inference schedule", "schedule")),
        "learning.hidden_alpha" => Some(("hidden-layer asymmetry α_hidden", "α_hidden")),
        "device.read_noise" => Some(("read-noise σ (relative to G)", "read noise σ")),
        "device.write_noise" => Some(("write-noise σ (relative to a step)", "write noise σ")),
        "device.dw_min" | "device.step" => Some(("conductance step (of the range)", "step")),
        "crossbar.device" => Some(("device model", "device")),
        "crossbar.lr" => Some(("crossbar learning rate", "lr")),
        "crossbar.write" => Some(("write mode", "write")),
        "optimizer.lr" => Some(("learning rate", "lr")),
        "optimizer.kind" => Some(("optimizer", "optimizer")),
        "training.batch" => Some(("batch size (samples)", "batch")),
        "training.epochs" => Some(("epochs", "epochs")),
        "training.substrate" => Some(("substrate", "substrate")),
        "training.dynamics" => Some(("dynamics", "dynamics")),
        "network.arch" => Some(("architecture", "arch")),
        "network.activation" => Some(("activation", "activation")),
        "data.dataset" => Some(("dataset", "dataset")),
        "data.train_size" => Some(("training images", "train images")),
        "seed" => Some(("seed", "seed")),
        _ => None,
    };
    match known {
        Some((long, short)) => (long.to_string(), short.to_string()),
        None => {
            let last = path.rsplit('.').next().unwrap_or(path).replace('_', " ");
            (last.clone(), last)
        }
    }
}

/// An axis value in words: rules by their names in the paper (`DP⊤`),
/// numbers without trailing zeros.
pub fn value_words(path: &str, v: &Value) -> String {
    match v {
        Value::String(s) if path.ends_with("rule") => match s.as_str() {
            "dp" => "DP".into(),
            "dpt" => "DP⊤".into(),
            "bp" => "BP".into(),
            "dp-damped" => "DP (damped)".into(),
            "bp-adv" => "BP + adversarial".into(),
            other => other.to_string(),
        },
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |x| significant(x, 6)),
        other => load::fmt_value(other),
    }
}

/// `short name = value` of one axis, for legends and configuration labels.
fn axis_term(path: &str, v: &Value) -> String {
    format!("{} = {}", axis_words(path).1, value_words(path, v))
}

/// `read noise σ = 0.05, α = 0.5, rule = DP⊤` without the seed (`run` if
/// no axis).
fn seedless_label(r: &Run) -> String {
    let parts: Vec<String> = r
        .axes
        .iter()
        .filter(|(p, _)| !is_seed(p))
        .map(|(p, v)| axis_term(p, v))
        .collect();
    if parts.is_empty() {
        "run".into()
    } else {
        parts.join(", ")
    }
}

/// Every axis of a run in words, the seed included: `read noise σ = 0,
/// α = 0.5, rule = DP⊤, seed = 2` (job `n` if no axis).
fn run_words(r: &Run) -> String {
    if r.axes.is_empty() {
        return format!("job {}", r.job);
    }
    r.axes
        .iter()
        .map(|(p, v)| axis_term(p, v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runs grouped by configuration (runs that differ only in the seed
/// share one), in first-seen order, each with its [`seedless_label`].
fn configurations(data: &Dataset) -> Vec<(String, Vec<&Run>)> {
    let mut groups: Vec<(String, Vec<&Run>)> = Vec::new();
    for r in &data.runs {
        let key = seedless_label(r);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups
}

/// The distinct values an axis takes, in first-seen order.
fn axis_values(data: &Dataset, path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for r in &data.runs {
        if let Some(v) = r.axis(path) {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
    }
    // numeric axes in numeric order
    if out.iter().all(Value::is_number) {
        out.sort_by(|a, b| {
            a.as_f64()
                .unwrap_or(0.0)
                .partial_cmp(&b.as_f64().unwrap_or(0.0))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    out
}

/// x position of an axis value: the number itself, or its index for
/// categorical axes.
fn x_of(values: &[Value], v: &Value) -> Option<f64> {
    if values.iter().all(Value::is_number) {
        v.as_f64()
    } else {
        values.iter().position(|u| u == v).map(|i| i as f64)
    }
}

/// Metric `f` against axis `path`: one series per combination of the other
/// non-seed axes (at most 8; beyond that everything is pooled).
fn metric_vs_axis(
    data: &Dataset,
    path: &str,
    f: &dyn Fn(&Run) -> Option<f64>,
) -> (Vec<Series>, Option<Vec<String>>) {
    let values = axis_values(data, path);
    let others: Vec<&String> = data
        .axis_order
        .iter()
        .filter(|p| *p != path && !is_seed(p))
        .collect();
    let key_of = |r: &Run| -> String {
        others
            .iter()
            .filter_map(|p| r.axis(p).map(|v| axis_term(p, v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut keys: Vec<String> = Vec::new();
    for r in &data.runs {
        let k = key_of(r);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let pooled = keys.len() > 8;
    if pooled {
        keys = vec![String::new()];
    }
    let series = keys
        .iter()
        .map(|k| {
            let points = values
                .iter()
                .filter_map(|v| {
                    let xs: Vec<f64> = data
                        .runs
                        .iter()
                        .filter(|r| r.axis(path) == Some(v) && (pooled || &key_of(r) == k))
                        .filter_map(f)
                        .collect();
                    if xs.is_empty() {
                        return None;
                    }
                    let (m, s) = mean_std(&xs);
                    Some((x_of(&values, v)?, m, s))
                })
                .collect();
            Series {
                label: if k.is_empty() {
                    "all runs".into()
                } else {
                    k.clone()
                },
                points,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let cats = (!values.iter().all(Value::is_number))
        .then(|| values.iter().map(|v| value_words(path, v)).collect());
    (series, cats)
}

/// Mean of `f` over runs for each (x, y) cell of two axes.
fn heat_cells(
    data: &Dataset,
    x: &str,
    y: &str,
    f: &dyn Fn(&Run) -> Option<f64>,
) -> (Vec<String>, Vec<String>, Vec<Vec<Option<f64>>>) {
    let xv = axis_values(data, x);
    let yv = axis_values(data, y);
    let cells = yv
        .iter()
        .map(|b| {
            xv.iter()
                .map(|a| {
                    let xs: Vec<f64> = data
                        .runs
                        .iter()
                        .filter(|r| r.axis(x) == Some(a) && r.axis(y) == Some(b))
                        .filter_map(f)
                        .collect();
                    (!xs.is_empty()).then(|| mean_std(&xs).0)
                })
                .collect()
        })
        .collect();
    (
        xv.iter().map(|v| value_words(x, v)).collect(),
        yv.iter().map(|v| value_words(y, v)).collect(),
        cells,
    )
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

/// A term for tables: `1.234 nJ (measured)`; `unit = "mm²"` prints an area
/// in mm², `"epochs"` a count; a total with a missing part is `incomplete`.
pub fn format_term(t: &Term, unit: &str) -> String {
    // A total with a missing term is a partial sum, not a missing number.
    let label = match (t.value, t.provenance) {
        (Some(_), Provenance::Missing) => "incomplete",
        (_, p) => p.label(),
    };
    match t.value {
        Some(v) if unit == "epochs" => format!("{} ({label})", scientific(v)),
        Some(v) if unit == "mm²" => format!("{} mm² ({label})", significant(v * 1e6, 3)),
        Some(v) => format!("{} ({label})", si(v, unit)),
        None => "missing".into(),
    }
}

struct Builder<'a> {
    data: &'a Dataset,
    dir: PathBuf,
    blocks: Vec<Block>,
    files: Vec<PathBuf>,
    /// The feasibility verdict in one sentence, for the summary.
    verdict: Option<String>,
}

impl Builder<'_> {
    fn figure(&mut self, fig: Figure, name: &str, caption: String) -> Result<()> {
        let saved = figures::save(&fig, &self.dir.join("figures"), name)?;
        self.files.push(saved.png);
        self.files.push(saved.svg);
        self.blocks.push(Block::Figure(
            caption,
            format!("figures/{name}.png"),
            format!("figures/{name}.svg"),
        ));
        Ok(())
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn accuracy(r: &Run) -> Option<f64> {
    r.metric(|x| x.test_accuracy)
}

/// Test accuracy in percent, the unit of every accuracy figure and table.
fn accuracy_percent(r: &Run) -> Option<f64> {
    accuracy(r).map(|a| 100.0 * a)
}

/// Accuracy axes run within 0–100 %.
const PERCENT: Option<(f64, f64)> = Some((0.0, 100.0));
/// Axes of quantities that cannot be negative.
const NON_NEGATIVE: Option<(f64, f64)> = Some((0.0, f64::INFINITY));

/// Writes the report for the input at `input` (see [`load()`]).
pub fn generate(input: &Path, options: &ReportOptions) -> Result<ReportSummary> {
    let data = load(input)?;
    generate_from(&data, options)
}

/// Writes the report of a loaded dataset.
pub fn generate_from(data: &Dataset, options: &ReportOptions) -> Result<ReportSummary> {
    let dir = options.out.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut b = Builder {
        data,
        dir: dir.clone(),
        blocks: Vec::new(),
        files: Vec::new(),
        verdict: None,
    };
    let title = options
        .title
        .clone()
        .unwrap_or_else(|| "dyadsim report".into());
    b.blocks.push(Block::Heading(1, title.clone()));
    let header_end = b.blocks.len();
    runs_table(&mut b);
    accuracy_figures(&mut b)?;
    dynamics_figures(&mut b)?;
    hardware_figures(&mut b)?;
    inference_section(&mut b)?;
    let tech = table::technology_for(data, options.technology.as_deref())?;
    feasibility_section(&mut b, options, &tech)?;
    // The table behind it all, flat, for pandas or a spreadsheet.
    table::write_results_csv(data, &tech, &dir.join("results.csv"))?;
    b.blocks.push(Block::Para(
        "Every run as one row — axes, status, accuracies, energy terms (J per training sample), latency and lifetimes — is in `results.csv` beside this report.".into(),
    ));
    // The first screen: what was run, what came out, where to read on.
    let summary = summary_blocks(&b);
    b.blocks.splice(header_end..header_end, summary);

    // Written atomically (fsync, rename): an interrupted report never
    // leaves a half-written page.
    let md = render_markdown(&b.blocks);
    let markdown = dir.join("report.md");
    crate::experiment::run_dir::write_atomic(&markdown, md.as_bytes())?;
    let html_text = render_html(&title, &b.blocks, &dir)?;
    let html = dir.join("report.html");
    crate::experiment::run_dir::write_atomic(&html, html_text.as_bytes())?;
    Ok(ReportSummary {
        markdown,
        html,
        figures: b.files,
        runs: data.runs.len(),
    })
}

/// The report's first screen: the source, what was swept, the best
/// configuration, what diverged or failed, the feasibility verdict, and the
/// table of contents.
fn summary_blocks(b: &Builder) -> Vec<Block> {
    let data = b.data;
    let mut out = Vec::new();
    let status = |s: &str| data.runs.iter().filter(|r| r.status_label() == s).count();
    let (ok, diverged, failed) = (status("ok"), status("diverged"), status("failed"));
    out.push(Block::Para(format!(
        "Source: `{}` — {}: {ok} ok, {diverged} diverged, {failed} failed.",
        data.source,
        count(data.runs.len(), "run"),
    )));
    for w in &data.warnings {
        out.push(Block::Para(format!("Warning: {w}")));
    }
    out.push(Block::Heading(2, "Summary".into()));
    let mut points: Vec<String> = Vec::new();
    if data.axis_order.is_empty() {
        points.push("**Runs:** no swept axes (single configuration).".into());
    } else {
        let axes: Vec<String> = data
            .axis_order
            .iter()
            .map(|p| {
                let values: Vec<String> = axis_values(data, p)
                    .iter()
                    .map(|v| value_words(p, v))
                    .collect();
                format!("{} ∈ {{{}}}", axis_words(p).0, values.join(", "))
            })
            .collect();
        points.push(format!("**Swept:** {}.", axes.join(" × ")));
    }
    // Configurations pooled over seeds; the best by mean test accuracy
    // among those where every seed has one.
    let groups = configurations(data);
    let best = groups
        .iter()
        .filter_map(|(key, runs)| {
            let accs: Vec<f64> = runs.iter().filter_map(|r| accuracy_percent(r)).collect();
            (accs.len() == runs.len()).then(|| (key, mean_std(&accs), accs.len()))
        })
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0));
    match best {
        Some((key, (mean, sd), n)) => {
            let spread = if n > 1 {
                format!(" ± {sd:.2}")
            } else {
                String::new()
            };
            let what = if groups.len() > 1 {
                format!("**Best configuration:** {key}")
            } else {
                "**Test accuracy:**".to_string()
            };
            let over = if n > 1 {
                format!(" (mean ± s.d. over {})", count(n, "seed"))
            } else {
                String::new()
            };
            points.push(format!("{what} — {mean:.2}{spread} % test accuracy{over}."));
        }
        None => {
            points.push("**Best configuration:** none has a test accuracy for every seed.".into())
        }
    }
    if diverged + failed > 0 {
        let mut which: Vec<String> = groups
            .iter()
            .filter_map(|(key, runs)| {
                let bad = runs.iter().filter(|r| r.status_label() != "ok").count();
                (bad > 0).then(|| format!("{key} ({bad} of {})", runs.len()))
            })
            .collect();
        let more = which.len().saturating_sub(6);
        which.truncate(6);
        if more > 0 {
            which.push(format!("and {more} more"));
        }
        points.push(format!(
            "**Did not finish:** {} diverged, {} failed — {}. The runs table gives where each stopped.",
            count(diverged, "run"),
            count(failed, "run"),
            which.join("; ")
        ));
    } else {
        points.push("**Did not finish:** none — every run finished without diverging.".into());
    }
    if let Some(v) = &b.verdict {
        points.push(format!("**Feasibility:** {v}"));
    }
    out.extend(points.into_iter().map(Block::Para));
    out.push(Block::Heading(2, "Contents".into()));
    out.push(Block::Contents);
    out
}

fn runs_table(b: &mut Builder) {
    let data = b.data;
    let mut header: Vec<String> = vec!["job".into()];
    header.extend(data.axis_order.iter().map(|p| axis_words(p).1));
    header.extend(
        [
            "status",
            "test acc.",
            "Lipschitz",
            "max |s|",
            "settle (τ)",
            "epochs",
            "note",
        ]
        .map(String::from),
    );
    let rows = data
        .runs
        .iter()
        .map(|r| {
            let mut row = vec![r.job.to_string()];
            for p in &data.axis_order {
                row.push(r.axis(p).map(|v| value_words(p, v)).unwrap_or_default());
            }
            row.push(r.status_label().to_string());
            row.push(fmt_opt(accuracy(r), |a| format!("{:.2}%", a * 100.0)));
            row.push(fmt_opt(r.metric(|x| x.lipschitz), |x| significant(x, 4)));
            row.push(fmt_opt(r.metric(|x| Some(x.max_state)), scientific));
            row.push(fmt_opt(r.epoch_mean(|e| e.settle_time_mean), |x| {
                format!("{x:.2}")
            }));
            let epochs = r.result.as_ref().map_or(0, |x| x.epochs.len());
            row.push(epochs.to_string());
            let note = if let Some(e) = &r.error {
                e.lines().next().unwrap_or_default().to_string()
            } else if let Some(d) = r.result.as_ref().and_then(|x| x.diverged_at.as_ref()) {
                format!(
                    "diverged: {} (epoch {}, batch {}, layer {}{})",
                    d.reason.replace('_', " "),
                    d.epoch,
                    d.batch,
                    d.layer,
                    d.cause.map_or(String::new(), |c| format!(
                        "; cause: {}",
                        c.to_string().replace('_', " ")
                    ))
                )
            } else {
                String::new()
            };
            row.push(note.replace('|', "/"));
            row
        })
        .collect();
    b.blocks.push(Block::Heading(2, "Runs".into()));
    b.blocks.push(Block::Collapsed(
        format!("{} (click to unfold)", count(data.runs.len(), "run")),
        vec![Block::Table(header, rows)],
    ));
}

fn plot_axes(data: &Dataset) -> Vec<String> {
    data.axis_order
        .iter()
        .filter(|p| !is_seed(p))
        .cloned()
        .collect()
}

fn accuracy_figures(b: &mut Builder) -> Result<()> {
    let data = b.data;
    let axes = plot_axes(data);
    if axes.is_empty() {
        return Ok(());
    }
    b.blocks.push(Block::Heading(2, "Accuracy".into()));
    for p in &axes {
        let (series, cats) = metric_vs_axis(data, p, &accuracy_percent);
        if series.is_empty() {
            b.blocks.push(Block::Para(format!(
                "No run has a test accuracy to plot against `{p}`."
            )));
            continue;
        }
        let (words, _) = axis_words(p);
        b.figure(
            Figure::Lines {
                title: format!("Test accuracy vs {words}"),
                x_label: words.clone(),
                y_label: "test accuracy (%)".into(),
                x_categories: cats,
                series,
                y_limits: PERCENT,
            },
            &format!("accuracy_vs_{}", slug(p)),
            format!(
                "Final test accuracy against {} (`{p}`), mean ± std over seeds and pooled runs.",
                axis_words(p).0
            ),
        )?;
    }
    let pairs: Vec<(String, String)> = axes
        .iter()
        .enumerate()
        .flat_map(|(i, a)| axes[i + 1..].iter().map(move |c| (a.clone(), c.clone())))
        .take(3)
        .collect();
    for (x, y) in &pairs {
        let (xv, yv, cells) = heat_cells(data, x, y, &accuracy);
        let (xw, yw) = (axis_words(x).0, axis_words(y).0);
        b.figure(
            Figure::Heatmap {
                title: format!("Test accuracy: {xw} × {yw}"),
                x_label: xw.clone(),
                y_label: yw.clone(),
                x_values: xv,
                y_values: yv,
                cells,
                percent: true,
                scale: figures::ColourScale::MinMax,
                value_label: "test accuracy".into(),
            },
            &format!("heatmap_{}_{}", slug(x), slug(y)),
            format!("Mean final test accuracy for each {xw} (`{x}`) and {yw} (`{y}`); n/a = no run finished with an accuracy. The colours span the smallest to the largest cell (colour bar); the printed values are the accuracies."),
        )?;
    }
    // divergence map: fraction of runs that diverged or failed
    let bad = |r: &Run| Some(if r.status == JobStatus::Ok { 0.0 } else { 1.0 });
    // With more than two axes, map the pair along which divergence varies
    // most (variance of the per-cell fractions).
    let mut best: Option<(f64, String, String)> = None;
    for (i, a) in axes.iter().enumerate() {
        for c in &axes[i + 1..] {
            let (_, _, cells) = heat_cells(data, a, c, &bad);
            let v: Vec<f64> = cells.iter().flatten().filter_map(|x| *x).collect();
            let var = if v.len() > 1 { mean_std(&v).1 } else { 0.0 };
            if best.as_ref().is_none_or(|b| var > b.0) {
                best = Some((var, a.clone(), c.clone()));
            }
        }
    }
    let (x, y) = match (&best, axes.as_slice()) {
        (Some((_, a, c)), _) => (a.clone(), Some(c.clone())),
        (None, [a, ..]) => (a.clone(), None),
        (None, []) => return Ok(()),
    };
    let (xv, yv, cells) = match &y {
        Some(y) => heat_cells(data, &x, y, &bad),
        None => {
            let (xv, _, _) = heat_cells(data, &x, &x, &bad);
            let vals = axis_values(data, &x);
            let row = vals
                .iter()
                .map(|v| {
                    let xs: Vec<f64> = data
                        .runs
                        .iter()
                        .filter(|r| r.axis(&x) == Some(v))
                        .filter_map(bad)
                        .collect();
                    (!xs.is_empty()).then(|| mean_std(&xs).0)
                })
                .collect();
            (xv, vec!["all".into()], vec![row])
        }
    };
    b.figure(
        Figure::Heatmap {
            title: "Divergence map (share of runs diverged or failed)".into(),
            x_label: axis_words(&x).0,
            y_label: y.as_deref().map(|y| axis_words(y).0).unwrap_or_default(),
            x_values: xv,
            y_values: yv,
            cells,
            percent: true,
            scale: figures::ColourScale::Fixed(0.0, 1.0),
            value_label: "diverged or failed".into(),
        },
        "divergence_map",
        "Share of runs per cell that diverged (non-finite or runaway states/weights) or failed, on a fixed 0–100 % colour scale."
            .into(),
    )?;
    Ok(())
}

/// Accuracy against the time after programming (`dyadsim infer`'s
/// `infer.json` in the run directory): one figure per programming mode,
/// one series per compensation mode (mean ± sample standard deviation over
/// the seeds), and the points as a table.
fn inference_section(b: &mut Builder) -> Result<()> {
    use crate::experiment::infer::duration_words;
    let Some(inference) = b.data.inference.clone() else {
        return Ok(());
    };
    b.blocks
        .push(Block::Heading(2, "Inference after programming".into()));
    let seeds = inference.seeds.len();
    b.blocks.push(Block::Para(format!(
        "`dyadsim infer` on the trained `{}` crossbars ({}), {} test images, {}{}: the test accuracy at each time after the weights were programmed, with the devices' drift, programming error and accumulated read noise as the device model gives them.",
        inference.device_model,
        inference.arch,
        inference.test_images,
        count(seeds, "seed"),
        inference
            .trained_test_accuracy
            .map(|a| format!("; {:.2} % at the end of training", 100.0 * a))
            .unwrap_or_default()
    )));
    let mut times: Vec<f64> = inference.points.iter().map(|p| p.time_s).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let categories: Vec<String> = times.iter().map(|t| duration_words(*t)).collect();
    let mut modes = Vec::new();
    for p in &inference.points {
        if !modes.contains(&p.program) {
            modes.push(p.program);
        }
    }
    for mode in modes {
        let mut compensations = Vec::new();
        for p in inference.points.iter().filter(|p| p.program == mode) {
            if !compensations.contains(&p.compensation) {
                compensations.push(p.compensation);
            }
        }
        let series: Vec<Series> = compensations
            .iter()
            .map(|&c| Series {
                label: format!("compensation {c}"),
                points: inference
                    .points
                    .iter()
                    .filter(|p| p.program == mode && p.compensation == c)
                    .filter_map(|p| {
                        let x = times.iter().position(|t| *t == p.time_s)? as f64;
                        let y = 100.0 * p.test_accuracy?;
                        Some((x, y, 100.0 * p.test_accuracy_std.unwrap_or(0.0)))
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        b.figure(
            Figure::Lines {
                title: format!("Test accuracy after programming ({mode})"),
                x_label: "time after programming".into(),
                y_label: "test accuracy (%)".into(),
                x_categories: Some(categories.clone()),
                series,
                y_limits: PERCENT,
            },
            &format!("inference_accuracy_{mode}"),
            format!(
                "Test accuracy against the time after programming, programming `{mode}`, mean ± sample standard deviation over {}; one series per drift compensation.",
                count(seeds, "seed")
            ),
        )?;
    }
    let header = [
        "program",
        "compensation",
        "time",
        "test accuracy",
        "± std",
        "min – max",
        "pulses per weight",
    ]
    .map(String::from)
    .to_vec();
    let pct = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{:.2} %", 100.0 * v));
    let rows = inference
        .points
        .iter()
        .map(|p| {
            vec![
                p.program.to_string(),
                p.compensation.to_string(),
                duration_words(p.time_s),
                pct(p.test_accuracy),
                p.test_accuracy_std
                    .map_or_else(|| "–".into(), |s| format!("{:.2}", 100.0 * s)),
                format!(
                    "{} – {}",
                    pct(p.test_accuracy_min),
                    pct(p.test_accuracy_max)
                ),
                p.program_pulses
                    .as_ref()
                    .map_or_else(|| "–".into(), |pp| format!("{:.3}", pp.per_weight)),
            ]
        })
        .collect();
    b.blocks.push(Block::Table(header, rows));
    Ok(())
}

fn dynamics_figures(b: &mut Builder) -> Result<()> {
    let data = b.data;
    let axes = plot_axes(data);
    let alpha_axes: Vec<String> = axes
        .iter()
        .filter(|p| p.ends_with("alpha"))
        .cloned()
        .collect();
    b.blocks.push(Block::Heading(2, "Dynamics".into()));
    let lip = |r: &Run| r.metric(|x| x.lipschitz);
    let settle = |r: &Run| r.epoch_mean(|e| e.settle_time_mean);
    for p in &alpha_axes {
        let (series, cats) = metric_vs_axis(data, p, &lip);
        if !series.is_empty() {
            b.figure(
                Figure::Lines {
                    title: format!("Lipschitz estimate vs {}", axis_words(p).0),
                    x_label: axis_words(p).0,
                    y_label: "Lipschitz estimate ‖W_L⋯W_1‖₂".into(),
                    x_categories: cats,
                    series,
                    y_limits: NON_NEGATIVE,
                },
                &format!("lipschitz_vs_{}", slug(p)),
                format!(
                    "Final Lipschitz estimate ‖W_L⋯W_1‖₂ against {} (`{p}`).",
                    axis_words(p).0
                ),
            )?;
        }
        let (series, cats) = metric_vs_axis(data, p, &settle);
        if !series.is_empty() {
            b.figure(
                Figure::Lines {
                    title: format!("Settle time vs {}", axis_words(p).0),
                    x_label: axis_words(p).0,
                    y_label: "mean settle time (units of τ)".into(),
                    x_categories: cats,
                    series,
                    y_limits: NON_NEGATIVE,
                },
                &format!("settle_vs_{}", slug(p)),
                format!("Mean settle time of the neuron circuit (units of τ, averaged over epochs) against {} (`{p}`).", axis_words(p).0),
            )?;
        }
    }
    if alpha_axes.is_empty() {
        b.blocks.push(Block::Para(
            "No α axis was swept: Lipschitz and settle-time-vs-α figures are omitted.".into(),
        ));
    }
    // Per-epoch curves, one per configuration: runs differing only in the
    // seed are averaged epoch by epoch (± std over seeds).
    let curves = |key: load::EpochMetric| -> Vec<Series> {
        configurations(data)
            .into_iter()
            .take(12)
            .map(|(label, runs)| {
                let mut by_epoch: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for r in runs {
                    for (x, y) in r.epoch_series(key) {
                        by_epoch.entry(x.round() as i64).or_default().push(y);
                    }
                }
                Series {
                    label,
                    points: by_epoch
                        .into_iter()
                        .map(|(x, ys)| {
                            let (m, s) = mean_std(&ys);
                            (x as f64, m, s)
                        })
                        .collect(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let lc = curves(|e| e.test_accuracy.map(|a| 100.0 * a));
    if !lc.is_empty() {
        b.figure(
            Figure::Lines {
                title: "Learning curves".into(),
                x_label: "epoch".into(),
                y_label: "test accuracy (%)".into(),
                x_categories: None,
                series: lc,
                y_limits: PERCENT,
            },
            "learning_curves",
            "Test accuracy after each epoch, per configuration (mean ± std over seeds; first 12 configurations). A diverged run stops early.".into(),
        )?;
    }
    let ga = curves(|e| e.gradient_angle_deg);
    if ga.is_empty() {
        b.blocks.push(Block::Para(
            "No run tracked the gradient angle (set `training.track_angle = true`).".into(),
        ));
    } else {
        b.figure(
            Figure::Lines {
                title: "Angle to the BP gradient".into(),
                x_label: "epoch".into(),
                y_label: "angle to the BP gradient (degrees)".into(),
                x_categories: None,
                series: ga,
                y_limits: Some((0.0, 180.0)),
            },
            "gradient_angle",
            "Angle between the rule's weight gradient and back-propagation's on a fixed batch, per epoch.".into(),
        )?;
    }
    if data
        .runs
        .iter()
        .all(|r| r.epoch_mean(|e| e.settle_time_mean).is_none())
    {
        b.blocks.push(Block::Para(
            "No run used the continuous-time circuit (`training.dynamics = \"ode\"`): no settle times.".into(),
        ));
    }
    Ok(())
}

/// `(edges, counts)` of a histogram, if it has any bins.
fn histogram(h: &crate::devices::Histogram) -> Option<(Vec<f64>, Vec<f64>)> {
    let counts: Vec<f64> = h.counts.iter().map(|&c| c as f64).collect();
    (h.edges.len() == counts.len() + 1 && !counts.is_empty()).then(|| (h.edges.clone(), counts))
}

/// The hardware statistics of a run's layers (empty without any).
fn hardware_layers(r: &Run) -> &[LayerHardwareStats] {
    r.result
        .as_ref()
        .and_then(|x| x.hardware.as_ref())
        .map_or(&[], |h| h.layers.as_slice())
}

fn hardware_figures(b: &mut Builder) -> Result<()> {
    let data = b.data;
    let with_hw: Vec<&Run> = data
        .runs
        .iter()
        .filter(|r| r.result.as_ref().is_some_and(|x| x.hardware.is_some()))
        .collect();
    b.blocks.push(Block::Heading(2, "Device state".into()));
    if with_hw.is_empty() {
        b.blocks.push(Block::Para(
            "No run carries crossbar hardware statistics (digital substrate or none reported): no conductance or pulse histograms.".into(),
        ));
        return Ok(());
    }
    let mut drawn = 0;
    // up to four runs spread over the grid (first, last and between)
    let n = with_hw.len();
    let picks: Vec<usize> = if n <= 4 {
        (0..n).collect()
    } else {
        (0..4).map(|k| k * (n - 1) / 3).collect()
    };
    type Pick = fn(&LayerHardwareStats) -> Option<&crate::devices::Histogram>;
    let kinds: [(&str, &str, &str, Pick); 2] = [
        (
            "conductance_histogram",
            "Conductances",
            "normalised conductance (G − G_min)/(G_max − G_min)",
            |l| Some(&l.conductance_histogram),
        ),
        (
            "pulse_histogram",
            "Write pulses per device",
            "pulses",
            |l| l.pulse_histogram.as_ref(),
        ),
    ];
    for (i, r) in picks.iter().map(|&k| with_hw[k]).enumerate() {
        let layers = hardware_layers(r);
        for (key, what, unit, pick) in kinds {
            let series: Vec<(String, Vec<f64>, Vec<f64>)> = layers
                .iter()
                .enumerate()
                .filter_map(|(k, l)| {
                    let (e, c) = histogram(pick(l)?)?;
                    // fractions, so that a small layer is visible next to a big one
                    let total: f64 = c.iter().sum::<f64>().max(1.0);
                    let c = c.iter().map(|x| x / total).collect();
                    Some((format!("layer {}", k + 1), e, c))
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            b.figure(
                Figure::Histogram {
                    title: format!("{what} — {}", run_words(r)),
                    x_label: unit.to_string(),
                    series,
                },
                &format!("{key}_{i}"),
                format!(
                    "{what} at the end of job {} ({}), per layer.",
                    r.job,
                    run_words(r)
                ),
            )?;
            drawn += 1;
        }
    }
    // Per-device write pulses per layer: mean and maximum, per configuration.
    type Stat = fn(&LayerHardwareStats) -> Option<f64>;
    let layer_stat =
        |r: &Run, k: usize, stat: Stat| -> Option<f64> { hardware_layers(r).get(k).and_then(stat) };
    let depth = with_hw
        .iter()
        .map(|r| hardware_layers(r).len())
        .max()
        .unwrap_or(0);
    // pooled over runs: mean ± std across runs of each per-run statistic; a
    // Tiki-Taka layer's fast array A (its own devices) as series of its own
    let stats: [(Stat, &str); 4] = [
        (|l| Some(l.pulses_per_device_mean), "mean device"),
        (|l| Some(l.pulses_per_device_max as f64), "most-worn device"),
        (
            |l| {
                l.transfer
                    .as_ref()
                    .map(|t| t.fast_array.pulses_per_device_mean)
            },
            "fast array A: mean device",
        ),
        (
            |l| {
                l.transfer
                    .as_ref()
                    .map(|t| t.fast_array.pulses_per_device_max as f64)
            },
            "fast array A: most-worn device",
        ),
    ];
    let series: Vec<Series> = stats
        .iter()
        .map(|&(stat, label)| Series {
            label: label.to_string(),
            points: (0..depth)
                .filter_map(|k| {
                    let xs: Vec<f64> = with_hw
                        .iter()
                        .filter_map(|r| layer_stat(r, k, stat))
                        .collect();
                    (!xs.is_empty()).then(|| {
                        let (m, sd) = mean_std(&xs);
                        (k as f64, m, sd)
                    })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if !series.is_empty() {
        b.figure(
            Figure::Lines {
                title: "Write pulses per device".into(),
                x_label: "layer".into(),
                y_label: "write pulses per device".into(),
                x_categories: Some((1..=depth).map(|k| format!("layer {k}")).collect()),
                series,
                y_limits: NON_NEGATIVE,
            },
            "pulses_per_device",
            format!("Write pulses per device over the whole run per layer: the layer's mean and its most-worn device (and those of a Tiki-Taka layer's fast array A, over the runs that have one), each mean ± std over the {}.", count(with_hw.len(), "crossbar run")),
        )?;
        drawn += 1;
    }
    if drawn == 0 {
        b.blocks.push(Block::Para(
            "The hardware statistics carry no conductance histograms or per-device pulse counts."
                .into(),
        ));
    }
    Ok(())
}

fn feasibility_section(b: &mut Builder, options: &ReportOptions, tech: &Technology) -> Result<()> {
    let data = b.data;
    let settings = data.settings.clone().unwrap_or_default();
    let mut req = settings.requirements.clone();
    let o = &options.requirements;
    req.accuracy_min = o.accuracy_min.or(req.accuracy_min);
    req.energy_per_sample_max_j = o.energy_per_sample_max_j.or(req.energy_per_sample_max_j);
    req.lifetime_min_epochs = o.lifetime_min_epochs.or(req.lifetime_min_epochs);
    req.validate()?;

    b.blocks
        .push(Block::Heading(2, "Hardware feasibility".into()));
    b.blocks.push(Block::Para(format!(
        "Technology `{}`: {}. Energy is per training sample (all counts of the run divided by the samples seen, so evaluation reads are included when the crossbar counted them). \
         *measured* = the counts (reads, conversions, pulses, conductances, settle times) were counted by the emulator, energies per event come from the technology or the device model; *estimated* = computed from the architecture, schedule and technology (full-scale read drive, mean conductance (G_min+G_max)/2, one τ per layer update of a discrete schedule, uniform wear); *missing* = no data, left out of the total. \
         The digital baseline is 3 MACs per weight per sample (BP forward, backward, gradient) at the technology's energy per MAC.",
        tech.name, tech.description
    )));
    if data
        .runs
        .iter()
        .any(|r| r.config.training.substrate != crate::experiment::config::SubstrateKind::Crossbar)
    {
        b.blocks.push(Block::Para(
            "Runs on the digital substrate are costed as if their network were mapped onto this technology: all their counts are estimated, and write energy and lifetime are missing (no pulses).".into(),
        ));
    }
    // Which device-model constants replaced the technology's.
    let mut models: Vec<feasibility::DeviceConstants> = Vec::new();
    for r in &data.runs {
        if let Some(d) = feasibility::DeviceConstants::of_config(&r.config) {
            if !models.contains(&d) {
                models.push(d);
            }
        }
    }
    for d in &models {
        let stated = |v: Option<f64>, unit: &str, what: &str| match v {
            Some(x) => format!("{what} {} (device model)", si(x, unit)),
            None => format!("{what} not stated (technology value used)"),
        };
        b.blocks.push(Block::Para(format!(
            "Device model `{}`: {}, {}, {}, G range {}–{}.",
            d.name,
            match d.endurance_pulses {
                Some(e) => format!("endurance {} pulses (device model)", scientific(e)),
                None => "endurance not stated (technology value used)".into(),
            },
            stated(d.pulse_energy_j, "J", "energy per pulse"),
            stated(d.pulse_width_s, "s", "pulse width"),
            si(d.g_range_s.0, "S"),
            si(d.g_range_s.1, "S")
        )));
    }
    // One row per configuration: runs that differ only in the seed are pooled.
    let seedless = seedless_label;
    let mut groups: Vec<(String, Vec<usize>, Vec<Estimate>)> = Vec::new();
    for (i, r) in data.runs.iter().enumerate() {
        let key = seedless(r);
        let g = match groups.iter().position(|g| g.0 == key) {
            Some(g) => g,
            None => {
                groups.push((key, Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        groups[g].1.push(i);
        let Some(result) = &r.result else { continue };
        match RunCounts::from_run(&r.config, result) {
            Ok(c) => groups[g].2.push(estimate(&c, &tech.params)),
            Err(e) => b.blocks.push(Block::Para(format!(
                "Job {} ({}): no estimate ({e:#}).",
                r.job,
                run_words(r)
            ))),
        }
    }
    let pooled_runs = groups.iter().any(|g| g.1.len() > 1);
    // The line-loss column only where some run has resistive lines.
    let with_lines = groups
        .iter()
        .flat_map(|g| &g.2)
        .any(|e| e.line_energy_j.value.is_some_and(|v| v > 0.0));
    let mut rows = Vec::new();
    let mut pooled: Vec<(usize, Estimate)> = Vec::new();
    for (gi, (key, members, ests)) in groups.iter().enumerate() {
        let Some(e) = Estimate::pooled(ests) else {
            continue;
        };
        // Time per epoch on the chip: latency per sample × training images.
        let seconds_per_epoch = e
            .latency_s
            .value
            .map(|l| l * data.runs[members[0]].config.data.train_size as f64);
        let lifetime = |t: &Term| match t.value {
            Some(v) => format!(
                "{} ({})",
                lifetime_words(v, seconds_per_epoch),
                t.provenance.label()
            ),
            None => "missing".into(),
        };
        let ratio = match (e.total_energy_j.value, e.digital_energy_j.value) {
            (Some(a), Some(d)) if a > 0.0 => format!("{}×", significant(d / a, 3)),
            _ => "–".into(),
        };
        let mut row = vec![key.clone(), format_term(&e.read_energy_j, "J")];
        if with_lines {
            row.push(format_term(&e.line_energy_j, "J"));
        }
        row.extend([
            format_term(&e.adc_energy_j, "J"),
            format_term(&e.dac_energy_j, "J"),
            format_term(&e.write_energy_j, "J"),
            format_term(&e.neuron_energy_j, "J"),
            format_term(&e.total_energy_j, "J"),
            format_term(&e.digital_energy_j, "J"),
            ratio,
            format_term(&e.latency_s, "s"),
            format_term(&e.area_m2, "mm²"),
            lifetime(&e.lifetime_median_epochs),
            lifetime(&e.lifetime_1pct_epochs),
        ]);
        rows.push(row);
        pooled.push((gi, e));
    }
    b.blocks
        .push(Block::Heading(3, "Energy per training sample".into()));
    energy_breakdown(b, &groups, &pooled)?;
    b.blocks
        .push(Block::Heading(3, "Estimates per configuration".into()));
    if pooled_runs {
        b.blocks.push(Block::Para(
            "Runs differing only in the seed are pooled: every term is the mean over the seeds (missing if any seed lacks it; a diverged seed counts with the counts of its shortened run), lifetimes the shortest.".into(),
        ));
    }
    b.blocks.push(Block::Para(
        "Lifetimes in epochs until the median device (or the first 1 % of devices) reaches its endurance, and the time that is on the chip: epochs × training images × latency per sample, training without pause.".into(),
    ));
    let mut header = vec!["configuration", "reads"];
    if with_lines {
        header.push("line losses");
    }
    header.extend([
        "ADC",
        "DAC",
        "writes",
        "neurons",
        "total / sample",
        "digital BP / sample",
        "digital ÷ analog",
        "latency / sample",
        "area",
        "lifetime (median device)",
        "lifetime (first 1 % of devices)",
    ]);
    b.blocks.push(Block::Table(
        header.into_iter().map(String::from).collect(),
        rows,
    ));
    ir_drop_section(b);
    b.blocks.push(Block::Heading(3, "Verdict".into()));
    if !req.any() {
        b.blocks.push(Block::Para(
            "No requirements set (`[requirements]` in the sweep spec or `--require-*` flags): no verdict.".into(),
        ));
        b.verdict = Some(
            "no requirements set, so no verdict; the estimates per configuration are under Hardware feasibility.".into(),
        );
    } else {
        let req_text = [
            req.accuracy_min
                .map(|a| format!("accuracy ≥ {:.2}%", a * 100.0)),
            req.energy_per_sample_max_j
                .map(|e| format!("energy per sample ≤ {}", si(e, "J"))),
            req.lifetime_min_epochs
                .map(|l| format!("lifetime (first 1 % of devices) ≥ {} epochs", scientific(l))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        b.blocks.push(Block::Para(format!(
            "Requirements: {req_text}. Accuracy is the mean over seeds (a diverged seed counts with the accuracy it reached when training stopped); a configuration where a seed failed or ended with non-finite weights has no accuracy and does not meet an accuracy requirement."
        )));
        let yn = |v: Option<bool>, set: bool| match (set, v) {
            (false, _) => "–".to_string(),
            (true, Some(true)) => "yes".into(),
            (true, Some(false)) => "no".into(),
            (true, None) => "unknown".into(),
        };
        let mut passing = 0;
        let rows = pooled
            .iter()
            .map(|(gi, e)| {
                let (key, members, _) = &groups[*gi];
                let accs: Vec<f64> = members
                    .iter()
                    .filter_map(|&i| accuracy(&data.runs[i]))
                    .collect();
                let acc =
                    (accs.len() == members.len() && !accs.is_empty()).then(|| mean_std(&accs).0);
                let v = Verdict::of(&req, acc, e);
                let pass = v.passes(&req);
                passing += pass as usize;
                vec![
                    key.clone(),
                    fmt_opt(acc, |a| format!("{:.2}%", a * 100.0)),
                    yn(v.accuracy, req.accuracy_min.is_some()),
                    yn(v.energy, req.energy_per_sample_max_j.is_some()),
                    yn(v.lifetime, req.lifetime_min_epochs.is_some()),
                    if pass {
                        "**meets all**".into()
                    } else {
                        "fails".into()
                    },
                ]
            })
            .collect();
        b.blocks.push(Block::Table(
            [
                "configuration",
                "test acc.",
                "accuracy",
                "energy",
                "lifetime",
                "verdict",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        ));
        let sentence = format!(
            "{passing} of {} {} every requirement ({req_text}).",
            count(pooled.len(), "configuration"),
            if passing == 1 { "meets" } else { "meet" }
        );
        b.blocks.push(Block::Para(sentence.clone()));
        b.verdict = Some(sentence);
    }
    let estimates = &pooled;
    let prov: BTreeMap<&str, usize> = estimates.iter().fold(BTreeMap::new(), |mut m, (_, e)| {
        *m.entry(e.total_energy_j.provenance.label()).or_default() += 1;
        m
    });
    if prov.contains_key(Provenance::Missing.label())
        || prov.contains_key(Provenance::Estimated.label())
    {
        b.blocks.push(Block::Para(
            "A total marked *estimated* contains at least one analytic term (in these runs typically the neuron integration of a discrete schedule, costed at one τ per layer update); *missing* means a term had no data at all. Runs with `training.dynamics = \"ode\"` on a crossbar count settle times and make the neuron term measured.".into(),
        ));
    }
    b.blocks
        .push(Block::Heading(3, "Technology constants".into()));
    let rows = tech
        .quantities
        .iter()
        .map(|(k, q)| {
            vec![
                format!("`{k}`"),
                quantity_words(q.value, &q.unit),
                Technology::meaning(k).to_string(),
                q.source.clone(),
            ]
        })
        .collect();
    b.blocks.push(Block::Table(
        ["constant", "value", "meaning", "source"]
            .map(String::from)
            .to_vec(),
        rows,
    ));
    Ok(())
}

/// A technology constant with its unit as people write it: `1200 µm²`,
/// `10 µS`, `128` (a count has no unit), `10¹² pulses`.
fn quantity_words(value: f64, unit: &str) -> String {
    let unit = match unit {
        "1" | "" => "",
        "um^2" => "µm²",
        "mm^2" => "mm²",
        "nm^2" => "nm²",
        "F^2" => "F²",
        "uS" => "µS",
        "us" => "µs",
        "uW" => "µW",
        "kOhm" => "kΩ",
        "Ohm" => "Ω",
        "MOhm" => "MΩ",
        other => other,
    };
    let number = if value.abs() >= 1e5 {
        scientific(value)
    } else {
        significant(value, 6)
    };
    if unit.is_empty() {
        number
    } else {
        format!("{number} {unit}")
    }
}

/// The IR-drop table: for every configuration whose crossbar has resistive
/// lines, each layer's end-of-run full-scale read per tile size (the
/// layer's own first). Nothing without line resistance.
fn ir_drop_section(b: &mut Builder) {
    let percent = |x: f64| format!("{:.2} %", 100.0 * x);
    let cells = |f: &crate::substrate::FullScaleRead| {
        vec![
            format!("{} × {}", f.tile_rows, f.tile_cols),
            f.tiles.to_string(),
            percent(f.mean_voltage_loss),
            percent(f.max_voltage_loss),
            percent(f.line_power_fraction),
            percent(f.output_error),
            if f.converged {
                "yes".into()
            } else {
                "no".into()
            },
        ]
    };
    // Per configuration (first seed) and layer: the run's own tile size.
    let mut own = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut by_size: Option<(String, Vec<Vec<String>>)> = None;
    for r in &b.data.runs {
        let key = seedless_label(r);
        let Some(hw) = r.result.as_ref().and_then(|x| x.hardware.as_ref()) else {
            continue;
        };
        if seen.contains(&key) || hw.layers.iter().all(|l| l.ir_drop.is_none()) {
            continue;
        }
        seen.push(key.clone());
        let mut sizes = Vec::new();
        for (k, layer) in hw.layers.iter().enumerate() {
            let Some(d) = &layer.ir_drop else { continue };
            let Some(first) = d.full_scale_reads.first() else {
                continue;
            };
            let mut row = vec![key.clone(), format!("{}", k + 1)];
            row.extend(cells(first));
            own.push(row);
            for f in &d.full_scale_reads {
                let mut row = vec![format!("{}", k + 1)];
                row.extend(cells(f));
                sizes.push(row);
            }
        }
        if by_size.is_none() {
            by_size = Some((key, sizes));
        }
    }
    if own.is_empty() {
        return;
    }
    let columns = [
        "tile",
        "tiles",
        "mean voltage loss",
        "worst voltage loss",
        "line power",
        "output error",
        "converged",
    ];
    b.blocks
        .push(Block::Heading(3, "IR drop by tile size".into()));
    b.blocks.push(Block::Para(
        "Each layer's devices at the end of the run, read at full scale (every input line, the bias line included, at the DAC's full scale) through lines with the run's resistances and solved exactly, in tiles of input lines × device columns (a differential pair takes two columns). *Voltage loss*: the share of the drive a cell does not see (mean over cells, and the worst cell); *line power*: the share of the read's power dissipated in the wires and the periphery resistances (the feasibility estimate adds it to the read energy as line losses); *output error*: RMS of the layer's output error over the RMS ideal output. The accuracy cost of a tile size is the test accuracy of runs trained and tested with it (a sweep over `crossbar.tile_rows` and `tile_cols`; the accuracy table above). First seed of each configuration, at its own tile size:".into(),
    ));
    let mut header = vec!["configuration".to_string(), "layer".to_string()];
    header.extend(columns.iter().map(|c| c.to_string()));
    b.blocks.push(Block::Table(header, own));
    if let Some((key, rows)) = by_size {
        b.blocks.push(Block::Para(format!(
            "The devices of {key} read in tiles of other sizes (the layer's own first, then square tiles of 64 … 1024 lines smaller than the layer, then the whole layer in one tile):"
        )));
        let mut header = vec!["layer".to_string()];
        header.extend(columns.iter().map(|c| c.to_string()));
        b.blocks.push(Block::Table(header, rows));
    }
}

/// The energy-per-sample chart (stacked terms per configuration beside the
/// digital baseline) and the sentences that read it: which term dominates
/// and how the totals compare with digital BP.
fn energy_breakdown(
    b: &mut Builder,
    groups: &[(String, Vec<usize>, Vec<Estimate>)],
    pooled: &[(usize, Estimate)],
) -> Result<()> {
    const MAX_BARS: usize = 12;
    if pooled.is_empty() {
        b.blocks.push(Block::Para(
            "No configuration has an estimate: no energy breakdown.".into(),
        ));
        return Ok(());
    }
    type TermOf = fn(&Estimate) -> &Term;
    let all_terms: [(&str, TermOf); 6] = [
        ("crossbar reads", |e| &e.read_energy_j),
        ("line losses", |e| &e.line_energy_j),
        ("ADC", |e| &e.adc_energy_j),
        ("DAC", |e| &e.dac_energy_j),
        ("write pulses", |e| &e.write_energy_j),
        ("neuron integration", |e| &e.neuron_energy_j),
    ];
    let shown: Vec<&(usize, Estimate)> = pooled.iter().take(MAX_BARS).collect();
    // Line losses only where some configuration has resistive lines.
    let terms: Vec<(&str, TermOf)> = all_terms
        .into_iter()
        .filter(|(name, term)| {
            *name != "line losses"
                || shown
                    .iter()
                    .any(|(_, e)| term(e).value.is_some_and(|v| v > 0.0))
        })
        .collect();
    let largest = shown
        .iter()
        .flat_map(|(_, e)| [e.total_energy_j.value, e.digital_energy_j.value])
        .flatten()
        .fold(0.0, f64::max);
    // One SI prefix for the whole axis.
    let (scale, prefix) = [
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
        (1e-12, "p"),
    ]
    .into_iter()
    .find(|(s, _)| largest >= *s)
    .unwrap_or((1e-15, "f"));
    // The digital baseline (3 MACs per weight per sample) depends only on
    // the architecture: one bar per distinct value, below the analog bars.
    let mut digital: Vec<f64> = Vec::new();
    for (_, e) in &shown {
        if let Some(d) = e.digital_energy_j.value {
            if !digital.iter().any(|x| (x - d).abs() <= 1e-9 * d.abs()) {
                digital.push(d);
            }
        }
    }
    let mut categories: Vec<String> = shown.iter().map(|(gi, _)| groups[*gi].0.clone()).collect();
    for k in 0..digital.len() {
        categories.push(if digital.len() == 1 {
            "digital BP (baseline)".into()
        } else {
            format!("digital BP (baseline {})", k + 1)
        });
    }
    let mut segments: Vec<(String, Vec<f64>)> = terms
        .iter()
        .map(|(name, term)| {
            let values = shown
                .iter()
                .map(|(_, e)| term(e).value.unwrap_or(0.0) / scale)
                .chain(digital.iter().map(|_| 0.0))
                .collect();
            (name.to_string(), values)
        })
        .collect();
    let digital_segment = shown
        .iter()
        .map(|_| 0.0)
        .chain(digital.iter().map(|d| d / scale))
        .collect();
    segments.push(("digital MACs".into(), digital_segment));
    b.figure(
        Figure::Bars {
            title: "Energy per training sample by term".into(),
            value_label: format!("energy per training sample ({prefix}J)"),
            categories,
            segments,
        },
        "energy_breakdown",
        format!(
            "Energy per training sample of each configuration, stacked by term, and the digital baseline (3 MACs per weight per sample at the technology's energy per MAC){}.",
            if pooled.len() > MAX_BARS {
                format!("; the first {MAX_BARS} of {} configurations", pooled.len())
            } else {
                String::new()
            }
        ),
    )?;
    // Which term dominates, and by how much.
    let mut dominant: Vec<(&str, f64, f64, &str)> = Vec::new();
    for (gi, e) in pooled {
        let Some(total) = e.total_energy_j.value.filter(|t| *t > 0.0) else {
            continue;
        };
        if let Some((name, v)) = terms
            .iter()
            .filter_map(|(name, t)| t(e).value.map(|v| (*name, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        {
            dominant.push((name, v, total, groups[*gi].0.as_str()));
        }
    }
    let mut sentences = Vec::new();
    if let Some(first) = dominant.first() {
        let same = dominant.iter().all(|d| d.0 == first.0);
        let share = |d: &(&str, f64, f64, &str)| 100.0 * d.1 / d.2;
        let (lo, hi) = dominant
            .iter()
            .map(share)
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let cheapest = dominant
            .iter()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .unwrap_or(first);
        if same {
            sentences.push(format!(
                "{} is the largest term in every configuration ({} – {} % of the total); in the cheapest, `{}`, it is {} of {}.",
                capitalise(first.0),
                significant(lo, 2),
                significant(hi, 2),
                cheapest.3,
                si(cheapest.1, "J"),
                si(cheapest.2, "J")
            ));
        } else {
            sentences.push(format!(
                "The largest term differs between configurations; in the cheapest, `{}`, it is {}: {} of {} ({} %).",
                cheapest.3,
                cheapest.0,
                si(cheapest.1, "J"),
                si(cheapest.2, "J"),
                significant(share(cheapest), 2)
            ));
        }
    }
    let ratios: Vec<(f64, f64, f64)> = pooled
        .iter()
        .filter_map(|(_, e)| {
            let (a, d) = (e.total_energy_j.value?, e.digital_energy_j.value?);
            (a > 0.0).then_some((d / a, a, d))
        })
        .collect();
    if let (Some(best), Some(worst)) = (
        ratios.iter().max_by(|a, b| a.0.total_cmp(&b.0)),
        ratios.iter().min_by(|a, b| a.0.total_cmp(&b.0)),
    ) {
        let words = |r: f64| {
            if r >= 1.0 {
                format!("{}× less than digital BP", significant(r, 2))
            } else {
                format!("{}× more than digital BP", significant(1.0 / r, 2))
            }
        };
        sentences.push(format!(
            "Against the digital baseline of {} per sample, the analog totals range from {} ({}) to {} ({}).",
            si(best.2, "J"),
            si(best.1, "J"),
            words(best.0),
            si(worst.1, "J"),
            words(worst.0)
        ));
    }
    if !sentences.is_empty() {
        b.blocks.push(Block::Para(sentences.join(" ")));
    }
    Ok(())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The anchor of a heading as GitHub computes it (lower case, spaces to
/// `-`, punctuation dropped); the HTML page uses the same ids.
pub fn anchor(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The level-2 headings of a document, for its table of contents.
fn contents(blocks: &[Block]) -> Vec<&str> {
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::Heading(2, t) if t != "Contents" => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// Renders blocks as GitHub-flavoured Markdown.
pub fn render_markdown(blocks: &[Block]) -> String {
    let mut s = String::new();
    render_markdown_into(&mut s, blocks, blocks);
    s
}

fn render_markdown_into(s: &mut String, blocks: &[Block], document: &[Block]) {
    for block in blocks {
        match block {
            Block::Collapsed(summary, inner) => {
                let _ = writeln!(s, "<details><summary>{}</summary>\n", esc(summary));
                render_markdown_into(s, inner, document);
                let _ = writeln!(s, "</details>\n");
            }
            Block::Contents => {
                for h in contents(document) {
                    let _ = writeln!(s, "- [{h}](#{})", anchor(h));
                }
                s.push('\n');
            }
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {text}\n", "#".repeat(*level as usize));
            }
            Block::Para(text) => {
                let _ = writeln!(s, "{text}\n");
            }
            Block::Table(header, rows) => {
                let _ = writeln!(
                    s,
                    "| {} |",
                    header
                        .iter()
                        .map(|h| md_cell(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                let _ = writeln!(s, "|{}|", vec!["---"; header.len()].join("|"));
                for r in rows {
                    let _ = writeln!(
                        s,
                        "| {} |",
                        r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                    );
                }
                s.push('\n');
            }
            Block::Figure(caption, png, svg) => {
                let _ = writeln!(s, "![{caption}]({png})\n\n*{caption}* ([SVG]({svg}))\n");
            }
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline Markdown used in blocks (`code`, **bold**, *italic*) as HTML.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    let e = esc(s);
    let mut code = false;
    for (i, part) in e.split('`').enumerate() {
        if i > 0 {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        }
        if code {
            out.push_str(part);
        } else {
            // Only balanced markers are markup; a lone `*` is a multiplication.
            if part.matches("**").count() % 2 == 1 || part.matches('*').count() % 2 == 1 {
                out.push_str(part);
                continue;
            }
            let mut bold = false;
            let mut t = String::new();
            for (j, p) in part.split("**").enumerate() {
                if j > 0 {
                    t.push_str(if bold { "</b>" } else { "<b>" });
                    bold = !bold;
                }
                t.push_str(p);
            }
            let mut it = false;
            for (j, p) in t.split('*').enumerate() {
                if j > 0 {
                    out.push_str(if it { "</i>" } else { "<i>" });
                    it = !it;
                }
                out.push_str(p);
            }
        }
    }
    out
}

/// Renders blocks as one self-contained HTML page (PNG figures embedded as
/// base64 data URIs; `dir` is where the figure paths are relative to).
pub fn render_html(title: &str, blocks: &[Block], dir: &Path) -> Result<String> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0;font-size:0.9em}}\
         td,th{{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top}}\
         th{{background:#eee}} figure{{margin:1.5em 0}} img{{max-width:100%}}\
         figcaption{{font-style:italic;color:#444}} code{{background:#f4f4f4;padding:0 3px}}\
         details>summary{{cursor:pointer;color:#235;margin:0.5em 0}} ul.contents{{columns:2}}\
         </style></head><body>\n",
        esc(title)
    );
    render_html_into(&mut s, blocks, blocks, dir)?;
    s.push_str("</body></html>\n");
    Ok(s)
}

fn render_html_into(
    s: &mut String,
    blocks: &[Block],
    document: &[Block],
    dir: &Path,
) -> Result<()> {
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(
                    s,
                    "<h{level} id=\"{}\">{}</h{level}>",
                    esc(&anchor(text)),
                    inline_html(text)
                );
            }
            Block::Collapsed(summary, inner) => {
                let _ = writeln!(s, "<details><summary>{}</summary>", inline_html(summary));
                render_html_into(s, inner, document, dir)?;
                s.push_str("</details>\n");
            }
            Block::Contents => {
                s.push_str("<ul class=\"contents\">");
                for h in contents(document) {
                    let _ = write!(
                        s,
                        "<li><a href=\"#{}\">{}</a></li>",
                        esc(&anchor(h)),
                        inline_html(h)
                    );
                }
                s.push_str("</ul>\n");
            }
            Block::Para(text) => {
                let _ = writeln!(s, "<p>{}</p>", inline_html(text));
            }
            Block::Table(header, rows) => {
                s.push_str("<table><thead><tr>");
                for h in header {
                    let _ = write!(s, "<th>{}</th>", inline_html(h));
                }
                s.push_str("</tr></thead><tbody>\n");
                for r in rows {
                    s.push_str("<tr>");
                    for c in r {
                        let _ = write!(s, "<td>{}</td>", inline_html(c));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</tbody></table>\n");
            }
            Block::Figure(caption, png, _) => {
                let path = dir.join(png);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                let _ = writeln!(
                    s,
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{b64}\"><figcaption>{}</figcaption></figure>",
                    esc(caption),
                    inline_html(caption)
                );
            }
        }
    }
    Ok(())
}
