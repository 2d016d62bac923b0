//! The GPU code path, proven: a tiny random BERT gives the same outputs on wgpu as on the CPU. On a machine
//! without a GPU, Mesa's lavapipe provides the Vulkan device. Compiled only with the `wgpu` feature
//! (`cargo xtask ci --wgpu`).
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::{Device, DeviceKind};
use common::{max_abs_diff, values};
use student_arch::pooling::sentence_embedding;
use student_arch::{BertConfig, BertInput};

#[test]
fn tiny_bert_on_wgpu_matches_cpu() {
    let mut config = BertConfig::new(64, 32, 2, 4, 64);
    config.max_position_embeddings = 32;
    let sequences = vec![vec![1, 5, 9, 12, 2], vec![1, 7, 2]];
    let run = |device: &Device| {
        let model = config.init_random(true, 21, device).unwrap();
        let input = BertInput::from_token_ids(&sequences, 0, 64, device).unwrap();
        let mask = input.attention_mask.clone();
        let out = model.try_forward(input).unwrap();
        (
            values(out.last_hidden_state()),
            values(out.attention_probs[1].clone()),
            values(sentence_embedding(out.last_hidden_state(), mask)),
        )
    };
    let cpu = run(&Device::flex());
    let gpu = run(&Device::wgpu(DeviceKind::DefaultDevice));
    for (what, a, b) in [
        ("hidden", &cpu.0, &gpu.0),
        ("attention", &cpu.1, &gpu.1),
        ("embedding", &cpu.2, &gpu.2),
    ] {
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-4, "wgpu {what} differs from flex by {diff:e}");
    }
}
