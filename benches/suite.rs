//! The side-by-side suite of `cargo xtask bench`: each workload that bounds a recipe's time, timed on every CPU
//! backend compiled in, through the same code the pipeline runs (`pipeline::step::task_distill_loss`,
//! `pipeline::step::optimizer_step`, `hessian::FiniteDifferenceHvp`, `quant::encoder::QuantEncoder`).
//! `scripts/bench_torch.py` times the same workloads in PyTorch under the same names.
//!
//! Workloads (`op/size`, `b` batch size, `s` sequence length):
//! - `teacher_forward/b1s64`, `teacher_forward/b32s64`, `teacher_forward/b32s128`: the 6-layer teacher's
//!   inference.
//! - `tinybert_intermediate_step/b32s64`: teacher forward + student forward/backward with the embedding,
//!   attention and hidden losses (through W_e, W_h) + AdamW.
//! - `prediction_step/b32s64`: student forward/backward with the soft cross-entropy against the teacher's
//!   logits (computed once ahead, as the pipeline does) + AdamW.
//! - `hvp/layer_b16s48`: one Hessian-vector product on student layer 1 (1.77 M parameters).
//! - `student_forward/b1s64`, `student_forward/b32s64`: the 3-layer student's inference (fp32 on Burn; 8- and
//!   4-bit weights per head on `quant`'s integer GEMM under the backend names `int8` and `int4`).

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use hessian::{
    bert_blocks, parameters, BlockGranularity, FiniteDifferenceHvp, HessianVectorProduct,
};
use kd_losses::{LayerMap, LossMixConfig};
use pipeline::step::{
    cached_logit_loss, optimizer, optimizer_step, task_distill_loss, StudentWithMix,
};
use pipeline::{SequenceClassifier, StageConfig};
use quant::encoder::QuantEncoder;
use quant::kernels::F32Gemm;
use quant::{quantize_tensors, NamedTensors, QuantPlan};
use serde::{Deserialize, Serialize};
use student_arch::pooling::mean_pool;
use student_arch::weights::named_tensors;
use student_arch::{BertConfig, BertInput, BertModel, StudentSpec};

use crate::{random_batch, random_ids};

/// One workload's timings on one backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// The workload, e.g. `teacher_forward`.
    pub op: String,
    /// Its shape, e.g. `b32s128`.
    pub size: String,
    /// `flex`, `ndarray`, `q8_0`, `q4_0`, or (from the Python script) `torch`.
    pub backend: String,
    /// Median of `times_ms`.
    pub median_ms: f64,
    /// Every timed run, in milliseconds (warm-up runs excluded).
    pub times_ms: Vec<f64>,
    /// Tokens processed per timed run (batch × sequence length).
    pub tokens: usize,
}

impl Measurement {
    /// One workload's timings, with their median.
    pub fn new(op: &str, size: String, backend: &str, times_ms: Vec<f64>, tokens: usize) -> Self {
        Self {
            op: op.into(),
            size,
            backend: backend.into(),
            median_ms: median(&times_ms),
            times_ms,
            tokens,
        }
    }
}

/// How long and how often to time each workload.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs at most.
    pub runs: usize,
    /// Stop timing a workload after this long (at least 3 runs are kept).
    pub budget: Duration,
    /// Run only the workloads whose op is named here (all when empty), e.g. to profile one.
    pub only: Vec<String>,
}

impl SuiteConfig {
    fn wants(&self, op: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == op)
    }
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            warmup: 1,
            runs: 7,
            budget: Duration::from_secs(12),
            only: Vec::new(),
        }
    }
}

/// The median of `times` (the mean of the middle two for an even count); NaN for none.
pub fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    match t.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => t[n / 2],
        n => (t[n / 2 - 1] + t[n / 2]) / 2.0,
    }
}

fn time(config: &SuiteConfig, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..config.warmup {
        f();
    }
    let started = Instant::now();
    let mut times = Vec::with_capacity(config.runs);
    while times.len() < config.runs.max(1) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if times.len() >= 3 && started.elapsed() > config.budget {
            break;
        }
    }
    times
}

