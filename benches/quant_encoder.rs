//! The whole encoder forward pass: Burn's f32 model on the CPU backends against `quant::encoder::QuantEncoder`
//! running its linear layers on the 8-bit and 4-bit kernels (per-head groups, the `quantize` default), on the
//! teacher's shape (6 layers, hidden 384, 12 heads, FFN 1536; the real teacher when `BERT_COMPRESS_TEACHER`
//! points at it). One sequence of 128 tokens (b1) and 8 of them (b8).
//! Run: `cargo bench -p benches --bench quant_encoder`. Names: `{backend}/encoder/b{batch}xs{seq}`.

use benches::{bench_devices, random_batch, random_ids, teacher_or_same_shape};
use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use quant::encoder::QuantEncoder;
use quant::{quantize_tensors, QuantPlan};
use student_arch::weights::named_tensors;
use student_arch::BertConfig;

fn quant_encoder(c: &mut Criterion) {
    let seq_length = 128;
    let mut group = c.benchmark_group("quant_encoder");
    group.sample_size(10);
    let (model, source) = teacher_or_same_shape(&Device::flex());
    eprintln!("{source} weights");
    let tensors = named_tensors(&model).expect("the model's tensors");
    let config = BertConfig::from_json(&model.config.to_hf_json()).expect("its own config");
    // Each backend's model and each quantized encoder built once, for both batch sizes.
    let models: Vec<_> = bench_devices()
        .into_iter()
        .filter(|(name, _)| *name != "wgpu")
        .map(|(name, device)| (name, teacher_or_same_shape(&device).0, device))
        .collect();
    let encoders: Vec<QuantEncoder> = [8u32, 4]
        .into_iter()
        .map(|bits| {
            let plan = QuantPlan::uniform(config.num_hidden_layers, bits);
            let q = quantize_tensors(&tensors, &config, &plan).expect("a valid plan");
            QuantEncoder::new(&q).expect("whole 32-blocks")
        })
        .collect();
    for batch_size in [1usize, 8] {
        let vocab = model.config.vocab_size;
        let ids = random_ids(batch_size, seq_length, vocab);
        for (name, model, device) in &models {
            let input = random_batch(batch_size, seq_length, vocab, device);
            group.bench_function(format!("{name}/encoder/b{batch_size}xs{seq_length}"), |b| {
                b.iter(|| model.forward(input.clone()).last_hidden_state().into_data())
            });
        }
        for encoder in &encoders {
            let kernel = encoder.kernels()[0][0];
            group.bench_function(
                format!("{kernel}/encoder/b{batch_size}xs{seq_length}"),
                |b| b.iter(|| encoder.forward(&ids).expect("valid ids")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, quant_encoder);
criterion_main!(benches);
