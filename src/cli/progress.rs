//! The terminal observer: an indicatif bar over an epoch's batches (drawn
//! only on a terminal) and one summary line per epoch.

use dyadsim::experiment::result::{DivergenceEvent, EpochRecord};
use dyadsim::experiment::train::Observer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress bar and epoch lines on stderr; silent when `quiet`.
pub struct TerminalProgress {
    quiet: bool,
    bar: Option<ProgressBar>,
    epochs: usize,
    batches: usize,
    /// Training samples per batch (the last batch of an epoch may be smaller).
    batch_size: usize,
    /// When the epoch in progress started.
    epoch_start: std::time::Instant,
}

impl TerminalProgress {
    /// A progress observer (`quiet` suppresses everything) for batches of
    /// `batch_size` samples.
    pub fn new(quiet: bool, batch_size: usize) -> Self {
        Self {
            quiet,
            bar: None,
            epochs: 0,
            batches: 0,
            batch_size,
            epoch_start: std::time::Instant::now(),
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(text),
            _ => eprintln!("{text}"),
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|a| format!("{:.2}%", 100.0 * a))
        .unwrap_or_else(|| "n/a".into())
}

/// `h:mm:ss` (or `m:ss`) of a duration in seconds.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

impl Observer for TerminalProgress {
    fn on_start(&mut self, epochs: usize, batches: usize) {
        self.epochs = epochs;
        self.batches = batches;
        self.epoch_start = std::time::Instant::now();
        if self.quiet {
            return;
        }
        // Drawn at once (indicatif draws only on a terminal), with a clock
        // that runs before the first batch finishes.
        let b = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} batches  {elapsed_precise} elapsed  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(format!("epoch 1/{epochs}"));
        b.set_message("eta –");
        b.enable_steady_tick(std::time::Duration::from_millis(250));
        self.bar = Some(b);
    }
    fn on_batch(&mut self, epoch: usize, batch: usize, loss: f64, acc: f64) {
        let Some(bar) = &self.bar else {
            return;
        };
        if batch == 1 {
            if epoch > 1 {
                self.epoch_start = std::time::Instant::now();
            }
            bar.reset_elapsed();
            bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        }
        bar.set_position(batch as u64);
        // Rate of this epoch so far; the ETA is to the end of the run
        // (training batches only: the per-epoch evaluation is not counted).
        let elapsed = self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        let per_batch = elapsed / batch as f64;
        let remaining = (self.batches - batch.min(self.batches))
            + self.batches * self.epochs.saturating_sub(epoch);
        bar.set_message(format!(
            "{:.0} samples/s  eta {}  loss {loss:.4} acc {:.2}%",
            (batch * self.batch_size) as f64 / elapsed,
            clock(per_batch * remaining as f64),
            100.0 * acc
        ));
    }
    fn on_epoch(&mut self, r: &EpochRecord) {
        let mut text = format!(
            "epoch {:>3}: train loss {} acc {} | val {} | test {} | Lipschitz {} | max|s| {:.3} | {:.0} samples/s",
            r.epoch,
            r.train_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into()),
            pct(r.train_accuracy),
            pct(r.validation_accuracy),
            pct(r.test_accuracy),
            r.lipschitz.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into()),
            r.max_state,
            r.samples_per_second
        );
        if let Some(a) = r.gradient_angle_deg {
            text.push_str(&format!(" | angle to BP {a:.1}°"));
        }
        if let Some(t) = r.settle_time_mean {
            text.push_str(&format!(" | settle {t:.1}τ"));
        }
        self.line(&text);
    }
    fn on_divergence(&mut self, e: &DivergenceEvent) {
        self.line(&format!("diverged: {}", e.describe()));
    }
    fn on_finish(&mut self, _result: &dyadsim::experiment::RunResult) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
