//! `dyadsim reproduce table1|table2`: the paper's tables, printed and written
//! as Markdown and JSON.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use dyadsim::experiment::config::DatasetName;
use dyadsim::experiment::reproduce::{
    accuracy_cell, run_table, table1_base, table1_rows, table2_base, table2_rows, TableRow,
};
use dyadsim::experiment::run_dir::write_atomic;
use dyadsim::numbers::duration_words;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which table.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TableName {
    /// MNIST and Fashion-MNIST, 784-512-512-10: DP, DP⊤, BP for α ∈ {1, ½, 0}, BP+FGSM, input-robust DP.
    Table1,
    /// 784-1000×4-10, β = ½: DP vs DP⊤, α ∈ {0, 1}, 1 vs 30 inference iterations.
    Table2,
}

/// Arguments of `dyadsim reproduce`.
#[derive(Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// The table.
    pub table: TableName,
    /// Epochs per run (Table 1 default 20, Table 2 default 3).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training images per run (default 50,000).
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Datasets for Table 1 (comma-separated: mnist,fashion_mnist).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Option<Vec<String>>,
    /// Directory holding Fashion-MNIST if not installed system-wide.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Further configuration overrides for every row (`path=value`).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Output directory for TABLE.md, TABLE.json and TABLE.rows.jsonl (the
    /// finished rows; a rerun reuses those whose configuration is unchanged).
    #[arg(long, default_value = "reports/reproduce")]
    pub out: PathBuf,
    /// Print the table as JSON on the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dyadsim reproduce`.
pub fn run_reproduce(args: &ReproduceArgs) -> Result<()> {
    let (name, base, rows, default_sets, expectation) = match args.table {
        TableName::Table1 => (
            "table1",
            table1_base(),
            table1_rows(),
            vec![],
            "Paper (Høier & Zach 2024, Table 1, §6.1): lower α gives a markedly smaller Lipschitz estimate (and better accuracy) for DP; DP⊤ shows the same trend, far less pronounced; input robustness lowers DP's Lipschitz estimate at a small accuracy cost. (The paper's numbers are not in the text shipped with this project; compare with the published table.)",
        ),
        TableName::Table2 => (
            "table2",
            table2_base(),
            table2_rows(),
            vec![],
            "Paper (Table 2, Appendix A.1): with β = ½ and asymmetric nudging, the original DP's inference diverges when run for 30 iterations, while DP⊤ is stable in every case; with a single iteration both learn.",
        ),
    };
    let datasets: Vec<DatasetName> = match (&args.datasets, args.table) {
        (Some(list), _) => list
            .iter()
            .map(|d| match d.trim().replace('-', "_").as_str() {
                "mnist" => Ok(DatasetName::Mnist),
                "fashion_mnist" => Ok(DatasetName::FashionMnist),
                other => anyhow::bail!(
                    "--datasets: unknown dataset '{other}' (known: mnist, fashion_mnist)"
                ),
            })
            .collect::<Result<_>>()?,
        (None, TableName::Table1) => vec![DatasetName::Mnist, DatasetName::FashionMnist],
        (None, TableName::Table2) => vec![DatasetName::Mnist],
    };
    let mut extra: Vec<String> = default_sets;
    if let Some(e) = args.epochs {
        extra.push(format!("training.epochs={e}"));
    }
    if let Some(n) = args.train_size {
        extra.push(format!("data.train_size={n}"));
        if n > 50_000 {
            extra.push(format!("data.validation_size={}", 60_000 - n));
        }
    }
    if let Some(d) = &args.data_dir {
        extra.push(format!("data.data_dir={:?}", d.display().to_string()));
    }
    extra.extend(args.set.iter().cloned());
    // Fails before hours of training, not after them.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out: cannot create {}", args.out.display()))?;
    let rows_path = args.out.join(format!("{name}.rows.jsonl"));
    let (recorded, mut needs_newline) = read_recorded_rows(&rows_path)?;
    let mut rows_file: Option<std::fs::File> = None;
    let table = run_table(
        name,
        expectation,
        &base,
        &datasets,
        &rows,
        &extra,
        &recorded,
        &mut |row| {
            let file = match &mut rows_file {
                Some(f) => f,
                None => rows_file.insert(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&rows_path)
                        .with_context(|| {
                            format!("cannot open {} for appending", rows_path.display())
                        })?,
                ),
            };
            // A line cut by a kill is ended first, so the new row starts a
            // line of its own.
            let mut line = if std::mem::take(&mut needs_newline) {
                "\n".to_string()
            } else {
                String::new()
            };
            line.push_str(&serde_json::to_string(row).context("serialising a table row")?);
            line.push('\n');
            file.write_all(line.as_bytes())
                .and_then(|()| file.sync_data())
                .with_context(|| format!("cannot append to {}", rows_path.display()))
        },
        &mut |label, result| match result {
            None => eprintln!("running {label} …"),
            Some(r) => eprintln!(
                "  {label}: accuracy {} | Lipschitz {}",
                accuracy_cell(r),
                r.lipschitz
                    .map(|l| format!("{l:.2}"))
                    .unwrap_or_else(|| "n/a".into())
            ),
        },
    )?;
    let md = table.to_markdown();
    write_atomic(&args.out.join(format!("{name}.md")), md.as_bytes())?;
    let json = serde_json::to_string_pretty(&table).context("serialising table")?;
    write_atomic(&args.out.join(format!("{name}.json")), json.as_bytes())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&table).context("serialising table")?
        );
    } else {
        println!("{md}");
        println!(
            "written to {} ({} in all)",
            args.out.display(),
            duration_words(table.seconds_total)
        );
    }
    Ok(())
}

/// The rows a previous (possibly interrupted) run of the table recorded,
/// and whether the file ends inside a line. A line that is not a complete
/// row (cut by a kill) is skipped with a warning; the row is then trained
/// again.
fn read_recorded_rows(path: &Path) -> Result<(Vec<TableRow>, bool)> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut rows = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<TableRow>(line) {
            Ok(row) if !row.config_hash.is_empty() => rows.push(row),
            _ => eprintln!(
                "warning: {} line {}: not a table row, skipped",
                path.display(),
                i + 1
            ),
        }
    }
    if !rows.is_empty() {
        eprintln!(
            "{}: {} finished rows recorded; rows with an unchanged configuration are not trained again",
            path.display(),
            rows.len()
        );
    }
    let cut = text.last().is_some_and(|&b| b != b'\n');
    Ok((rows, cut))
}
