//! How a stage shows its progress: a bar on a terminal; otherwise (CI, `nohup`, a log file) a line when the
//! stage starts and ends and one every [`LINE_EVERY`] with the step, the loss, tokens/s and the time left, so a
//! redirected run is never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
            last_line: Instant::now(),
            every,
            bar,
        }
    }

    /// One step done on `tokens` tokens, with its named loss terms (the total last).
    pub fn step(&mut self, tokens: usize, values: &[(&'static str, f32)]) {
        self.step += 1;
        self.tokens += tokens;
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
            None if self.last_line.elapsed() >= self.every => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line(&terms));
            }
            None => {}
        }
    }

    /// The periodic line: step, loss terms, tokens/s and the time left.
    pub fn line(&self, terms: &str) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let done = (self.step - self.first_step) as f64;
        let left = if done > 0.0 {
            seconds / done * (self.total - self.step) as f64
        } else {
            f64::NAN
        };
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
}
