//! Shared helpers for the criterion benches (named `{backend}/{op}/{size}`), and the side-by-side suite of
//! `cargo xtask bench` ([`suite`]).

pub mod cpu;
pub mod suite;

use burn::tensor::{Device, Int, Tensor, TensorData};
use student_arch::{BertConfig, BertInput, BertModel};

/// The teacher's architecture (all-MiniLM-L6-v2): 6 layers, hidden 384, 12 heads, FFN 1536.
pub fn minilm_config() -> BertConfig {
    BertConfig::new(30522, 384, 6, 12, 1536)
}

/// The real teacher when `BERT_COMPRESS_TEACHER` points at it, else a random model of the same shape (the same
/// arithmetic, so the same time). Returns the model and where it came from.
pub fn teacher_or_same_shape(device: &Device) -> (BertModel, &'static str) {
    if let Some(dir) = std::env::var_os("BERT_COMPRESS_TEACHER") {
        if let Ok((model, _)) = student_arch::load_pretrained(std::path::Path::new(&dir), device) {
            return (model, "teacher");
        }
    }
    (
        minilm_config()
            .init_random(true, 0, device)
            .expect("the MiniLM config is valid"),
        "random MiniLM-shaped",
    )
}

/// A full batch of `batch_size` × `seq_length` seeded random ids, no padding.
pub fn random_batch(
    batch_size: usize,
    seq_length: usize,
    vocab_size: usize,
    device: &Device,
) -> BertInput {
    let mut rng = student_arch::model::SeededRng::new(42);
    let ids: Vec<i64> = (0..batch_size * seq_length)
        .map(|_| (rng.next_u64() % vocab_size as u64) as i64)
        .collect();
    let input_ids =
        Tensor::<2, Int>::from_data(TensorData::new(ids, [batch_size, seq_length]), device);
    BertInput {
        attention_mask: input_ids.ones_like(),
        input_ids,
        token_type_ids: None,
    }
}

/// The same ids as [`random_batch`], as the token-id rows `quant::encoder::QuantEncoder::forward` takes.
pub fn random_ids(batch_size: usize, seq_length: usize, vocab_size: usize) -> Vec<Vec<u32>> {
    random_batch(batch_size, seq_length, vocab_size, &Device::flex())
        .input_ids
        .into_data()
        .iter::<i64>()
        .map(|t| t as u32)
        .collect::<Vec<_>>()
        .chunks(seq_length)
        .map(<[u32]>::to_vec)
        .collect()
}

/// The CPU devices compiled in, by name.
pub fn bench_devices() -> Vec<(&'static str, Device)> {
    student_arch::device::available_devices()
        .into_iter()
        .filter_map(|name| student_arch::device::device(name).ok().map(|d| (name, d)))
        .collect()
}
