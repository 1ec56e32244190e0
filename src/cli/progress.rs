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
}

impl TerminalProgress {
    /// A progress observer (`quiet` suppresses everything).
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            bar: None,
            epochs: 0,
            batches: 0,
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

impl Observer for TerminalProgress {
    fn on_start(&mut self, epochs: usize, batches: usize) {
        self.epochs = epochs;
        self.batches = batches;
    }
    fn on_batch(&mut self, epoch: usize, batch: usize, loss: f64, acc: f64) {
        if self.quiet {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::with_draw_target(
                Some(self.batches as u64),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} batches {msg} ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        if batch == 1 {
            bar.reset();
            bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        }
        bar.set_position(batch as u64);
        if batch.is_multiple_of(20) || batch == self.batches {
            bar.set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * acc));
        }
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
        self.line(&format!(
            "diverged: {} in layer {} (value {:.3e}) at epoch {}, batch {}",
            e.reason, e.layer, e.value, e.epoch, e.batch
        ));
    }
    fn on_finish(&mut self, _result: &dyadsim::experiment::RunResult) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
