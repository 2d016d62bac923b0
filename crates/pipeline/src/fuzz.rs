//! Randomised robustness of the three readers a user's files reach: a classifier (Hugging Face) directory, a
//! `model.quant.safetensors` file and a stage's checkpoint directory. Valid files are written, then mutated
//! (truncated, bytes flipped, header lengths and JSON numbers replaced by lies) for a number of seeded
//! iterations or a time budget; every read must end in `Ok` or an error, never a panic. `cargo test` runs a
//! few hundred iterations; `cargo xtask fuzz --minutes 10` the long run (docs/RELIABILITY.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use student_arch::model::SeededRng;
use student_arch::BertConfig;

use crate::checkpoint::{step_set, CheckpointDir};
use crate::classifier::{ClassifierMeta, SequenceClassifier};
use crate::error::{io_err, Result};

/// How long to fuzz.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FuzzConfig {
    /// Seed of the mutations.
    pub seed: u64,
    /// Stop after this many reads.
    pub iterations: usize,
    /// Stop after this long, whichever comes first.
    pub budget: Duration,
    /// A scratch directory (created; its contents are replaced).
    pub work_dir: PathBuf,
}

/// What a fuzz run found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FuzzReport {
    /// Reads per reader: `[classifier directory, quantized file, checkpoint]`.
    pub reads: [usize; 3],
    /// Reads that were refused with an error.
    pub errors: [usize; 3],
    /// Reads that panicked, with the iteration and the mutation, to replay.
    pub panics: Vec<String>,
    /// Wall seconds.
    pub seconds: f64,
}

/// The readers, in [`FuzzReport`] order.
pub const READERS: [&str; 3] = [
    "classifier directory",
    "model.quant.safetensors",
    "checkpoint",
];

/// Writes the valid seeds, then mutates and reads them until the iterations or the budget run out.
pub fn fuzz_readers(config: &FuzzConfig, device: &Device) -> Result<FuzzReport> {
    let started = Instant::now();
    let seeds = config.work_dir.join("seeds");
    let case = config.work_dir.join("case");
    if config.work_dir.exists() {
        std::fs::remove_dir_all(&config.work_dir).map_err(io_err("clearing", &config.work_dir))?;
    }
    write_seeds(&seeds, device)?;
    let mut rng = SeededRng::new(config.seed);
    let mut report = FuzzReport::default();
    let mut iteration = 0;
    while iteration < config.iterations && started.elapsed() < config.budget {
        let reader = (rng.next_u64() % 3) as usize;
        let (source, files): (PathBuf, &[&str]) = match reader {
            0 => (
                seeds.join("classifier"),
                &["config.json", "model.safetensors", "classifier.json"],
            ),
            1 => (seeds.join("quantized"), &[quant::QUANT_FILE]),
            _ => (
                seeds.join("checkpoint"),
                &["LATEST", "model.bpk", "state.json", "manifest.json"],
            ),
        };
        crate::checkpoint::copy_dir(&source, &case)?;
        let file = files[(rng.next_u64() % files.len() as u64) as usize];
        let target = find(&case, file).unwrap_or_else(|| case.join(file));
        let mut mutation = mutate(&target, &mut rng)?;
        // Half the checkpoint cases get a manifest that matches the mutated files, so that the readers behind
        // the checksum (the state, Burn's record decoder) see the garbage too.
        let set = target.parent().unwrap_or(&case).to_path_buf();
        if reader == 2 && set != case && file != "manifest.json" && rng.next_u64().is_multiple_of(2)
        {
            crate::checkpoint::write_manifest(&set, &["model.bpk", "state.json"])?;
            mutation += " (manifest rewritten to match)";
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| read(reader, &case, device)));
        report.reads[reader] += 1;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(_)) => report.errors[reader] += 1,
            Err(_) => report.panics.push(format!(
                "iteration {iteration} (seed {}): {} after {mutation} of {file}",
                config.seed, READERS[reader]
            )),
        }
        iteration += 1;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads `dir` with reader `reader`.
fn read(reader: usize, dir: &Path, device: &Device) -> Result<()> {
    match reader {
        0 => {
            let (model, _) = SequenceClassifier::load(dir, device)?;
            crate::classifier::tokenizer_for(dir, &model)?;
        }
        1 => {
            let q = quant::QuantizedModel::read(&dir.join(quant::QUANT_FILE))?;
            let _ = q.dequantize();
        }
        _ => {
            let ckpt = CheckpointDir::open(dir)?;
            if let Some(set) = ckpt.latest()? {
                let state = std::fs::read_to_string(set.join("state.json"))
                    .map_err(io_err("reading", &set))?;
                let _: serde_json::Value = serde_json::from_str(&state).map_err(|e| {
                    crate::error::PipelineError::Checkpoint {
                        path: set.clone(),
                        message: e.to_string(),
                    }
                })?;
                let model = tiny_config().init_random(false, 1, device)?;
                crate::train::load_record(model, &set.join("model.bpk"))?;
            }
        }
    }
    Ok(())
}

