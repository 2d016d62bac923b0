//! Training on the GPU code path: every kind of training step the pipeline takes runs on wgpu (Mesa's lavapipe on
//! a machine without a GPU) and matches flex, on a tiny random BERT (4 layers, width 32, dropout off so that both
//! devices compute the same function):
//!
//! - the teacher's fine-tuning step (hard-label cross-entropy on the full classifier), TinyBERT's intermediate
//!   step (embedding + attention + hidden MSE through W_e/W_h) and prediction step, DistilBERT's task step
//!   (Hinton KL + hard label + cosine) and a QAT step (4-bit fake quantization, straight-through gradients), each
//!   through `pipeline::step::task_distill_loss` and one AdamW `optimizer_step`: the loss within 1e-4 (relative)
//!   and every parameter after the step within 1e-4 of flex's (f32 reductions differ in order across devices:
//!   ~1e-6 on values of order 1, far inside the tolerance);
//! - a finite-difference Hessian-vector product on a layer block (Q-BERT's inner loop): within 5% in L2 of flex's
//!   (central differences of two gradients at eps_rel 1e-4 amplify the devices' ~1e-6 gradient differences by
//!   about 1/(2·eps·|θ|)).
//!
//! The GELU of the feed-forward blocks runs Burn's own kernel on wgpu (our fast kernel is flex's only).
//! Compiled with the `wgpu` feature (`cargo xtask ci --wgpu`).
#![cfg(feature = "wgpu")]

use benches::random_batch;
use burn::module::Module;

use burn::tensor::{Device, DeviceKind, Int, Tensor, TensorData};
use hessian::{
    bert_blocks, parameters, BlockGranularity, FiniteDifferenceHvp, HessianVectorProduct,
};
use kd_losses::{LayerMap, LossMixConfig};
use pipeline::step::{optimizer, optimizer_step, task_distill_loss, StudentWithMix};
use pipeline::{SequenceClassifier, StageConfig};
use quant::QuantPlan;
use student_arch::{BertConfig, StudentSpec};

const VOCAB: usize = 64;

fn tiny_config() -> BertConfig {
    let mut config = BertConfig::new(VOCAB, 32, 4, 4, 64);
    config.max_position_embeddings = 32;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config
}

fn labels(n: usize, device: &Device) -> Tensor<1, Int> {
    let y: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
    Tensor::from_data(TensorData::new(y, [n]), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Every tensor of `m` (encoder and head) by Hugging Face name, flattened in name order.
fn flat_parameters(m: &SequenceClassifier) -> Vec<f32> {
    m.named_tensors()
        .expect("the tensors read back")
        .into_values()
        .flat_map(|(_, v)| v)
        .collect()
}

/// The loss of one step of `kind` and the student's parameters after it.
fn step(device: &Device, kind: &str) -> (f32, Vec<f32>) {
    let teacher_encoder = tiny_config().init_random(false, 3, device).unwrap();
    let teacher = SequenceClassifier::new(teacher_encoder.clone(), 2, 5, device);
    let ad = device.clone().autodiff();
    let (encoder, mix) = match kind {
        // The teacher's own fine-tuning: all its layers, hard labels only.
        "finetune" => (
            teacher_encoder.clone(),
            LossMixConfig {
                alpha_label: 1.0,
                ..Default::default()
            },
        ),
        "intermediate" => (
            StudentSpec::default()
                .build(&teacher_encoder, device)
                .unwrap(),
            LossMixConfig::tinybert_intermediate(),
        ),
        "prediction" | "qat" => (
            StudentSpec::default()
                .build(&teacher_encoder, device)
                .unwrap(),
            LossMixConfig {
                alpha_label: 1.0,
                ..LossMixConfig::tinybert_prediction()
            },
        ),
        "distilbert" => (
            StudentSpec::default()
                .build(&teacher_encoder, device)
                .unwrap(),
            LossMixConfig {
                alpha_ce: 1.0,
                alpha_label: 1.0,
                alpha_cos: 1.0,
                ..Default::default()
            },
        ),
        other => panic!("unknown step {other}"),
    };
    let layers = encoder.num_layers();
    let mut student = SequenceClassifier {
        encoder,
        head: teacher.head.clone(),
        cls: false,
    }
    .fork(&ad)
    .train();
    if kind == "qat" {
        let plan = QuantPlan::uniform(layers, 4);
        student.encoder = quant::fake::fake_quantize_model(&student.encoder, &plan).unwrap();
    }
    let mix = mix.init(32, 32, &ad).unwrap();
    let m = StudentWithMix { student, mix };
    let map = LayerMap::spread(layers, teacher_encoder.num_layers()).unwrap();
    let input = random_batch(6, 10, VOCAB, &ad);
    let terms = task_distill_loss(&teacher, &m, input, labels(6, &ad), &map).unwrap();
    let loss = values(terms.total.clone())[0];
    let mut optim = optimizer(&StageConfig::default());
    let m = optimizer_step(&mut optim, 1e-3, m, terms);
    (loss, flat_parameters(&m.student.valid()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_training_step_runs_on_wgpu_and_matches_flex() {
    let gpu = Device::wgpu(DeviceKind::DefaultDevice);
    for kind in [
        "finetune",
        "intermediate",
        "prediction",
        "distilbert",
        "qat",
    ] {
        let (cpu_loss, cpu_after) = step(&Device::flex(), kind);
        let (gpu_loss, gpu_after) = step(&gpu, kind);
        assert!(
            cpu_loss.is_finite() && cpu_loss > 0.0,
            "{kind}: loss {cpu_loss}"
        );
        let rel = (cpu_loss - gpu_loss).abs() / cpu_loss.abs();
        assert!(
            rel < 1e-4,
            "{kind}: loss {gpu_loss} on wgpu, {cpu_loss} on flex"
        );
        let diff = max_abs_diff(&cpu_after, &gpu_after);
        assert!(
            diff < 1e-4,
            "{kind}: parameters after the step differ by {diff:e}"
        );
    }
}

#[test]
fn a_hessian_vector_product_on_wgpu_matches_flex() {
    let hvp = |device: &Device| -> Vec<f64> {
        let ad = device.clone().autodiff();
        let encoder = tiny_config().init_random(false, 3, device).unwrap();
        let model = SequenceClassifier::new(encoder, 2, 5, device)
            .fork(&ad)
            .train();
        let params = parameters(&model);
        let block = bert_blocks(&params, "encoder", 4, BlockGranularity::Layer).unwrap()[1]
            .resolve(&params)
            .unwrap();
        let input = random_batch(6, 10, VOCAB, &ad);
        let y = labels(6, &ad);
        let loss = |m: &SequenceClassifier| -> Result<Tensor<1>, String> {
            let logits = m.forward(input.clone()).logits;
            let logp = burn::tensor::activation::log_softmax(logits, 1);
            Ok(logp.gather(1, y.clone().reshape([6, 1])).mean().neg())
        };
        let v = hessian::power::random_vector(block.dim(), 0);
        let mut product = FiniteDifferenceHvp::new(model, block, loss, 1e-4).unwrap();
        product.hvp(&v).unwrap()
    };
    let cpu = hvp(&Device::flex());
    let gpu = hvp(&Device::wgpu(DeviceKind::DefaultDevice));
    let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
    let diff: Vec<f64> = cpu.iter().zip(&gpu).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&cpu);
    assert!(norm(&cpu) > 0.0);
    assert!(
        rel < 0.05,
        "H·v on wgpu differs from flex by {rel:.3e} (relative L2)"
    );
}
