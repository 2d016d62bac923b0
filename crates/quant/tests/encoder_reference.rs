//! The quantized-kernel encoder against Burn's encoder built from the same dequantized weights: exact f32
//! linear layers (3-bit blocks of 32) must agree to float rounding, which checks embeddings, attention, LayerNorm
//! and GELU; the integer GEMM and the block kernels add only the 8-bit rounding of activations.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use quant::encoder::QuantEncoder;
use quant::kernels::F32Gemm;
use quant::{quantize_tensors, Granularity, QuantPlan};
use student_arch::weights::{load_weights_from_bytes, named_tensors, safetensors_bytes};
use student_arch::{BertConfig, BertInput};

fn burn_hidden(model: &student_arch::BertModel, ids: &[u32], device: &Device) -> Vec<f32> {
    let ids: Vec<i64> = ids.iter().map(|t| *t as i64).collect();
    let n = ids.len();
    let input_ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
    let out = model.forward(BertInput {
        attention_mask: input_ids.ones_like(),
        input_ids,
        token_type_ids: None,
    });
    out.last_hidden_state()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn quantized_encoder_matches_burn_on_the_same_weights() {
    let device = Device::flex();
    let config = BertConfig::new(100, 64, 2, 2, 128);
    let model = config.init_random(false, 7, &device).unwrap();
    let tensors = named_tensors(&model).unwrap();
    let hf_config = BertConfig::from_json(&model.config.to_hf_json()).unwrap();
    let sequences: Vec<Vec<u32>> = vec![
        vec![1, 5, 9, 33, 2],
        vec![7, 8, 99, 0, 12, 13, 14, 2],
        vec![3],
    ];
    // 3-bit blocks of 32 run as dequantized f32 matrices, so only float rounding may differ there; the
    // integer GEMM (per-head groups) and the block kernels (blocks of 32) add the 8-bit rounding of activations.
    for (bits, granularity, expected_kernel, tolerance) in [
        (3u32, Granularity::Block(32), "f32", 1e-4f32),
        (8, Granularity::Head, "int8", 0.03),
        (4, Granularity::Head, "int4", 0.03),
        (3, Granularity::Head, "int3", 0.03),
        (8, Granularity::Block(32), "q8_0", 0.03),
        (4, Granularity::Block(32), "q4_0", 0.03),
    ] {
        let plan = QuantPlan {
            granularity,
            ..QuantPlan::uniform(2, bits)
        };
        let q = quantize_tensors(&tensors, &hf_config, &plan).unwrap();
        let encoder = QuantEncoder::new(&q).unwrap();
        assert!(
            encoder
                .kernels()
                .iter()
                .flatten()
                .all(|k| *k == expected_kernel),
            "{:?}",
            encoder.kernels()
        );
        let bytes = safetensors_bytes(&q.dequantize()).unwrap();
        let (reference, _) =
            load_weights_from_bytes(&hf_config, Path::new("dequantized"), &bytes, &device).unwrap();
        let ours = encoder.forward(&sequences).unwrap();
        // A small batch runs as one team of threads on the f32 and integer kernels (when the pool has several);
        // step by step on the pool it gives the same values: the same bits on the integer GEMM.
        let pooled = QuantEncoder::new(&q)
            .unwrap()
            .with_team(false)
            .forward(&sequences)
            .unwrap();
        let shareable = expected_kernel == "f32" || expected_kernel.starts_with("int");
        assert_eq!(
            encoder.runs_as_team(),
            shareable && rayon::current_num_threads() > 1
        );
        if expected_kernel.starts_with("int") {
            assert_eq!(ours, pooled, "{bits}-bit: team and pool differ");
        }
        for (a, b) in ours.iter().zip(&pooled) {
            assert!(
                max_abs_diff(a, b) <= 1e-5,
                "{bits}-bit: team and pool differ"
            );
        }
        for (seq, got) in sequences.iter().zip(&ours) {
            let want = burn_hidden(&reference, seq, &device);
            assert_eq!(got.len(), want.len());
            let worst = max_abs_diff(got, &want);
            assert!(
                worst <= tolerance,
                "{bits}-bit, sequence {seq:?}: max difference {worst} > {tolerance}"
            );
        }
    }
    // Bad input names the sequence.
    let q = quantize_tensors(&tensors, &hf_config, &QuantPlan::uniform(2, 8)).unwrap();
    let encoder = QuantEncoder::new(&q).unwrap();
    let err = encoder.forward(&[vec![1], vec![100]]).unwrap_err();
    assert!(
        err.to_string().contains("token id 100 in sequence 1"),
        "{err}"
    );
    assert!(encoder.forward(&[vec![]]).is_err());
    // The buffers kept between calls: a larger batch, then a smaller one, give what a fresh encoder gives.
    let small = vec![vec![1, 5, 7], vec![2, 3]];
    let large: Vec<Vec<u32>> = (0..9)
        .map(|b| (0..20).map(|t| (b + t) % 50).collect())
        .collect();
    let fresh = QuantEncoder::new(&q).unwrap().forward(&small).unwrap();
    encoder.forward(&large).unwrap();
    assert_eq!(encoder.forward(&small).unwrap(), fresh);
}

#[test]
fn full_precision_encoder_matches_burn() {
    let device = Device::flex();
    let config = BertConfig::new(100, 64, 2, 2, 128);
    let model = config.init_random(false, 11, &device).unwrap();
    let tensors = named_tensors(&model).unwrap();
    let hf_config = BertConfig::from_json(&model.config.to_hf_json()).unwrap();
    // Both f32 GEMMs: the weights packed at load, and the `gemm` crate.
    for gemm in [F32Gemm::Packed, F32Gemm::Crate] {
        full_precision_on(gemm, &model, &hf_config, &tensors, &device);
    }
}

fn full_precision_on(
    gemm: F32Gemm,
    model: &student_arch::BertModel,
    hf_config: &BertConfig,
    tensors: &quant::NamedTensors,
    device: &Device,
) {
    let encoder = QuantEncoder::full_precision(hf_config, tensors)
        .unwrap()
        .with_f32_gemm(gemm);
    assert!(encoder.kernels().iter().flatten().all(|k| *k == "f32"));
    // A small batch (one group, threaded GEMMs) and a large one (groups of sequences, one thread each).
    let small: Vec<Vec<u32>> = vec![vec![1, 5, 9, 33, 2], vec![3]];
    let large: Vec<Vec<u32>> = (0..40)
        .map(|b| {
            (0..(30 + b % 7))
                .map(|t| ((b * 7 + t * 3) % 99) as u32)
                .collect()
        })
        .collect();
    // The small batch runs as one team of threads when the pool has several; step by step on the pool it
    // gives the same values.
    assert_eq!(encoder.runs_as_team(), rayon::current_num_threads() > 1);
    let team = encoder.forward(&small).unwrap();
    let pool = QuantEncoder::full_precision(hf_config, tensors)
        .unwrap()
        .with_f32_gemm(gemm)
        .with_team(false);
    assert!(!pool.runs_as_team());
    for (a, b) in team.iter().zip(&pool.forward(&small).unwrap()) {
        assert!(max_abs_diff(a, b) <= 1e-5);
    }
    for sequences in [small, large] {
        let ours = encoder.forward(&sequences).unwrap();
        for (seq, got) in sequences.iter().zip(&ours) {
            let want = burn_hidden(model, seq, device);
            assert_eq!(got.len(), want.len());
            let worst = max_abs_diff(got, &want);
            assert!(
                worst <= 1e-4,
                "{gemm:?}, sequence of {}: max difference {worst}",
                seq.len()
            );
        }
    }
}
