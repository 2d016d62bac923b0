//! `cargo xtask export`: writes the ONNX directory (`pipeline::export_onnx`) and, with `--dataset`, checks it in
//! ONNX Runtime on that task's split against each of our engines (scripts/check_onnx.py), writing
//! `onnx_check.json` with the command, commit, CPU and date.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::flags_apply::{Export, ExportFormat};

impl Export {
    pub fn run(self) -> Result<()> {
        let ExportFormat::Onnx = self.format;
        let device = student_arch::device::device(&self.device.device)?;
        let report = pipeline::export_onnx(&self.model, &self.out, self.matmul.into(), &device)?;
        eprintln!(
            "export: {} ({}) → {} ({:.2} MB; weights in the source {:.2} MB){}",
            report.source,
            report.kind,
            self.out.join(pipeline::ONNX_FILE).display(),
            report.onnx_bytes as f64 / 1e6,
            report.source_weights_bytes as f64 / 1e6,
            if report.size_note.is_empty() {
                String::new()
            } else {
                format!("\n{}", report.size_note)
            }
        );
        if let Some(dataset) = &self.dataset {
            let record = self.check(dataset, &report, &device)?;
            let path = self.out.join("onnx_check.json");
            student_arch::io::write_atomic(
                &path,
                serde_json::to_string_pretty(&record)?.as_bytes(),
            )?;
            println!(
                "{}",
                pipeline::onnx_check_markdown(&[("onnx_check".into(), record)])
            );
        }
        println!("{}", self.out.display());
        Ok(())
    }

    /// ONNX Runtime against each of our engines on `dataset`'s split.
    fn check(
        &self,
        dataset: &str,
        report: &pipeline::ExportReport,
        device: &burn::tensor::Device,
    ) -> Result<pipeline::OnnxCheckRecord> {
        if report.output != "logits" {
            bail!(
                "--dataset checks a classifier; {} is an encoder",
                self.model.display()
            );
        }
        let provenance = crate::root::provenance();
        let quantized = report.kind == "quantized classifier";
        let engines: &[(pipeline::Engine, &str)] = if quantized {
            &[
                (pipeline::Engine::Integer, "integer"),
                (pipeline::Engine::Dequantized, "dequantized"),
            ]
        } else {
            &[(pipeline::Engine::Dequantized, "burn f32")]
        };
        let mut checks = vec![];
        let mut onnxruntime = String::new();
        let predictors = engines
            .iter()
            .map(|&(engine, _)| pipeline::Predictor::load(&self.model, device, Some(engine)))
            .collect::<pipeline::Result<Vec<_>>>()?;
        // One model directory: every engine has its labels, so the split is read once.
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
            predictors[0].labels(),
            &pipeline::cache_dir(),
        )?;
        for (&(_, name), predictor) in engines.iter().zip(&predictors) {
            eprintln!(
                "export: {name} engine on {} examples of {dataset}",
                rows.len()
            );
            let reference = self
                .out
                .join(format!("check_{}.jsonl", name.replace(' ', "_")));
            let mut lines = String::new();
            for chunk in rows.chunks(64) {
                let texts: Vec<String> = chunk.iter().map(|e| e.text.clone()).collect();
                for (p, e) in predictor.predict(&texts, 64)?.into_iter().zip(chunk) {
                    let mut line = serde_json::to_value(&p)?;
                    line["text"] = e.text.clone().into();
                    line["gold"] = predictor.labels()[e.label].clone().into();
                    lines += &format!("{line}\n");
                }
            }
            student_arch::io::write_atomic(&reference, lines.as_bytes())?;
            let summary = self.run_check_script(&reference)?;
            let number = |k: &str| {
                summary[k]
                    .as_f64()
                    .with_context(|| format!("check_onnx.py printed no {k}"))
            };
            checks.push(pipeline::OnnxEngineCheck {
                engine: name.into(),
                max_abs_diff: number("max_abs_diff")?,
                label_agreement: number("label_agreement")?,
                accuracy_onnxruntime: number("accuracy_onnxruntime")?,
                accuracy_ours: number("accuracy_ours")?,
            });
            onnxruntime = summary["onnxruntime"].as_str().unwrap_or("?").to_string();
        }
        let mut representations: Vec<(String, usize)> = vec![];
        for m in &report.matrices {
            match representations
                .iter_mut()
                .find(|(r, _)| *r == m.representation)
            {
                Some((_, n)) => *n += 1,
                None => representations.push((m.representation.clone(), 1)),
            }
        }
        Ok(pipeline::OnnxCheckRecord {
            provenance,
            model: self.model.display().to_string(),
            kind: report.kind.clone(),
            dataset: dataset.into(),
            split: format!("{:?}", self.split).to_lowercase(),
            examples: rows.len(),
            onnxruntime,
            onnx_bytes: report.onnx_bytes,
            source_weights_bytes: report.source_weights_bytes,
            representations,
            checks,
        })
    }

    fn run_check_script(&self, reference: &Path) -> Result<serde_json::Value> {
        let script = crate::root::workspace_root().join("scripts/check_onnx.py");
        let out = Command::new(&self.python)
            .arg(&script)
            .args(["--export", &self.out.display().to_string()])
            .args(["--reference", &reference.display().to_string()])
            // Report the differences; the record says what they are.
            .args(["--tolerance", "1"])
            .output()
            .with_context(|| format!("running {} {}", self.python, script.display()))?;
        std::io::stderr().write_all(&out.stderr).ok();
        if !out.status.success() {
            bail!(
                "{} failed (pip install onnx onnxruntime tokenizers numpy); stdout: {}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(line.trim())
            .with_context(|| format!("{} printed no summary", script.display()))
    }
}
