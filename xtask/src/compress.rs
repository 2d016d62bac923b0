//! `cargo xtask eval`, `predict`, `prune-vocab`, `quantize` and `sensitivity`: commands on a saved classifier.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};

use crate::flags;

impl flags::Eval {
    pub fn run(self) -> Result<()> {
        let device = student_arch::device::device(&self.device.device)?;
        let result = pipeline::evaluate_dir(
            &self.model,
            &self.data.dataset(),
            &self.data.columns(),
            self.seed,
            self.split,
            self.engine,
            &pipeline::cache_dir(),
            &device,
        )?;
        println!("{}", serde_json::to_string(&result)?);
        Ok(())
    }
}

impl flags::Quantize {
    pub fn run(self) -> Result<()> {
        let options = pipeline::QuantizeOptions {
            bits: match self.bits {
                flags::Bits::Uniform(b) => Some(b),
                flags::Bits::Mixed => None,
            },
            granularity: self.granularity,
            asymmetric: self.asymmetric,
            embedding_bits: self.embedding_bits,
            embedding_granularity: self.embedding_granularity,
            sensitivity: self.sensitivity,
            avg_bits: self.avg_bits,
            budget_mb: self.budget_mb,
            allocator: self.allocator,
            bit_options: self.bit_options,
            compare: self.compare,
            dataset: self.data.dataset(),
            columns: self.data.columns(),
            seed: self.seed,
            teacher: self.teacher,
            qat: (self.qat_epochs > 0).then(|| {
                let mut q = pipeline::QatConfig::default();
                q.stage.epochs = self.qat_epochs;
                q.stage.learning_rate = self.qat_lr;
                q
            }),
            resume: self.resume,
        };
        let device = student_arch::device::device(&self.device.device)?;
        let provenance = crate::root::provenance();
        let mut report = pipeline::quantize(
            &self.model,
            &options,
            &self.out,
            &pipeline::cache_dir(),
            &device,
        )?;
        // The report names the run that produced it, so that a copy under docs/records/ is a record.
        report.provenance = Some(provenance);
        student_arch::io::write_atomic(
            &self.out.join("quant_report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        println!("{}", pipeline::quantize_markdown(&report));
        println!("{}", self.out.join("quant_report.json").display());
        Ok(())
    }
}

impl flags::Sensitivity {
    pub fn run(self) -> Result<()> {
        let options = pipeline::SensitivityOptions {
            dataset: self.data.dataset(),
            columns: self.data.columns(),
            batches: self.batches,
            batch_size: self.batch_size,
            granularity: self.block,
            blocks: self.blocks,
            seed: self.seed,
            hessian: hessian::SensitivityConfig {
                power: hessian::PowerIterationConfig {
                    max_iterations: self.max_iters,
                    tolerance: self.tolerance,
                    residual_tolerance: self.residual_tolerance,
                    ..Default::default()
                },
                trace_samples: self.trace_samples,
                eps_rel: self.eps_rel,
                ranking: self.ranking,
            },
        };
        let device = student_arch::device::device(&self.device.device)?;
        let report = pipeline::measure_sensitivity(
            &self.model,
            &options,
            &self.out,
            &pipeline::cache_dir(),
            &device,
            &pipeline::MeasureControl {
                progress: true,
                resume: self.resume,
                stop_after_blocks: None,
            },
        )?;
        println!("{}", report.to_markdown());
        println!("{}", self.out.display());
        Ok(())
    }
}

impl crate::flags_apply::Predict {
    pub fn run(self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size 0: give at least 1 text per forward pass");
        }
        let device = student_arch::device::device(&self.device.device)?;
        let predictor = pipeline::Predictor::load(&self.model, &device, self.engine)?;
        let mut out = std::io::stdout().lock();
        if let Some(dataset) = &self.dataset {
            let columns = pipeline::Columns {
                text: self.text_column.clone(),
                label: self.label_column.clone(),
            };
            let rows = pipeline::split_examples(
                &self.model,
                dataset,
                &columns,
                self.seed,
                self.split,
                predictor.labels(),
                &pipeline::cache_dir(),
            )?;
            for chunk in rows.chunks(self.batch_size) {
                let texts: Vec<String> = chunk.iter().map(|e| e.text.clone()).collect();
                for (p, e) in predictor
                    .predict(&texts, self.batch_size)?
                    .into_iter()
                    .zip(chunk)
                {
                    let mut line = serde_json::to_value(&p)?;
                    line["text"] = e.text.clone().into();
                    line["gold"] = predictor.labels()[e.label].clone().into();
                    writeln!(out, "{line}")?;
                }
            }
            return Ok(());
        }
        let mut batch: Vec<String> = Vec::with_capacity(self.batch_size);
        let mut flush = |batch: &mut Vec<String>| -> Result<()> {
            for p in predictor.predict(batch, self.batch_size)? {
                writeln!(out, "{}", serde_json::to_string(&p)?)?;
            }
            out.flush()?;
            batch.clear();
            Ok(())
        };
        match &self.input {
            Some(path) => {
                for row in pipeline::stream_texts(path, &self.text_column)? {
                    batch.push(row?.1);
                    if batch.len() == self.batch_size {
                        flush(&mut batch)?;
                    }
                }
            }
            None => {
                for (i, line) in std::io::stdin().lock().lines().enumerate() {
                    let line =
                        line.with_context(|| format!("stdin line {} is not valid UTF-8", i + 1))?;
                    if line.trim().is_empty() {
                        bail!(
                            "stdin line {} is empty: give one non-empty text per line",
                            i + 1
                        );
                    }
                    batch.push(line);
                    if batch.len() == self.batch_size {
                        flush(&mut batch)?;
                    }
                }
            }
        }
        if !batch.is_empty() {
            flush(&mut batch)?;
        }
        Ok(())
    }
}

impl flags::PruneVocab {
    pub fn run(self) -> Result<()> {
        let device = student_arch::device::device(&self.device.device)?;
        let report = pipeline::prune_vocab(
            &self.model,
            &pipeline::PruneOptions {
                dataset: self.data.dataset(),
                columns: self.data.columns(),
                seed: self.seed,
            },
            &self.out,
            &pipeline::cache_dir(),
            &device,
        )?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        println!("{}", self.out.display());
        Ok(())
    }
}
