//! `dyadsim infer`: a trained crossbar run evaluated at times after its
//! weights were programmed (drift, programming error, accumulated read
//! noise, drift compensation).

use anyhow::{Context, Result};
use clap::Args;
use dyadsim::crossbar::WriteVerify;
use dyadsim::experiment::infer::{
    duration_words, infer, parse_compensation, parse_programming, parse_times, write_result,
    InferPoint, InferResult, InferSettings, INFER_FILE,
};
use std::path::PathBuf;

/// Arguments of `dyadsim infer`.
#[derive(Args, Debug, Clone)]
pub struct InferArgs {
    /// Run directory written by `dyadsim train --out` on the crossbar substrate.
    pub run_dir: PathBuf,
    /// Times after programming in seconds, comma-separated (any order; each
    /// finite, ≥ 0 and given once; evaluated in increasing order).
    #[arg(
        help_heading = "What to evaluate",
        long,
        value_name = "SECONDS,…",
        default_value = "1,3600,86400,31536000"
    )]
    pub times: String,
    /// How the trained weights get into the devices, comma-separated: keep
    /// (the devices as trained), fresh (new devices, the model's
    /// programming error), write_verify (new devices, pulsed until within
    /// --tolerance; pulses counted).
    #[arg(
        help_heading = "What to evaluate",
        long,
        value_name = "MODE,…",
        default_value = "keep"
    )]
    pub program: String,
    /// Drift compensation, comma-separated: none, global (one output scale
    /// per layer), column (one per output line), each from reference reads
    /// of a fixed calibration set of ±1 inputs at programming and at the
    /// time of the read, applied digitally to the layer's outputs.
    #[arg(
        help_heading = "What to evaluate",
        long,
        value_name = "MODE,…",
        default_value = "none"
    )]
    pub compensation: String,
    /// Number of seeds (read noise, accumulated 1/f noise, and for fresh and
    /// write_verify new devices and programming error), 1 to 10000.
    #[arg(help_heading = "What to evaluate", long, default_value_t = 1)]
    pub seeds: usize,
    /// First seed (the seeds are SEED, SEED+1, …).
    #[arg(help_heading = "What to evaluate", long, default_value_t = 1)]
    pub seed: u64,
    /// Test images: the first N of the run's test split [default: all of it].
    #[arg(help_heading = "What to evaluate", long, value_name = "N")]
    pub test_size: Option<usize>,
    /// write_verify: accepted |w − w_target| as a fraction of the layer's
    /// w_scale, in (0, 1].
    #[arg(help_heading = "Write and verify", long, default_value_t = 0.02)]
    pub tolerance: f32,
    /// write_verify: most write steps per weight (each followed by a verify
    /// read), 1 to 10000.
    #[arg(help_heading = "Write and verify", long, default_value_t = 20)]
    pub max_iterations: u32,
    /// Where to write the result (JSON, atomically) [default: RUN_DIR/infer.json,
    /// which `dyadsim report RUN_DIR` draws].
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the result as JSON on stdout (one line) instead of the table.
    #[arg(help_heading = "Output", long)]
    pub json: bool,
    /// No heading and no "wrote FILE" line on stderr.
    #[arg(help_heading = "Output", long)]
    pub quiet: bool,
}

impl InferArgs {
    /// The checked settings.
    fn settings(&self) -> Result<InferSettings> {
        let settings = InferSettings {
            times_s: parse_times(&self.times)?,
            programming: parse_programming(&self.program)?,
            compensation: parse_compensation(&self.compensation)?,
            seeds: self.seeds,
            seed: self.seed,
            write_verify: WriteVerify {
                tolerance: self.tolerance,
                max_iterations: self.max_iterations,
            },
            test_size: self.test_size,
        };
        settings.check()?;
        Ok(settings)
    }
}

/// Runs `dyadsim infer`.
pub fn run(args: &InferArgs) -> Result<()> {
    let settings = args.settings()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join(INFER_FILE));
    if out.is_dir() {
        anyhow::bail!(
            "--out {}: is a directory; give a file name (e.g. {}/infer.json)",
            out.display(),
            out.display()
        );
    }
    if !args.quiet {
        eprintln!(
            "dyadsim infer: {}, program {}, compensation {}, {} time{}, {} seed{}",
            args.run_dir.display(),
            args.program,
            args.compensation,
            settings.times_s.len(),
            if settings.times_s.len() == 1 { "" } else { "s" },
            settings.seeds,
            if settings.seeds == 1 { "" } else { "s" }
        );
    }
    let result = infer(&args.run_dir, &settings)?;
    write_result(&out, &result).with_context(|| format!("writing {}", out.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&result).context("serialising the result")?
        );
    } else {
        print!("{}", table(&result));
    }
    if !args.quiet {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// A fraction as a percentage, `–` when absent.
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// The result as a table for people.
fn table(r: &InferResult) -> String {
    let mut s = format!(
        "{} ({}, {} test images{}), seeds {}\n",
        r.run_dir,
        r.device_model,
        r.test_images,
        r.trained_test_accuracy
            .map(|a| format!(", test accuracy at the end of training {:.2} %", 100.0 * a))
            .unwrap_or_default(),
        match r.seeds.as_slice() {
            [one] => one.to_string(),
            seeds => format!("{}–{}", seeds[0], seeds[seeds.len() - 1]),
        }
    );
    let pulses = r.points.iter().any(|p| p.program_pulses.is_some());
    let header = [
        "program",
        "compensation",
        "time",
        "time (s)",
        "accuracy %",
        "± std",
        "min",
        "max",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    if pulses {
        rows[0].push("pulses/weight".into());
        rows[0].push("converged %".into());
    }
    for p in &r.points {
        rows.push(row(p, pulses));
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (k, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                // Names left-aligned, numbers right-aligned.
                if c < 3 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
        if k == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            s.push_str(&rule.join("  "));
            s.push('\n');
        }
    }
    s
}

/// One point's cells.
fn row(p: &InferPoint, pulses: bool) -> Vec<String> {
    let mut cells = vec![
        p.program.to_string(),
        p.compensation.to_string(),
        duration_words(p.time_s),
        format!("{}", p.time_s),
        percent(p.test_accuracy),
        percent(p.test_accuracy_std),
        percent(p.test_accuracy_min),
        percent(p.test_accuracy_max),
    ];
    if pulses {
        match &p.program_pulses {
            Some(pp) => {
                cells.push(if pp.per_weight < 10.0 {
                    format!("{:.3}", pp.per_weight)
                } else {
                    format!("{:.1}", pp.per_weight)
                });
                cells.push(format!("{:.1}", 100.0 * pp.converged_fraction));
            }
            None => cells.extend(["–".to_string(), "–".to_string()]),
        }
    }
    cells
}
