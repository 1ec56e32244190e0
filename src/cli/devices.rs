//! `dyadsim devices`: the device-model catalogue and pulse-response plots.
//!
//! `dyadsim devices` lists the shipped models, one line each;
//! `dyadsim devices show NAME` prints every parameter of a model (shipped
//! name or path to a TOML file, with `--set device.FIELD=VALUE`-style
//! overrides) and plots its pulse response — normalised conductance
//! against pulse number, `N` up pulses then `N` down pulses, for a few
//! devices drawn with the model's device-to-device variation — to PNG and SVG.
//! `dyadsim devices trace NAME --out FILE.csv` writes the same simulated
//! pulse response as a table, one row per pulse, in the columns a lab's
//! measured trace would have.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use dyadsim::devices::{builtin_names, DeviceArray, DeviceModel};
use dyadsim::experiment::config::parse_toml_value;
use dyadsim::report::figures::{save_drawing, series_color, tick};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Arguments of `dyadsim devices`.
#[derive(Args, Debug, Clone)]
pub struct DevicesArgs {
    /// `show NAME` for one model; nothing to list all models.
    #[command(subcommand)]
    pub action: Option<DevicesAction>,
}

/// What `dyadsim devices` does.
#[derive(Subcommand, Debug, Clone)]
pub enum DevicesAction {
    /// Print a model's parameters and plot its pulse response.
    Show(ShowArgs),
    /// Write a model's simulated pulse response as CSV (device, pulse, direction, conductance_us).
    Trace(TraceArgs),
    /// Fit a model file to a pulse trace (measured or from `devices trace`), with standard errors.
    Fit(FitArgs),
}

/// Arguments of `dyadsim devices fit`.
#[derive(Args, Debug, Clone)]
pub struct FitArgs {
    /// The trace: CSV with the columns device, pulse, direction (up or down), conductance_us;
    /// for each device its up pulses, then its down pulses, the conductance read after each.
    pub trace: PathBuf,
    /// The response form to fit: linear, soft_bounds, exponential or piecewise.
    #[arg(long, value_parser = ["linear", "soft_bounds", "exponential", "piecewise"])]
    pub response: String,
    /// Points of the piecewise table (2–64; piecewise only) [default: 16].
    #[arg(long)]
    pub points: Option<usize>,
    /// The model file to write (atomically); loads with `--device MODEL.toml`.
    #[arg(long, value_name = "MODEL.toml")]
    pub out: PathBuf,
    /// The model's name [default: the file name of --out without .toml].
    #[arg(long)]
    pub name: Option<String>,
    /// Bootstrap replicates (resampled devices) for the standard errors (≥ 20).
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the fit (parameters, standard errors, residual) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `dyadsim devices trace`.
#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Shipped model name (see `dyadsim devices`) or path to a model TOML file.
    pub name: String,
    /// Override a model parameter, e.g. `--set dw_min_dtod=0.1` (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Up pulses per device, then as many down pulses (none for a one-sided device).
    #[arg(long, default_value_t = 1000)]
    pub pulses: usize,
    /// Devices, each drawn with the model's device-to-device variation.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Seed of the device variation and cycle-to-cycle noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The CSV file to write (written atomically).
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
}

/// Most pulses per direction and devices a trace may have (10⁸ rows).
const TRACE_MAX_ROWS: usize = 100_000_000;

/// Arguments of `dyadsim devices show`.
#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// Shipped model name (see `dyadsim devices`) or path to a model TOML file.
    pub name: String,
    /// Override a model parameter, e.g. `--set read_noise=0.05` or
    /// `--set device.levels=16` (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Directory for `pulse_response_NAME.png` and `.svg`.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Up pulses (then as many down pulses); default: enough to cross the range
    /// (1.2 / dw_min, at most 5000).
    #[arg(long)]
    pub pulses: Option<usize>,
    /// Number of devices drawn.
    #[arg(long, default_value_t = 5)]
    pub devices: usize,
    /// Seed of the device variation and cycle-to-cycle noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print parameters only, no plot.
    #[arg(long)]
    pub no_plot: bool,
}

