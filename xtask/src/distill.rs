//! `cargo xtask distill` and `cargo xtask ablate`: flags onto a [`pipeline::DistillConfig`], then the pipeline.

use anyhow::Result;

use crate::flags;

impl flags::RecipeFlags {
    /// The config file or preset, with the flags that were given put over it.
    pub fn config(self) -> Result<pipeline::DistillConfig> {
        let mut c = base_config(self.config.as_deref(), &self.preset)?;
        if self.teacher.is_some() {
            c.teacher = self.teacher;
        }
        if let Some(d) = &self.data.dataset {
            c.dataset = d.clone();
        }
        self.data.override_columns(&mut c.columns);
        if let Some(m) = self.method {
            c.method = m;
        }
        if self.student_layers.is_some() {
            c.student_layers = self.student_layers;
        }
        if let Some(e) = self.epochs {
            for stage in [
                &mut c.teacher_finetune,
                &mut c.intermediate,
                &mut c.prediction,
            ] {
                // Passes asked for by name are the passes made: no step or token floor adds any, no ceiling
                // takes any away.
                stage.epochs = e;
                stage.min_steps = 0;
                stage.min_tokens = 0;
                stage.max_tokens = 0;
            }
        }
        if let Some(m) = self.max_len {
            c.max_length = m;
        }
        if self.max_train.is_some() {
            c.max_train_examples = self.max_train;
        }
        if self.max_eval.is_some() {
            c.max_eval_examples = self.max_eval;
        }
        if let Some(t) = self.attention_target {
            c.attention_target = t;
        }
        if let Some(h) = self.head {
            c.head = h;
        }
        if let Some(seed) = self.seed {
            c.seed = seed;
        }
        if self.split_seed.is_some() {
            c.split_seed = self.split_seed;
        }
        self.general.apply(&mut c)?;
        Ok(c)
    }
}

