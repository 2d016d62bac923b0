//! Each format's error budget: the relative reconstruction MSE (MSE / mean w²) on Gaussian weights and on the
//! real teacher's weights, checked against the table in docs/archive/RESULTS-2026-11.md ("Quantization error budget"). The
//! budgets are the measured values rounded up by about 10%; a change that makes a format worse fails here.
//! Print the table with `cargo test -p quant --test error_budget -- --nocapture`.

use std::path::Path;

use quant::format::{mse, SUPPORTED_BITS};
use quant::{Granularity, HeadAxis, QuantSpec, QuantizedTensor};

/// (bits, granularity) → budget of relative MSE on N(0, 1) weights of a 384×384 matrix (12 heads).
const GAUSSIAN_BUDGET: [(u32, &str, f64); 16] = [
    (8, "tensor", 1.207e-04),
    (8, "channel", 5.662e-05),
    (8, "head", 9.123e-05),
    (8, "block:32", 3.145e-05),
    (4, "tensor", 3.951e-02),
    (4, "channel", 1.849e-02),
    (4, "head", 3.010e-02),
    (4, "block:32", 1.030e-02),
    (3, "tensor", 2.169e-01),
    (3, "channel", 1.015e-01),
    (3, "head", 1.649e-01),
    (3, "block:32", 5.631e-02),
    (2, "tensor", 1.027e+00),
    (2, "channel", 7.423e-01),
    (2, "head", 9.456e-01),
    (2, "block:32", 4.759e-01),
];

fn gaussian(n: usize) -> Vec<f32> {
    let mut rng = student_arch::model::SeededRng::new(11);
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn relative_mse(
    w: &[f32],
    shape: [usize; 2],
    bits: u32,
    g: &str,
    head: Option<(HeadAxis, usize)>,
) -> f64 {
    let spec = QuantSpec::symmetric(bits, g.parse::<Granularity>().unwrap());
    let q = QuantizedTensor::quantize("w", w, shape, spec, head).unwrap();
    let power = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
    mse(w, &q.dequantize()) / power
}

#[test]
fn gaussian_weights_stay_within_budget() {
    let w = gaussian(384 * 384);
    println!("| bits | granularity | relative MSE, N(0,1) 384×384 |");
    for (bits, g, budget) in GAUSSIAN_BUDGET {
        let e = relative_mse(&w, [384, 384], bits, g, Some((HeadAxis::Rows, 12)));
        println!("| {bits} | {g} | {e:.3e} |");
        assert!(
            e <= budget,
            "{bits}-bit {g}: {e:.3e} over budget {budget:.3e}"
        );
    }
    assert_eq!(SUPPORTED_BITS, [2, 3, 4, 8]);
}

#[test]
fn real_teacher_weights_stay_within_budget() {
    let Some(dir) = std::env::var_os("BERT_COMPRESS_TEACHER") else {
        eprintln!("BERT_COMPRESS_TEACHER is not set (`cargo xtask ci` sets it); skipping the real weights");
        return;
    };
    let device = burn::tensor::Device::flex();
    let (model, _) = student_arch::load_pretrained(Path::new(&dir), &device).unwrap();
    let tensors = student_arch::weights::named_tensors(&model).unwrap();
    // Budgets on the real weights (measured × 1.1), for the formats the quantize command uses.
    let real_budget = |name: &str, bits: u32, g: &str| -> Option<f64> {
        let layer = name.strip_prefix("encoder.layer.0.").unwrap_or(name);
        let v = match (layer, bits, g) {
            ("attention.self.query.weight", 4, "head") => 4.222e-2,
            ("attention.self.query.weight", 8, "head") => 1.269e-4,
            ("attention.output.dense.weight", 4, "head") => 1.998e-1,
            ("attention.output.dense.weight", 4, "channel") => 2.348e-2,
            ("intermediate.dense.weight", 4, "channel") => 1.911e-2,
            ("embeddings.word_embeddings.weight", 4, "block:32") => 9.418e-3,
            ("embeddings.word_embeddings.weight", 4, "channel") => 1.745e-2,
            ("embeddings.word_embeddings.weight", 8, "channel") => 5.307e-5,
            _ => return None,
        };
        Some(v * 1.1)
    };
    println!("| tensor | bits | granularity | relative MSE |");
    for (name, axis) in [
        (
            "encoder.layer.0.attention.self.query.weight",
            Some((HeadAxis::Rows, 12)),
        ),
        (
            "encoder.layer.0.attention.output.dense.weight",
            Some((HeadAxis::Columns, 12)),
        ),
        ("encoder.layer.0.intermediate.dense.weight", None),
        ("embeddings.word_embeddings.weight", None),
    ] {
        let (shape, w) = &tensors[name];
        for bits in [8, 4, 3, 2] {
            for g in ["tensor", "channel", "head", "block:32"] {
                let e = relative_mse(w, [shape[0], shape[1]], bits, g, axis);
                println!("| {name} | {bits} | {g} | {e:.3e} |");
                if let Some(budget) = real_budget(name, bits, g) {
                    assert!(
                        e <= budget,
                        "{name} {bits}-bit {g}: {e:.3e} over budget {budget:.3e}"
                    );
                }
            }
        }
    }
}