/// Runs `dyadsim devices`.
pub fn run(args: &DevicesArgs) -> Result<()> {
    match &args.action {
        None => {
            println!(
                "{:<15} {:<12} {:>13}  description",
                "model", "response", "states"
            );
            for name in builtin_names() {
                let m = DeviceModel::load(name, &toml::Table::new())?;
                println!("{}", m.summary_line());
            }
            println!(
                "\n`dyadsim devices show NAME` prints the parameters and plots the pulse response;"
            );
            println!("any path to a TOML file with the same fields works as a model (`--device my.toml`).");
            Ok(())
        }
        Some(DevicesAction::Show(show)) => run_show(show),
        Some(DevicesAction::Trace(trace)) => run_trace(trace),
        Some(DevicesAction::Fit(fit)) => run_fit(fit),
    }
}

/// `--set FIELD=VALUE` assignments of a model as overrides (`device.`
/// prefix optional).
fn model_overrides(set: &[String]) -> Result<toml::Table> {
    let mut overrides = toml::Table::new();
    for a in set {
        let (field, value) = a
            .split_once('=')
            .with_context(|| format!("--set '{a}': expected FIELD=VALUE"))?;
        let field = field.trim();
        let field = field.strip_prefix("device.").unwrap_or(field);
        overrides.insert(field.to_string(), parse_toml_value(value.trim()));
    }
    Ok(overrides)
}

/// Devices drawn for the symmetry-point summary of `devices show`.
const SYMMETRY_DEVICES: usize = 200;

/// Where the model's devices balance up and down pulses (their symmetry
/// points, Kim et al. 2019), from the physics and as a chip finds them by
/// alternating pulses, beside the model's `g_center` (where w = 0 sits):
/// one comment line for `devices show`.
fn symmetry_point_summary(model: &DeviceModel, seed: u64) -> String {
    if model.pairing.one_sided {
        return "# symmetry point: none (a one-sided device only moves up; its pair's other device lowers the weight)".into();
    }
    if !model.bounds.bounded || model.nominal_step() <= 0.0 {
        return "# symmetry point: none (an unbounded or continuous device has no state-dependent balance)".into();
    }
    let step = model.nominal_step() as f64;
    // A pair moves the state towards the point by about a step times the
    // steps' slope: four ranges' worth of steps converge for the shipped
    // state-dependent models; then up to 2000 pairs are averaged.
    let pairs = ((4.0 / step).ceil() as usize).clamp(200, 50_000);
    let average = pairs.min(2000);
    let mut array = DeviceArray::new(model, SYMMETRY_DEVICES, seed);
    let mut analytic = Vec::new();
    let mut found = Vec::new();
    for i in 0..SYMMETRY_DEVICES {
        if array.is_stuck(i) {
            continue;
        }
        if let Some(p) = array.symmetry_point(i) {
            analytic.push(p as f64);
        }
        let (lo, _) = array.bounds(i);
        array.program(i, lo);
        found.push(array.find_symmetry_point(i, pairs, average) as f64);
    }
    let stats = |xs: &[f64]| {
        let (m, sd) = dyadsim::report::mean_std(xs);
        format!("{m:.3} ± {sd:.3}")
    };
    let analytic_words = if analytic.is_empty() {
        "the steps balance nowhere in the range (each device drifts to a bound)".to_string()
    } else {
        format!(
            "{} from the steps ({} of {} devices balance)",
            stats(&analytic),
            analytic.len(),
            found.len()
        )
    };
    format!(
        "# symmetry point (normalised g where an up and a down pulse balance; mean ± sd over {} drawn with seed {seed}): {analytic_words}; {} found by {pairs} alternating up/down pairs from the lower bound; g_center (w = 0) = {}",
        dyadsim::report::count(found.len(), "device"),
        stats(&found),
        model.bounds.g_center
    )
}

