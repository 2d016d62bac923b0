//! The Burn encoder reproduces the PyTorch reference of the real teacher, all-MiniLM-L6-v2, to 1e-4.
//!
//! Reference: `tests/data/minilm_reference.json`, written by `scripts/reference_embeddings.py` (transformers +
//! sentence-transformers on CPU). The teacher directory comes from `BERT_COMPRESS_TEACHER`, which
//! `cargo xtask ci` sets after `cargo xtask fetch`.

mod common;

use std::path::PathBuf;

use common::{cpu_devices, max_abs_diff, values};
use serde_json::Value;
use student_arch::pooling::sentence_embedding;
use student_arch::SentenceEncoder;

const TOLERANCE: f32 = 1e-4;

fn teacher_dir() -> PathBuf {
    let dir = std::env::var_os("BERT_COMPRESS_TEACHER").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`, or set it to the directory `cargo xtask fetch` prints"
        )
    });
    assert!(
        dir.join("model.safetensors").exists(),
        "{} holds no model.safetensors",
        dir.display()
    );
    dir
}

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minilm_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Rows `[b, 0..n, ..]` of a `[batch, seq, width]` buffer.
fn rows(buf: &[f32], b: usize, seq: usize, width: usize, n: usize) -> Vec<f32> {
    let start = b * seq * width;
    buf[start..start + n * width].to_vec()
}

/// `[b, h, 0..n, 0..n]` of a `[batch, heads, seq, seq]` buffer.
fn attention_block(buf: &[f32], b: usize, heads: usize, seq: usize, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(heads * n * n);
    for h in 0..heads {
        for i in 0..n {
            let start = ((b * heads + h) * seq + i) * seq;
            out.extend_from_slice(&buf[start..start + n]);
        }
    }
    out
}

#[test]
fn tokenizer_matches_hugging_face() {
    let reference = reference();
    let encoder = SentenceEncoder::load(&teacher_dir(), &cpu_devices()[0].1).unwrap();
    for s in reference["sentences"].as_array().unwrap() {
        let ids = encoder
            .tokenizer
            .encode(s["text"].as_str().unwrap(), 256)
            .unwrap();
        let expected: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, expected, "token ids of {:?}", s["text"]);
    }
}

#[test]
fn vocab_txt_fallback_tokenizes_like_tokenizer_json() {
    let dir = teacher_dir();
    let from_json =
        student_arch::BertTokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    let from_vocab = student_arch::BertTokenizer::from_vocab(&dir.join("vocab.txt"), true).unwrap();
    for s in reference()["sentences"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        assert_eq!(
            from_json.encode(text, 64).unwrap(),
            from_vocab.encode(text, 64).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn teacher_matches_pytorch_reference_on_every_cpu_device() {
    let reference = reference();
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let heads = reference["num_heads"].as_u64().unwrap() as usize;
    let hidden = reference["hidden_size"].as_u64().unwrap() as usize;
    for (name, device) in cpu_devices() {
        let encoder = SentenceEncoder::load(&teacher_dir(), &device).unwrap();
        assert!(encoder.report.has_pooler);
        let input = encoder.batch(&texts).unwrap();
        let [_, seq] = input.dims();
        let mask = input.attention_mask.clone();
        let out = encoder.model.forward(input);
        let embeddings = values(sentence_embedding(out.last_hidden_state(), mask));
        let embedding_output = values(out.embedding_output.clone());
        let last = values(out.last_hidden_state());
        let first_attn = values(out.attention_probs[0].clone());
        let last_attn = values(out.attention_probs.last().unwrap().clone());
        let mut worst = 0.0f32;
        for (b, s) in sentences.iter().enumerate() {
            let n = s["seq_len"].as_u64().unwrap() as usize;
            let checks = [
                (
                    "sentence_embedding",
                    embeddings[b * hidden..(b + 1) * hidden].to_vec(),
                ),
                (
                    "embedding_output",
                    rows(&embedding_output, b, seq, hidden, n),
                ),
                ("last_hidden_state", rows(&last, b, seq, hidden, n)),
                (
                    "attentions_first_layer",
                    attention_block(&first_attn, b, heads, seq, n),
                ),
                (
                    "attentions_last_layer",
                    attention_block(&last_attn, b, heads, seq, n),
                ),
            ];
            for (field, ours) in checks {
                let diff = max_abs_diff(&ours, &floats(&s[field]));
                assert!(
                    diff <= TOLERANCE,
                    "{name}: {field} of sentence {b} differs by {diff:e} (> {TOLERANCE:e})"
                );
                worst = worst.max(diff);
            }
        }
        eprintln!("{name}: largest difference from PyTorch over all fields: {worst:e}");
    }
}

#[test]
fn embed_helper_matches_sentence_transformers_one_sentence_at_a_time() {
    let reference = reference();
    let encoder = SentenceEncoder::load(&teacher_dir(), &cpu_devices()[0].1).unwrap();
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let embeddings = encoder.embed(&texts, 1).unwrap();
    for (e, s) in embeddings.iter().zip(sentences) {
        let diff = max_abs_diff(e, &floats(&s["sentence_embedding"]));
        assert!(
            diff <= TOLERANCE,
            "unbatched embedding of {:?} differs by {diff:e}",
            s["text"]
        );
    }
}
