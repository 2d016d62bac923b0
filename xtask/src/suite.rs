//! `cargo xtask suite`: flags onto a recipe and [`pipeline::SuiteOptions`], then [`pipeline::run_suite`].

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
            provenance: crate::root::provenance(),
            record_only: self.record_only,
            carry_from: self.carry_from,
        };
        let options = run_options(&self.out, &self.device, true, None)?;
        let report = pipeline::run_suite(&c, &suite, &options)?;
        println!("{}", pipeline::suite_markdown(&report));
        println!("{}", self.out.join("suite.json").display());
        Ok(())
    }
}
