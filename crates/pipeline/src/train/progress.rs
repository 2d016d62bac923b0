//! How a stage shows its progress: a bar on a terminal; otherwise (CI, `nohup`, a log file) a line when the
//! stage starts and ends and one every [`LINE_EVERY`] with the step, the loss, tokens/s and the time left, so a
//! redirected run is never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds left for `remaining` steps: from the `later_steps` steps after the first (which took
/// `since_first` seconds together) when there are any, else from the first step's `first_seconds`; NaN before
/// any step.
pub fn time_left(
    first_seconds: f64,
    since_first: f64,
    later_steps: usize,
    remaining: usize,
) -> f64 {
    if later_steps > 0 {
        since_first / later_steps as f64 * remaining as f64
    } else {
        first_seconds * remaining as f64
    }
}

/// How often a stage writes a line when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(30);

/// A stage's progress display.
pub struct Progress {
    name: String,
    total: usize,
    started: Instant,
    first_step: usize,
    step: usize,
    tokens: usize,
    /// When the first step of this process ended: the time left is taken from the steps after it, since the
    /// first one also pays for one-off work (the teacher's logits over the whole training set, warm-up).
    first_done: Option<Instant>,
    first_seconds: f64,
    last_line: Instant,
    every: Duration,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts the display of the stage `name` at `step` of `total` steps: a bar when stderr is a terminal,
    /// lines otherwise.
    pub fn start(name: &str, total: usize, step: usize) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self::with(name, total, step, terminal, LINE_EVERY)
    }

    /// [`Progress::start`] with the choice made: `bar` or lines every `every`.
    pub fn with(name: &str, total: usize, step: usize, bar: bool, every: Duration) -> Self {
        let bar = bar.then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar.set_position(step as u64);
            bar
        });
        if bar.is_none() {
            eprintln!("{name}: starting at step {step} of {total}");
        }
        Self {
            name: name.into(),
            total,
            started: Instant::now(),
            first_step: step,
            step,
            tokens: 0,
            first_done: None,
            first_seconds: f64::NAN,
            last_line: Instant::now(),
            every,
            bar,
        }
    }

    /// One step done on `tokens` tokens, with its named loss terms (the total last).
    pub fn step(&mut self, tokens: usize, values: &[(&'static str, f32)]) {
        self.step += 1;
        self.tokens += tokens;
        let first = self.first_done.is_none();
        if first {
            self.first_done = Some(Instant::now());
            self.first_seconds = self.started.elapsed().as_secs_f64();
            // The first step pays for one-off work (the teacher's logits over the training set): a line now
            // would give a time left from it alone (hours where minutes remain), so the next line waits for
            // steps that show the stage's pace.
            self.last_line = Instant::now();
            if let Some(bar) = &self.bar {
                bar.reset_eta();
            }
        }
        let terms = values
            .iter()
            .map(|(n, v)| format!("{n}={v:.4}"))
            .collect::<Vec<_>>()
            .join(" ");
        match &self.bar {
            Some(bar) => {
                bar.set_message(terms);
                bar.inc(1);
            }
            None => {
                if let Some(line) = self.due_line(first, &terms) {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// The periodic line when one is due (never on the process's first step, see [`Progress::step`]).
    fn due_line(&mut self, first: bool, terms: &str) -> Option<String> {
        if first || self.last_line.elapsed() < self.every {
            return None;
        }
        self.last_line = Instant::now();
        Some(self.line(terms))
    }

    /// The periodic line: step, loss terms, tokens/s and the time left.
    pub fn line(&self, terms: &str) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let left = time_left(
            self.first_seconds,
            self.first_done.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            (self.step - self.first_step).saturating_sub(1),
            self.total - self.step,
        );
        format!(
            "{}: step {}/{} {terms} {:.0} tokens/s, {} left",
            self.name,
            self.step,
            self.total,
            self.tokens as f64 / seconds,
            clock(left)
        )
    }

    /// The stage stopped early (asked to, for a resume test).
    pub fn abandon(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(message.to_string()),
            None => eprintln!("{}: {message} at step {}", self.name, self.step),
        }
    }

    /// The stage is done.
    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!(
                "{}: done, step {} of {} in {}",
                self.name,
                self.step,
                self.total,
                clock(self.started.elapsed().as_secs_f64())
            ),
        }
    }
}

/// Seconds as `h:mm:ss` (or `?` when unknown).
fn clock(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_step_loss_speed_and_time_left() {
        let mut p = Progress::with("tinybert-prediction", 10, 4, false, Duration::ZERO);
        p.step(64, &[("pred", 0.5), ("total", 0.5)]);
        let line = p.line("total=0.5000");
        assert!(
            line.starts_with("tinybert-prediction: step 5/10 total=0.5000 "),
            "{line}"
        );
        assert!(
            line.contains("tokens/s") && line.ends_with("left"),
            "{line}"
        );
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::NAN), "?");
    }

    #[test]
    fn no_line_after_the_first_step_alone() {
        // Its time holds one-off work, so a line then would extrapolate it; the second step's line comes.
        let mut p = Progress::with("tinybert-prediction", 10, 0, false, Duration::ZERO);
        p.step(64, &[]);
        assert_eq!(p.due_line(true, ""), None);
        p.step(64, &[]);
        let line = p.due_line(false, "").unwrap();
        assert!(line.starts_with("tinybert-prediction: step 2/10"), "{line}");
    }

    #[test]
    fn time_left_ignores_the_first_steps_one_off_work() {
        // The prediction stage's first step took 200 s (the teacher's logits over the training set), the next
        // one 0.5 s: 961 steps remain, so about 8 minutes, not the 4 hours an average over both gave.
        assert_eq!(time_left(200.0, 0.5, 1, 961), 480.5);
        // After the first step alone, it is all there is to go by.
        assert_eq!(time_left(2.0, 0.0, 0, 10), 20.0);
        assert!(time_left(f64::NAN, 0.0, 0, 10).is_nan());
    }
}