/// [`time`] of several workloads in turns: after one warm-up pass each, round after round of one timed pass
/// of each, until `config.runs` rounds or, after 3 rounds, the budget of all of them together.
fn time_in_turns(config: &SuiteConfig, passes: &mut [Box<dyn FnMut() + '_>]) -> Vec<Vec<f64>> {
    for _ in 0..config.warmup {
        passes.iter_mut().for_each(|p| p());
    }
    let started = Instant::now();
    let mut times = vec![Vec::with_capacity(config.runs); passes.len()];
    for round in 0..config.runs.max(1) {
        for (p, t) in passes.iter_mut().zip(&mut times) {
            let s = Instant::now();
            p();
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        if round + 1 >= 3 && started.elapsed() > config.budget * passes.len() as u32 {
            break;
        }
    }
    times
}

/// A 2-class classifier for the Hessian workload: the encoder, mean pooling, a linear head.
#[derive(Module, Debug)]
struct HvpClassifier {
    encoder: BertModel,
    head: Linear,
}

fn hvp_loss(
    m: &HvpClassifier,
    input: &BertInput,
    labels: &Tensor<1, Int>,
) -> Result<Tensor<1>, String> {
    let mask = input.attention_mask.clone();
    let pooled = mean_pool(m.encoder.forward(input.clone()).last_hidden_state(), mask);
    let n = labels.dims()[0];
    let logp = log_softmax(m.head.forward(pooled), 1);
    Ok(logp.gather(1, labels.clone().reshape([n, 1])).mean().neg())
}

fn labels(batch_size: usize, device: &Device) -> Tensor<1, Int> {
    let y: Vec<i64> = (0..batch_size as i64).map(|i| i % 2).collect();
    Tensor::from_data(TensorData::new(y, [batch_size]), device)
}

/// Runs every workload on one Burn backend. `teacher` is the teacher's encoder on `device` (the real one or a
/// random one of its shape); `progress` is told each workload's name before it starts.
pub fn run_backend(
    backend: &str,
    device: &Device,
    teacher: &BertModel,
    config: &SuiteConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Measurement>, String> {
    let mut out = Vec::new();
    let vocab = teacher.config.vocab_size;
    let mut record = |op: &str, size: String, tokens: usize, times: Vec<f64>| {
        out.push(Measurement::new(op, size, backend, times, tokens))
    };

    for (b, s) in [(1, 64), (32, 64), (32, 128)] {
        if !config.wants("teacher_forward") {
            continue;
        }
        progress(&format!("{backend}: teacher_forward/b{b}s{s}"));
        let input = random_batch(b, s, vocab, device);
        let times = time(config, || {
            let _ = teacher
                .forward(input.clone())
                .last_hidden_state()
                .into_data();
        });
        record("teacher_forward", format!("b{b}s{s}"), b * s, times);
    }

    // Task distillation steps, exactly as `pipeline::distill` runs them.
    let ad = device.clone().autodiff();
    let teacher_classifier = SequenceClassifier::new(teacher.clone(), 2, 0, device);
    let student_encoder = StudentSpec::default()
        .build(teacher, device)
        .map_err(|e| e.to_string())?;
    let map = LayerMap::spread(student_encoder.num_layers(), teacher.num_layers())
        .map_err(|e| e.to_string())?;
    for (op, mix_config) in [
        (
            "tinybert_intermediate_step",
            LossMixConfig::tinybert_intermediate(),
        ),
        ("prediction_step", LossMixConfig::tinybert_prediction()),
    ] {
        let (b, s) = (32, 64);
        if !config.wants(op) {
            continue;
        }
        progress(&format!("{backend}: {op}/b{b}s{s}"));
        let student = SequenceClassifier {
            encoder: student_encoder.clone(),
            head: teacher_classifier.head.clone(),
            cls: false,
        }
        .fork(&ad)
        .train();
        let hidden = teacher.config.hidden_size;
        let mix = mix_config
            .clone()
            .init(hidden, hidden, &ad)
            .map_err(|e| e.to_string())?;
        let mut model = Some(StudentWithMix { student, mix });
        let mut optim = optimizer(&StageConfig::default());
        let input = random_batch(b, s, vocab, &ad);
        let y = labels(b, &ad);
        // As the pipeline does: a mix of logit terms alone gets the teacher's logits computed once, ahead.
        let cached: Option<Vec<Vec<f32>>> = (!mix_config.needs_teacher_states()).then(|| {
            let plain_input = random_batch(b, s, vocab, device);
            let logits = teacher_classifier.forward(plain_input).logits.into_data();
            let flat: Vec<f32> = logits.iter::<f32>().collect();
            flat.chunks(2).map(<[f32]>::to_vec).collect()
        });
        let indices: Vec<usize> = (0..b).collect();
        let mut failure = None;
        let times = time(config, || {
            let m = model.take().expect("the model is put back after each step");
            let terms = match &cached {
                Some(all) => cached_logit_loss(&m, all, input.clone(), y.clone(), &indices),
                None => task_distill_loss(&teacher_classifier, &m, input.clone(), y.clone(), &map),
            };
            match terms {
                Ok(terms) => model = Some(optimizer_step(&mut optim, 1e-5, m, terms)),
                Err(e) => {
                    failure = Some(e.to_string());
                    model = Some(m);
                }
            }
        });
        if let Some(e) = failure {
            return Err(format!("{op}: {e}"));
        }
        record(op, format!("b{b}s{s}"), b * s, times);
    }

    // Q-BERT's inner loop.
    if config.wants("hvp") {
        let (b, s) = (16, 48);
        progress(&format!("{backend}: hvp/layer_b{b}s{s}"));
        let model = HvpClassifier {
            encoder: student_encoder.clone().fork(&ad),
            head: LinearConfig::new(teacher.config.hidden_size, 2).init(&ad),
        }
        .train();
        let input = random_batch(b, s, vocab, &ad);
        let y = labels(b, &ad);
        let params = parameters(&model);
        let block = bert_blocks(
            &params,
            "encoder",
            teacher.config.num_attention_heads,
            BlockGranularity::Layer,
        )
        .map_err(|e| e.to_string())?[1]
            .resolve(&params)
            .map_err(|e| e.to_string())?;
        let f = |m: &HvpClassifier| hvp_loss(m, &input, &y);
        let mut hvp =
            FiniteDifferenceHvp::new(model, block.clone(), f, 1e-4).map_err(|e| e.to_string())?;
        let v = hessian::power::random_vector(block.dim(), 0);
        let mut failure = None;
        let times = time(config, || {
            if let Err(e) = hvp.hvp(&v) {
                failure = Some(e.to_string());
            }
        });
        if let Some(e) = failure {
            return Err(format!("hvp: {e}"));
        }
        record("hvp", format!("layer_b{b}s{s}"), b * s, times);
    }

    for (b, s) in [(1, 64), (32, 64)] {
        if !config.wants("student_forward") {
            continue;
        }
        progress(&format!("{backend}: student_forward/b{b}s{s}"));
        let input = random_batch(b, s, vocab, device);
        let times = time(config, || {
            let _ = student_encoder
                .forward(input.clone())
                .last_hidden_state()
                .into_data();
        });
        record("student_forward", format!("b{b}s{s}"), b * s, times);
    }
    Ok(out)
}

/// The student that the `student_forward` workloads time (the default half-depth student of `teacher`): its
/// config and its tensors under Hugging Face names.
pub fn bench_student(teacher: &BertModel) -> Result<(BertConfig, NamedTensors), String> {
    let student = StudentSpec::default()
        .build(teacher, &Device::flex())
        .map_err(|e| e.to_string())?;
    let tensors = named_tensors(&student).map_err(|e| e.to_string())?;
    let config = BertConfig::from_json(&student.config.to_hf_json()).map_err(|e| e.to_string())?;
    Ok((config, tensors))
}

/// The 3-layer student's inference on `quant`'s forward-only encoder: full precision (f32 GEMMs, backend `fp32`;
/// `fp32_qkv3` with Q, K and V as three GEMMs, `fp32_crate` on the `gemm` crate) and on the integer kernels, 8-bit and 4-bit weights (per-head groups, the `quantize` default) with 8-bit
/// activations (backends `int8` and `int4`).
pub fn run_quantized(
    teacher: &BertModel,
    config: &SuiteConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Measurement>, String> {
    let mut out = Vec::new();
    if !config.wants("student_forward") {
        return Ok(out);
    }
    let (student_config, tensors) = bench_student(teacher)?;
    // The full-precision student on the same forward-only encoder (f32 GEMMs): backend `fp32`, and beside it
    // the encoder before each of its last two changes: Q, K and V as three GEMMs on the pool (`fp32_qkv3`),
    // stacked but a small batch still step by step on the pool (`fp32_pool`) instead of as one team of threads;
    // on the `gemm` crate, which packs the weights at every call, instead of the weights packed at load where that
    // is the default (`fp32_crate`: on AVX-512 CPUs the crate stays the default, and the two are the same);
    // the 8-bit encoder likewise before the team mode (`int8_pool`).
    let full =
        || QuantEncoder::full_precision(&student_config, &tensors).map_err(|e| e.to_string());
    let mut encoders = vec![
        (
            "fp32_qkv3",
            QuantEncoder::full_precision_separate_qkv(&student_config, &tensors)
                .map_err(|e| e.to_string())?,
        ),
        ("fp32_pool", full()?.with_team(false)),
        ("fp32_crate", full()?.with_f32_gemm(F32Gemm::Crate)),
        ("fp32", full()?),
    ];
    for bits in [8u32, 4] {
        let plan = QuantPlan::uniform(student_config.num_hidden_layers, bits);
        let q = quantize_tensors(&tensors, &student_config, &plan).map_err(|e| e.to_string())?;
        if bits == 8 {
            // The 8-bit encoder before the team mode (`int8_pool`).
            encoders.push((
                "int8_pool",
                QuantEncoder::new(&q)
                    .map_err(|e| e.to_string())?
                    .with_team(false),
            ));
        }
        let encoder = QuantEncoder::new(&q).map_err(|e| e.to_string())?;
        encoders.push((encoder.kernels()[0][0], encoder));
    }
    // Each size's encoders are timed in turns, one pass each per round, so that a change of the machine's
    // speed during the run (a shared VM's) falls on all of them alike.
    let mut measured: Vec<Vec<Measurement>> = encoders.iter().map(|_| Vec::new()).collect();
    for (b, s) in [(1usize, 64usize), (32, 64)] {
        let names: Vec<&str> = encoders.iter().map(|e| e.0).collect();
        progress(&format!("{}: student_forward/b{b}s{s}", names.join(", ")));
        let ids = random_ids(b, s, teacher.config.vocab_size);
        let failure = std::cell::RefCell::new(None);
        let mut passes: Vec<Box<dyn FnMut() + '_>> = encoders
            .iter()
            .map(|(backend, encoder)| {
                let (ids, failure) = (&ids, &failure);
                Box::new(move || {
                    if let Err(e) = encoder.forward(ids) {
                        *failure.borrow_mut() = Some(format!("{backend} student_forward: {e}"));
                    }
                }) as Box<dyn FnMut() + '_>
            })
            .collect();
        let times = time_in_turns(config, &mut passes);
        drop(passes);
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        for ((backend, _), (times, m)) in encoders.iter().zip(times.into_iter().zip(&mut measured))
        {
            m.push(Measurement::new(
                "student_forward",
                format!("b{b}s{s}"),
                backend,
                times,
                b * s,
            ));
        }
    }
    out.extend(measured.into_iter().flatten());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn every_workload_runs_on_a_tiny_model() {
        let device = Device::flex();
        let teacher = BertConfig::new(50, 64, 6, 2, 128)
            .init_random(false, 0, &device)
            .unwrap();
        let config = SuiteConfig {
            warmup: 0,
            runs: 1,
            budget: Duration::ZERO,
            only: Vec::new(),
        };
        let mut seen = Vec::new();
        let m = run_backend("flex", &device, &teacher, &config, &mut |s| {
            seen.push(s.to_string())
        })
        .unwrap();
        let names: Vec<String> = m.iter().map(|m| format!("{}/{}", m.op, m.size)).collect();
        assert_eq!(
            names,
            [
                "teacher_forward/b1s64",
                "teacher_forward/b32s64",
                "teacher_forward/b32s128",
                "tinybert_intermediate_step/b32s64",
                "prediction_step/b32s64",
                "hvp/layer_b16s48",
                "student_forward/b1s64",
                "student_forward/b32s64"
            ]
        );
        assert_eq!(seen.len(), names.len());
        assert!(m.iter().all(|m| m.median_ms > 0.0 && m.times_ms.len() == 1));
        let q = run_quantized(&teacher, &config, &mut |_| {}).unwrap();
        let backends: Vec<&str> = q.iter().map(|m| m.backend.as_str()).collect();
        assert_eq!(
            backends,
            [
                "fp32_qkv3",
                "fp32_qkv3",
                "fp32_pool",
                "fp32_pool",
                "fp32_crate",
                "fp32_crate",
                "fp32",
                "fp32",
                "int8_pool",
                "int8_pool",
                "int8",
                "int8",
                "int4",
                "int4"
            ]
        );
    }
}