fn tiny_config() -> BertConfig {
    let mut c = BertConfig::new(40, 32, 2, 4, 64);
    c.max_position_embeddings = 32;
    c.type_vocab_size = 0;
    c
}

/// A valid classifier directory, quantized file and checkpoint directory.
fn write_seeds(dir: &Path, device: &Device) -> Result<()> {
    let classifier = dir.join("classifier");
    let encoder = tiny_config().init_random(false, 3, device)?;
    let model = SequenceClassifier::new(encoder.clone(), 2, 3, device);
    let meta = ClassifierMeta {
        labels: vec!["a".into(), "b".into()],
        pooling: "mean".into(),
        max_length: 16,
        split: None,
    };
    std::fs::create_dir_all(&classifier).map_err(io_err("creating", &classifier))?;
    model.save(&classifier, &meta)?;
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    vocab.extend((0..20).map(|i| format!("w{i}")));
    let vocab_path = classifier.join("vocab.txt");
    std::fs::write(&vocab_path, vocab.join("\n")).map_err(io_err("writing", &vocab_path))?;

    let quantized = dir.join("quantized");
    let tensors = model.named_tensors()?;
    let config = BertConfig::from_json(&encoder.config.to_hf_json())?;
    let mut plan = quant::QuantPlan::uniform(config.num_hidden_layers, 4);
    plan.granularity = quant::Granularity::Tensor;
    let q = quant::quantize_tensors(&tensors, &config, &plan)?;
    q.write(&quantized.join(quant::QUANT_FILE))?;

    let checkpoint = CheckpointDir::open(&dir.join("checkpoint"))?;
    checkpoint.write(&step_set(3), true, |tmp| {
        let path = tmp.join("model.bpk");
        encoder.clone().into_record().save(&path).map_err(|e| {
            crate::error::PipelineError::Checkpoint {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        let state = tmp.join("state.json");
        std::fs::write(
            &state,
            "{\"step\": 3, \"done\": false, \"losses\": [0.5, 0.25]}",
        )
        .map_err(io_err("writing", &state))
    })?;
    Ok(())
}

/// Applies one random mutation to `path`; says which.
fn mutate(path: &Path, rng: &mut SeededRng) -> Result<String> {
    let mut bytes = std::fs::read(path).map_err(io_err("reading", path))?;
    let n = bytes.len().max(1);
    let pick = |rng: &mut SeededRng, n: usize| (rng.next_u64() % n as u64) as usize;
    let what = match rng.next_u64() % 6 {
        0 => {
            let keep = pick(rng, n);
            bytes.truncate(keep);
            format!("truncation to {keep} bytes")
        }
        1 => {
            let flips = 1 + pick(rng, 8);
            for _ in 0..flips {
                if !bytes.is_empty() {
                    let i = pick(rng, bytes.len());
                    bytes[i] ^= 1 << (rng.next_u64() % 8);
                }
            }
            format!("{flips} flipped bits")
        }
        2 if bytes.len() >= 8 => {
            let lie = match rng.next_u64() % 3 {
                0 => u64::MAX,
                1 => 1 << 40,
                _ => rng.next_u64() % (2 * bytes.len() as u64),
            };
            bytes[..8].copy_from_slice(&lie.to_le_bytes());
            format!("a header length of {lie}")
        }
        3 => {
            // A number in the text replaced by a huge, negative or fractional one.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            if digits.is_empty() {
                bytes.reverse();
                "reversed bytes".into()
            } else {
                let at = digits[pick(rng, digits.len())];
                let lie = [
                    "18446744073709551615",
                    "-1",
                    "1e308",
                    "0",
                    "99999999999",
                    "0.5",
                ][pick(rng, 6)];
                let mut t = text.clone();
                t.replace_range(at..at + 1, lie);
                bytes = t.into_bytes();
                format!("a number replaced by {lie}")
            }
        }
        4 => {
            let at = pick(rng, n);
            let len = 1 + pick(rng, 64);
            let chunk: Vec<u8> = bytes.iter().skip(at).take(len).copied().collect();
            let at2 = pick(rng, n).min(bytes.len());
            bytes.splice(at2..at2, chunk);
            "duplicated bytes".into()
        }
        _ => {
            bytes.clear();
            "an empty file".into()
        }
    };
    std::fs::write(path, &bytes).map_err(io_err("writing", path))?;
    Ok(what)
}

/// The first file named `name` under `dir` (one level of subdirectories).
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.exists() {
        return Some(direct);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .map(|p| p.join(name))
        .find(|p| p.exists())
}