/// Writes the simulated pulse response of `--devices` devices as CSV:
/// `device,pulse,direction,conductance_us`, the conductance read (ideally,
/// without read noise) after each pulse, `pulse` counted from 0 within each
/// direction, every device starting from its lower bound (or the symmetry
/// point of an unbounded model).
fn run_trace(args: &TraceArgs) -> Result<()> {
    let model = DeviceModel::load(&args.name, &model_overrides(&args.set)?)?;
    if args.pulses == 0 {
        bail!("--pulses 0: a trace needs at least 1 pulse per direction");
    }
    if args.devices == 0 {
        bail!("--devices 0: a trace needs at least 1 device");
    }
    let rows = args.pulses.saturating_mul(2).saturating_mul(args.devices);
    if rows > TRACE_MAX_ROWS {
        bail!(
            "--pulses {} --devices {}: {} rows; at most {} (10⁸) per trace",
            args.pulses,
            args.devices,
            rows,
            TRACE_MAX_ROWS
        );
    }
    // A continuous (ideal) model is pulsed with a step of 1 % of the range,
    // as `devices show` plots it.
    let mut pulsed = model.clone();
    if pulsed.nominal_step() <= 0.0 {
        pulsed.step.dw_min = 0.01;
        pulsed.response = dyadsim::devices::Response::Constant;
    }
    let trace =
        dyadsim::devices::fit::Trace::simulate(&pulsed, args.devices, args.pulses, args.seed);
    let bytes = trace.to_csv().into_bytes();
    dyadsim::experiment::run_dir::write_atomic(&args.out, &bytes)
        .with_context(|| format!("--out {}", args.out.display()))?;
    eprintln!(
        "trace of {}: {}, {} each → {}",
        model.name,
        dyadsim::report::count(args.devices, "device"),
        if model.pairing.one_sided {
            format!(
                "{} (one-sided: no down pulses)",
                dyadsim::report::count(args.pulses, "up pulse")
            )
        } else {
            format!("{} up then {} down pulses", args.pulses, args.pulses)
        },
        args.out.display()
    );
    Ok(())
}

/// `dyadsim devices fit`: the model file, a table of the parameters on
/// stderr, and with `--json` the fit on stdout.
fn run_fit(args: &FitArgs) -> Result<()> {
    use dyadsim::devices::fit::{fit_file, FitRequest};
    let fitted = fit_file(&FitRequest {
        trace: args.trace.clone(),
        response: args.response.clone(),
        points: args.points,
        out: args.out.clone(),
        name: args.name.clone(),
        bootstrap: args.bootstrap,
        seed: args.seed,
    })?;
    dyadsim::experiment::run_dir::write_atomic(&args.out, fitted.text.as_bytes())
        .with_context(|| format!("--out {}", args.out.display()))?;
    let (fit, traced) = (&fitted.fit, fitted.traced_devices);
    eprintln!(
        "fitted {} to {}: {} devices ({} stuck), {} steps",
        args.response,
        args.trace.display(),
        fit.devices,
        traced - fit.devices,
        fit.steps
    );
    eprintln!("  {:<20} {:>14} {:>14}", "parameter", "value", "std. error");
    for v in &fit.values {
        eprintln!("  {:<20} {:>14.6e} {:>14.3e}", v.key, v.value, v.std_error);
    }
    eprintln!(
        "  residual rms {:.3e} of the range (noise model {:.3e}) → {}",
        fit.residual_rms,
        fit.noise_rms,
        args.out.display()
    );
    for w in &fit.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        println!("{}", fitted.json);
    }
    Ok(())
}

