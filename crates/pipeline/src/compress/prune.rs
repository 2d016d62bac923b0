//! Vocabulary pruning: the word embeddings are most of a small student's parameters (11.7 M of the 3-layer
//! MiniLM student's 17.2 M), and a task uses a fraction of the 30,522 word pieces. Keep the pieces that the
//! task's training text produces (plus the special tokens), renumber them in their old order, cut the embedding
//! table to those rows, and write a `vocab.txt` of exactly them. WordPiece's greedy longest match then
//! tokenises every training text as before, and maps a piece it no longer has to the longest kept one or to
//! `[UNK]`, as it always does.

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::weights::WEIGHTS_FILE;
use student_arch::BertConfig;

use crate::classifier::{tokenizer_for, SequenceClassifier};
use crate::data::labelled::Columns;
use crate::error::{io_err, PipelineError, Result};

const WORDS: &str = "embeddings.word_embeddings.weight";

/// What the training text of which task to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneOptions {
    /// The task's dataset (its training split is read).
    pub dataset: String,
    /// Columns of a file dataset.
    pub columns: Columns,
    /// Seed of the split (the `distill` run's, so its test split stays unseen).
    pub seed: u64,
}

/// What pruning did (`prune_report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Word pieces before and after.
    pub vocab: [usize; 2],
    /// Parameters before and after.
    pub params: [usize; 2],
    /// Training texts the kept pieces come from.
    pub texts: usize,
    /// Bytes of the output directory's weights, config, classifier and tokenizer files.
    pub artifact_bytes: u64,
}

/// Writes into `out` the classifier of `model_dir` with its vocabulary cut to the pieces of the training split.
pub fn prune_vocab(
    model_dir: &Path,
    options: &PruneOptions,
    out: &Path,
    cache: &Path,
    device: &Device,
) -> Result<PruneReport> {
    if model_dir.join(quant::QUANT_FILE).exists() {
        return Err(PipelineError::Config {
            field: "model",
            message: format!(
                "{} is quantized; prune the full-precision model, then quantize the pruned one",
                model_dir.display()
            ),
        });
    }
    let (model, meta) = SequenceClassifier::load(model_dir, device)?;
    let tokenizer = tokenizer_for(model_dir, &model)?;
    student_arch::io::claim_output_dir(out, "prune-vocab", &["prune_report.json"])?;
    let train = meta
        .dataset_splits(&options.dataset, &options.columns, options.seed, cache)?
        .train;
    let longest = model.encoder.config.max_position_embeddings;
    let mut kept: BTreeSet<u32> = [
        tokenizer.pad_id,
        tokenizer.unk_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.mask_id,
    ]
    .into();
    for e in &train {
        kept.extend(tokenizer.encode(&e.text, longest)?);
    }
    let kept: Vec<u32> = kept.into_iter().collect();
    let mut tensors = model.named_tensors()?;
    let (shape, table) = tensors
        .get(WORDS)
        .cloned()
        .ok_or_else(|| PipelineError::Checkpoint {
            path: model_dir.join(WEIGHTS_FILE),
            message: format!("no {WORDS}"),
        })?;
    let hidden = shape[1];
    let rows: Vec<f32> = kept
        .iter()
        .flat_map(|&id| {
            table[id as usize * hidden..(id as usize + 1) * hidden]
                .iter()
                .copied()
        })
        .collect();
    tensors.insert(WORDS.into(), (vec![kept.len(), hidden], rows));
    let mut config: BertConfig = BertConfig::from_json(&model.encoder.config.to_hf_json())?;
    config.vocab_size = kept.len();
    config.pad_token_id = kept
        .iter()
        .position(|&id| id == tokenizer.pad_id)
        .expect("the pad token is kept");
    crate::checkpoint::remove_manifest(out)?;
    let mut files = crate::classifier::write_hf_files(
        out,
        &tensors,
        &config,
        &meta.labels,
        crate::classifier::Pooling::parse(&meta.pooling).unwrap_or_default(),
    )?;
    files.push(meta.write(out)?);
    let mut vocab = String::new();
    for &id in &kept {
        let token = tokenizer
            .id_to_token(id)
            .ok_or_else(|| PipelineError::Checkpoint {
                path: tokenizer.path().to_path_buf(),
                message: format!("has no token for id {id}"),
            })?;
        vocab += &token;
        vocab.push('\n');
    }
    write_atomic(&out.join("vocab.txt"), vocab.as_bytes())?;
    write_atomic(
        &out.join("tokenizer_config.json"),
        serde_json::json!({"do_lower_case": tokenizer.lowercase()})
            .to_string()
            .as_bytes(),
    )?;
    // A stale tokenizer.json would win over the pruned vocab.txt.
    let stale = out.join("tokenizer.json");
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(io_err("removing", &stale))?;
    }
    files.push("vocab.txt");
    crate::checkpoint::write_manifest(out, &files)?;
    let params_after = tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("classifier."))
        .map(|(_, (s, _))| s.iter().product::<usize>())
        .sum::<usize>();
    let report = PruneReport {
        vocab: [tokenizer.vocab_size(), kept.len()],
        params: [
            student_arch::model_size(&model.encoder).params,
            params_after,
        ],
        texts: train.len(),
        artifact_bytes: crate::compress::quantize::artifact_bytes(out),
    };
    write_atomic(
        &out.join("prune_report.json"),
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    Ok(report)
}
