//! `cargo xtask fuzz`: the long run of the readers' robustness test (`pipeline::fuzz_readers`).

use std::time::Duration;

use anyhow::{bail, Result};

use crate::flags;

impl flags::Fuzz {
    pub fn run(self) -> Result<()> {
        if !(self.minutes.is_finite() && self.minutes > 0.0) {
            bail!(
                "--minutes {}: give a positive number of minutes",
                self.minutes
            );
        }
        if self.work_dir.exists() && !self.work_dir.join("seeds").exists() {
            bail!(
                "{} exists and is not a fuzz directory (no seeds/); its files are never replaced: choose a new --work-dir",
                self.work_dir.display()
            );
        }
        let config = pipeline::FuzzConfig {
            seed: self.seed,
            iterations: usize::MAX,
            budget: Duration::from_secs_f64(self.minutes * 60.0),
            work_dir: self.work_dir,
        };
        eprintln!(
            "fuzz: {} minutes of mutated files, seed {}",
            self.minutes, config.seed
        );
        let report = pipeline::fuzz_readers(&config, &burn::tensor::Device::flex())?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        if !report.panics.is_empty() {
            bail!("{} reads panicked", report.panics.len());
        }
        Ok(())
    }
}