impl flags::Distill {
    pub fn run(self) -> Result<()> {
        let options = run_options(&self.out, &self.device.device, self.resume, self.stop_after)?;
        let c = self.recipe.config()?;
        if c.stage == pipeline::Stage::General {
            let report = pipeline::general_only(&c, &options)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            println!("{}", self.out.join("general").join("report.json").display());
            return Ok(());
        }
        let provenance = crate::root::provenance();
        let mut report = pipeline::distill(&c, &options)?;
        // The report names the run that produced it, so that a copy under docs/records/ is a record.
        report.provenance = Some(provenance);
        student_arch::io::write_atomic(
            &self.out.join("report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        println!("{}", pipeline::distill_markdown(&report));
        println!("{}", self.out.join("report.json").display());
        Ok(())
    }
}

impl flags::Compress {
    pub fn run(self) -> Result<()> {
        let options = run_options(&self.out, &self.device.device, true, None)?;
        let config = pipeline::CompressConfig {
            distill: self.recipe.config()?,
            prune_vocab: !self.no_prune_vocab,
            bits: self.bits,
            embedding_bits: self.embedding_bits,
            qat_epochs: self.qat_epochs,
            from_run: self.from_run,
        };
        let provenance = crate::root::provenance();
        let mut report = pipeline::compress_all(&config, &options)?;
        // The report names the run that produced it, so that a copy under docs/records/ is a record.
        report.provenance = Some(provenance);
        student_arch::io::write_atomic(
            &self.out.join("compress_report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        println!("{}", pipeline::compress_markdown(&report));
        println!("{}", self.out.join("compress_report.json").display());
        Ok(())
    }
}

impl flags::Ablate {
    pub fn run(self) -> Result<()> {
        let mut c = base_config(self.config.as_deref(), &self.preset)?;
        c.dataset = self.dataset;
        if self.teacher.is_some() {
            c.teacher = self.teacher;
        }
        self.general.apply(&mut c)?;
        let options = run_options(&self.out, &self.device.device, self.resume, None)?;
        let seeds = if self.seeds.is_empty() {
            vec![c.seed]
        } else {
            self.seeds
        };
        let provenance = crate::root::provenance();
        let mut report = pipeline::ablate(&c, self.method, &seeds, &options)?;
        // The table names the run that produced it, so that a copy under docs/records/ is a record.
        report.provenance = Some(provenance);
        for (name, text) in [
            ("ablation.json", serde_json::to_string_pretty(&report)?),
            ("ablation.md", pipeline::ablation_markdown(&report)),
        ] {
            student_arch::io::write_atomic(&self.out.join(name), text.as_bytes())?;
        }
        println!("{}", pipeline::ablation_markdown(&report));
        println!("{}", self.out.join("ablation.md").display());
        Ok(())
    }
}

impl flags::FitMlm {
    pub fn run(self) -> Result<()> {
        let mut c = base_config(self.config.as_deref(), "default")?;
        let g = &mut c.general;
        if self.teacher.is_some() {
            g.teacher = self.teacher;
        }
        if !self.corpus.is_empty() {
            g.corpus = self.corpus;
        }
        if self.max_passages.is_some() {
            g.max_passages = self.max_passages;
        }
        if let Some(n) = self.skip_passages {
            g.skip_passages = n;
        }
        if let Some(n) = self.passages {
            g.mlm_head_passages = n;
        }
        if let Some(n) = self.unfreeze_last {
            g.mlm_unfreeze_last = n;
        }
        if let Some(e) = self.head_epochs {
            g.mlm_head.epochs = e;
        }
        if let Some(e) = self.encoder_epochs {
            g.mlm_encoder.epochs = e;
        }
        if let Some(n) = self.eval_every {
            g.mlm_head.eval_every = n;
            g.mlm_encoder.eval_every = n;
        }
        let options = run_options(&self.out, &self.device.device, self.resume, None)?;
        let report = pipeline::fit_mlm(&c, &options)?;
        println!("{}", pipeline::mlm_fit_markdown(&report));
        println!("{}", report.fitted.display());
        Ok(())
    }
}

impl flags::GeneralFlags {
    /// Puts the flags that were given into `c`.
    fn apply(self, c: &mut pipeline::DistillConfig) -> Result<()> {
        if let Some(stage) = self.stage {
            c.stage = stage;
        }
        if self.augment && c.augment.is_none() {
            c.augment = Some(Default::default());
        }
        if let Some(n) = self.augment_variants {
            c.augment.get_or_insert_with(Default::default).variants = n;
        }
        if self.no_augment {
            c.augment = None;
        }
        if !self.corpus.is_empty() {
            c.general.corpus = self.corpus;
        }
        if self.max_passages.is_some() {
            c.general.max_passages = self.max_passages;
        }
        if let Some(e) = self.general_epochs {
            c.general.distill.epochs = e;
        }
        if self.general_teacher.is_some() {
            c.general.teacher = self.general_teacher;
        }
        for term in self.drop {
            c.drop_terms.extend(pipeline::LossTerm::parse(&term)?);
        }
        if self.student_init.is_some() {
            c.student_init = self.student_init;
        }
        self.shape.apply(self.narrow_student, c);
        Ok(())
    }
}

/// The config file when given, else the preset.
pub fn base_config(
    config: Option<&std::path::Path>,
    preset: &str,
) -> Result<pipeline::DistillConfig> {
    Ok(match config {
        Some(path) => pipeline::DistillConfig::from_file(path)?,
        None => pipeline::DistillConfig::preset(preset)?,
    })
}

/// The run options of `distill` and `ablate`.
pub fn run_options(
    out: &std::path::Path,
    device: &str,
    resume: bool,
    stop_after: Option<usize>,
) -> Result<pipeline::RunOptions> {
    Ok(pipeline::RunOptions {
        out_dir: out.to_path_buf(),
        device_name: device.to_string(),
        device: student_arch::device::device(device)?,
        resume,
        cache: pipeline::cache_dir(),
        stop_after,
    })
}