fn run_show(args: &ShowArgs) -> Result<()> {
    let overrides = model_overrides(&args.set)?;
    let model = DeviceModel::load(&args.name, &overrides)?;
    // The model file itself documents every parameter with unit and source.
    let (origin, text) = DeviceModel::source_text(&args.name)?;
    println!(
        "# device model {}  ({:.0} nominal states, G = {}–{} µS)",
        model.name,
        model.states(),
        model.conductance.g_min_us,
        model.conductance.g_max_us
    );
    println!("# from {origin}");
    print!("{text}");
    if !overrides.is_empty() {
        println!("\n# overrides for this run:");
        for (field, value) in &overrides {
            println!("{field} = {value}");
        }
    }
    println!("\n{}", symmetry_point_summary(&model, args.seed));
    if args.no_plot {
        return Ok(());
    }
    if args.devices == 0 {
        bail!("--devices must be ≥ 1");
    }
    let step = model.nominal_step();
    let pulses = args.pulses.unwrap_or_else(|| {
        if step > 0.0 {
            ((1.2 / step).ceil() as usize).min(5000)
        } else {
            100
        }
    });
    let traces = pulse_response(&model, args.devices, pulses, args.seed);
    let stem = Path::new(&model.name)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "device".into());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create directory {}", args.out.display()))?;
    let title = if model.pairing.one_sided {
        // A one-sided device (PCM) only grows; the pair's other device
        // lowers the weight, and a refresh resets both.
        format!(
            "{}: {pulses} up pulses (one-sided device: no down pulses)",
            model.name
        )
    } else {
        format!("{}: {pulses} up then {pulses} down pulses", model.name)
    };
    let saved = save_drawing(
        &args.out,
        &format!("pulse_response_{stem}"),
        (900, 560),
        |root| draw_traces(root.clone(), &title, &traces),
    )?;
    println!(
        "# pulse response written to {} and {}",
        saved.png.display(),
        saved.svg.display()
    );
    Ok(())
}

/// Normalised conductance of `devices` devices after each of `pulses` up
/// pulses and then `pulses` down pulses (one-sided models: up only, then
/// the trace ends), starting from each device's lower bound (or the
/// symmetry point of an unbounded model). A continuous (`ideal`) model
/// is pulsed with a step of 1 % of the range.
pub fn pulse_response(
    model: &DeviceModel,
    devices: usize,
    pulses: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    let mut m = model.clone();
    if m.nominal_step() <= 0.0 {
        m.step.dw_min = 0.01;
        m.response = dyadsim::devices::Response::Constant;
    }
    let mut array = DeviceArray::new(&m, devices, seed);
    (0..devices)
        .map(|i| {
            if m.bounds.bounded {
                let (lo, _) = array.bounds(i);
                array.program(i, lo);
            }
            let mut trace = Vec::with_capacity(2 * pulses + 1);
            trace.push(array.visible(i));
            for _ in 0..pulses {
                array.pulse(i, 1);
                trace.push(array.visible(i));
            }
            if !m.pairing.one_sided {
                for _ in 0..pulses {
                    array.pulse(i, -1);
                    trace.push(array.visible(i));
                }
            }
            trace
        })
        .collect()
}

fn draw_traces<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    traces: &[Vec<f32>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plotting: {e}");
    root.fill(&WHITE).map_err(err)?;
    let n = traces.iter().map(|t| t.len()).max().unwrap_or(1).max(2);
    let (lo, hi) = traces
        .iter()
        .flatten()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f32..(n - 1) as f32, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("pulse number")
        .y_desc("normalised conductance (G − G_min)/(G_max − G_min)")
        .x_label_formatter(&|x: &f32| tick(f64::from(*x)))
        .y_label_formatter(&|y: &f32| tick(f64::from(*y)))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (k, t) in traces.iter().enumerate() {
        let color = series_color(k);
        chart
            .draw_series(LineSeries::new(
                t.iter().enumerate().map(|(i, &v)| (i as f32, v)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("device {}", k + 1))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
