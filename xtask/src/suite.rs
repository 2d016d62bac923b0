//! `cargo xtask suite`: flags onto a recipe and [`pipeline::SuiteOptions`], then [`pipeline::run_suite`].

use std::process::Command;

use anyhow::Result;

use crate::distill::{base_config, run_options};
use crate::flags_suite;

impl flags_suite::Suite {
    pub fn run(self) -> Result<()> {
        let mut c = base_config(self.config.as_deref(), &self.preset)?;
        if let Some(t) = self.attention_target {
            c.attention_target = t;
        }
        if let Some(m) = self.method {
            c.method = m;
        }
        let recipe = self
            .recipe_name
            .clone()
            .unwrap_or_else(|| match &self.config {
                Some(p) => p
                    .file_stem()
                    .map_or("config".into(), |s| s.to_string_lossy().into_owned()),
                None => self.preset.clone(),
            });
        let seeds = match (self.seeds.is_empty(), self.quick) {
            (false, _) => self.seeds,
            (true, true) => vec![42],
            (true, false) => vec![42, 43, 44],
        };
        let tasks = if self.tasks.is_empty() {
            pipeline::SUITE_TASKS
                .iter()
                .map(|(t, _)| t.to_string())
                .collect()
        } else {
            self.tasks
        };
        let suite = pipeline::SuiteOptions {
            tasks,
            seeds,
            quick: self.quick,
            recipe,
            teachers_from: self.teachers_from,
            provenance: provenance(),
            record_only: self.record_only,
        };
        let options = run_options(&self.out, &self.device, true, None)?;
        let report = pipeline::run_suite(&c, &suite, &options)?;
        println!("{}", pipeline::suite_markdown(&report));
        println!("{}", self.out.join("suite.json").display());
        Ok(())
    }
}

/// This command line, the commit it runs at (`+dirty` with uncommitted changes), the CPU and today's date.
pub fn provenance() -> pipeline::Provenance {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}+dirty")
            } else {
                c
            }
        }
        None => "unknown (not a git checkout)".into(),
    };
    pipeline::Provenance::now(format!("cargo xtask {}", args.join(" ")), commit)
}
