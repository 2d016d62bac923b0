//! A BERT encoder forward pass on the CPU that runs its linear layers on the quantized kernels of
//! [`crate::kernels`]: 8-bit and 4-bit symmetric matrices whose groups span whole blocks of 32 use
//! [`QuantLinear`]; other widths (2, 3 bits, asymmetric) run as dequantized f32 matrices. Embeddings,
//! LayerNorm, softmax and GELU are f32. Its outputs match the Burn model built from the same dequantized weights
//! up to the 8-bit rounding of activations inside the kernels (tested).

use rayon::prelude::*;
use student_arch::{BertConfig, HiddenAct};

use crate::encoder_ops as ops;
use crate::error::{QuantError, Result};
use crate::kernels::simd::Tier;
use crate::kernels::{self, F32Gemm, IntLinear, QuantLinear, SharedOut, QK};

mod linear;
mod team;

use crate::model::QuantizedModel;
pub use linear::{F32Weight, Linear};

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// `x ← LayerNorm(x + residual)`, row by row.
    fn apply(&self, tier: Tier, x: &mut [f32], residual: Option<&[f32]>) {
        ops::add_layer_norm(tier, x, residual, &self.gamma, &self.beta, self.eps);
    }

    /// [`LayerNorm::apply`] on the calling thread.
    fn apply_serial(&self, tier: Tier, x: &mut [f32], residual: Option<&[f32]>) {
        ops::add_layer_norm_serial(tier, x, residual, &self.gamma, &self.beta, self.eps);
    }
}

/// A layer's query, key and value matrices.
enum Qkv {
    /// As one GEMM ([`Linear::stack`]: all three integer with row scales, or all three f32), with each matrix's
    /// kernel name.
    Fused(Box<Linear>, [&'static str; 3]),
    /// Query, key, value, each on its own kernel.
    Separate(Box<[Linear; 3]>),
}

struct Layer {
    qkv: Qkv,
    output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    ffn_output: Linear,
    output_norm: LayerNorm,
}

thread_local! {
    /// Each thread's attention buffers and one head's output, reused across heads and calls.
    static SCRATCH: std::cell::RefCell<(ops::Scratch, Vec<f32>)> = std::cell::RefCell::default();
    /// Each thread's buffers of a forward pass, kept between calls.
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::default();
}

/// The buffers of one forward pass, kept between calls (per thread): fresh multi-megabyte vectors on every call
/// cost page faults worth about a tenth of a 32 × 64 pass.
#[derive(Default)]
struct Workspace {
    x: Vec<f32>,
    qkv: [Vec<f32>; 3],
    context: Vec<f32>,
    attn: Vec<f32>,
    inner: Vec<f32>,
}

/// The encoder on quantized kernels.
pub struct QuantEncoder {
    config: BertConfig,
    activation: HiddenAct,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Option<Vec<f32>>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    /// Every matrix f32 or on the integer GEMM, and Q, K, V stacked: a small batch can run as one team of threads
    /// ([`QuantEncoder::forward`]).
    team: bool,
}

/// Tokens per group of sequences when a large batch is split over threads (`QuantEncoder::forward`).
const GROUP_TOKENS: usize = 128;

fn activate(tier: Tier, act: HiddenAct, x: &mut [f32]) {
    match act {
        HiddenAct::Gelu => ops::gelu_all(tier, x),
        HiddenAct::GeluTanh => x.par_iter_mut().for_each(|v| {
            *v = 0.5
                * *v
                * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (*v + 0.044715 * v.powi(3))).tanh())
        }),
        HiddenAct::Relu => x.par_iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// [`activate`] on the calling thread.
fn activate_serial(tier: Tier, act: HiddenAct, x: &mut [f32]) {
    match act {
        HiddenAct::Gelu => ops::gelu_serial(tier, x),
        HiddenAct::GeluTanh => x.iter_mut().for_each(|v| {
            *v = 0.5
                * *v
                * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (*v + 0.044715 * v.powi(3))).tanh())
        }),
        HiddenAct::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

impl QuantEncoder {
    /// Builds the encoder from a quantized model.
    pub fn new(model: &QuantizedModel) -> Result<Self> {
        Self::build(&model.config, &model.quantized, &model.dense, true)
    }

    /// The same forward-only encoder over a full-precision model's tensors (Hugging Face names): every matrix
    /// one f32 GEMM (Q, K and V stacked into one), with the fused attention, LayerNorm and activation of the
    /// quantized path.
    pub fn full_precision(config: &BertConfig, tensors: &crate::NamedTensors) -> Result<Self> {
        Self::build(config, &Default::default(), tensors, true)
    }

    /// [`QuantEncoder::full_precision`] with Q, K and V as three GEMMs, as before they were stacked: the
    /// "before" of that change in `cargo xtask bench` (backend `fp32_qkv3`).
    pub fn full_precision_separate_qkv(
        config: &BertConfig,
        tensors: &crate::NamedTensors,
    ) -> Result<Self> {
        Self::build(config, &Default::default(), tensors, false)
    }

    fn build(
        config: &BertConfig,
        quantized: &std::collections::BTreeMap<String, crate::QuantizedTensor>,
        dense: &crate::NamedTensors,
        fuse_qkv: bool,
    ) -> Result<Self> {
        let config = config.clone();
        // Dequantize only what runs in f32 here; 8- and 4-bit matrices go to the kernels as they are.
        let tensor = |name: &str| -> Option<(Vec<usize>, Vec<f32>)> {
            match quantized.get(name) {
                Some(q) => Some((q.shape.to_vec(), q.dequantize())),
                None => dense.get(name).cloned(),
            }
        };
        let take = |name: &str, len: usize| -> Result<Vec<f32>> {
            match tensor(name) {
                Some((_, v)) if v.len() == len => Ok(v),
                Some((shape, v)) => Err(QuantError::Shape {
                    op: "QuantEncoder::new",
                    message: format!(
                        "`{name}` has shape {shape:?} ({} values), expected {len}",
                        v.len()
                    ),
                }),
                None => Err(QuantError::Shape {
                    op: "QuantEncoder::new",
                    message: format!("the model has no `{name}`"),
                }),
            }
        };
        let h = config.hidden_size;
        let f = config.intermediate_size;
        let norm = |prefix: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                gamma: take(&format!("{prefix}.weight"), h)?,
                beta: take(&format!("{prefix}.bias"), h)?,
                eps: config.layer_norm_eps as f32,
            })
        };
        let linear = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
            let bias = take(&format!("{name}.bias"), rows)?;
            let key = format!("{name}.weight");
            if let Some(q) = quantized.get(&key) {
                if IntLinear::supports(q) {
                    return Ok(Linear::Int(IntLinear::from_quantized(q, bias)?));
                }
                if q.spec.symmetric && q.group[1] % QK == 0 {
                    match q.spec.bits {
                        8 => return Ok(Linear::Q8(QuantLinear::from_quantized(q, Some(bias))?)),
                        4 => return Ok(Linear::Q4(QuantLinear::from_quantized(q, Some(bias))?)),
                        _ => {}
                    }
                }
            }
            Linear::f32(&take(&key, rows * cols)?, bias, rows, cols)
        };
        let mut layers = vec![];
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let dims = |m: &str| match m {
                "intermediate.dense" => (f, h),
                "output.dense" => (h, f),
                _ => (h, h),
            };
            let lin = |m: &str| {
                let (r, c) = dims(m);
                linear(&format!("{p}.{m}"), r, c)
            };
            let (query, key, value) = (
                lin("attention.self.query")?,
                lin("attention.self.key")?,
                lin("attention.self.value")?,
            );
            let kinds = [query.kind(), key.kind(), value.kind()];
            let fused = if fuse_qkv {
                Linear::stack(&[&query, &key, &value])
            } else {
                None
            };
            // The fused GEMM replaces the three matrices; they are not kept beside it.
            let qkv = match fused {
                Some(gemm) => Qkv::Fused(Box::new(gemm), kinds),
                None => Qkv::Separate(Box::new([query, key, value])),
            };
            layers.push(Layer {
                qkv,
                output: lin("attention.output.dense")?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: lin("intermediate.dense")?,
                ffn_output: lin("output.dense")?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let token_type = match tensor("embeddings.token_type_embeddings.weight") {
            Some((_, v)) if v.iter().any(|x| *x != 0.0) => Some(v[..h].to_vec()),
            _ => None,
        };
        let shareable = |l: &Linear| matches!(l, Linear::F32 { .. } | Linear::Int(_));
        let team = layers.iter().all(|l| {
            matches!(&l.qkv, Qkv::Fused(m, _) if shareable(m))
                && [&l.output, &l.intermediate, &l.ffn_output]
                    .into_iter()
                    .all(shareable)
        });
        Ok(Self {
            team,
            activation: config.activation()?,
            word: take("embeddings.word_embeddings.weight", config.vocab_size * h)?,
            position: take(
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings * h,
            )?,
            token_type,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            config,
        })
    }

    /// Whether a small batch runs as one team of threads (every matrix f32 or integer, the pool more than one
    /// thread; see
    /// [`QuantEncoder::forward`]).
    pub fn runs_as_team(&self) -> bool {
        self.team && rayon::current_num_threads() > 1
    }

    /// With `false`, a small batch runs on the pool step by step (each GEMM, attention and LayerNorm a parallel
    /// call of its own) as before the team mode: the "before" of that change in `cargo xtask bench` (backends
    /// `fp32_pool`, `int8_pool`) and its reference in the tests.
    pub fn with_team(mut self, on: bool) -> Self {
        self.team = on && self.team;
        self
    }

    /// Every f32 matrix on the GEMM `gemm` instead of the one [`F32Gemm::best`] picked: the `gemm` crate's
    /// ([`F32Gemm::Crate`]) is the "before" of the weights packed at load in `cargo xtask bench` (backend
    /// `fp32_crate`).
    pub fn with_f32_gemm(mut self, gemm: F32Gemm) -> Self {
        self.layers = std::mem::take(&mut self.layers)
            .into_iter()
            .map(|l| Layer {
                qkv: match l.qkv {
                    Qkv::Fused(m, kinds) => Qkv::Fused(Box::new(m.on_f32_gemm(gemm)), kinds),
                    Qkv::Separate(m) => Qkv::Separate(Box::new(m.map(|l| l.on_f32_gemm(gemm)))),
                },
                output: l.output.on_f32_gemm(gemm),
                intermediate: l.intermediate.on_f32_gemm(gemm),
                ffn_output: l.ffn_output.on_f32_gemm(gemm),
                ..l
            })
            .collect();
        self
    }

    /// The kernel each layer's six matrices run on, e.g. `["q4_0", ...]` per layer.
    pub fn kernels(&self) -> Vec<[&'static str; 6]> {
        self.layers
            .iter()
            .map(|l| {
                let [q, k, v] = match &l.qkv {
                    Qkv::Fused(_, kinds) => *kinds,
                    Qkv::Separate(m) => m.each_ref().map(Linear::kind),
                };
                [
                    q,
                    k,
                    v,
                    l.output.kind(),
                    l.intermediate.kind(),
                    l.ffn_output.kind(),
                ]
            })
            .collect()
    }

    /// The last hidden states of one batch: `ids[b]` are the token ids of sequence `b` (no padding needed;
    /// sequences attend only to their own tokens). Token type 0 throughout.
    ///
    /// # Shapes
    /// - returns `[batch][seq_length_b · hidden]`.
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        for (b, seq) in ids.iter().enumerate() {
            if seq.is_empty() || seq.len() > self.config.max_position_embeddings {
                return Err(QuantError::Shape {
                    op: "QuantEncoder::forward",
                    message: format!(
                        "sequence {b} has {} tokens; expected 1 to {}",
                        seq.len(),
                        self.config.max_position_embeddings
                    ),
                });
            }
            if let Some(t) = seq.iter().find(|t| **t as usize >= self.config.vocab_size) {
                return Err(QuantError::Shape {
                    op: "QuantEncoder::forward",
                    message: format!(
                        "token id {t} in sequence {b} is outside the vocabulary of {}",
                        self.config.vocab_size
                    ),
                });
            }
        }
        let tokens: usize = ids.iter().map(|s| s.len()).sum();
        let threads = rayon::current_num_threads();
        // A large batch goes as groups of whole sequences, each group through every layer on one thread: its
        // activations (the FFN's [tokens, 1536] included) stay in that core's L2 cache instead of going to
        // memory between the layers' steps, and the threads never wait for each other (each group's GEMMs stay on
        // its thread: `kernels::serial`). A small batch (or a call from inside a rayon task, whose caller already
        // runs in parallel) is one group whose GEMMs and attention are threaded instead.
        if threads > 1
            && ids.len() > 1
            && tokens >= threads * GROUP_TOKENS
            && rayon::current_thread_index().is_none()
        {
            let mut groups: Vec<&[Vec<u32>]> = vec![];
            let (mut start, mut count) = (0, 0);
            for (b, seq) in ids.iter().enumerate() {
                if count > 0 && count + seq.len() > GROUP_TOKENS {
                    groups.push(&ids[start..b]);
                    (start, count) = (b, 0);
                }
                count += seq.len();
            }
            groups.push(&ids[start..]);
            let parts = groups
                .par_iter()
                .map(|g| kernels::serial(|| self.forward_group(g, false)))
                .collect::<Result<Vec<_>>>()?;
            return Ok(parts.into_iter().flatten().collect());
        }
        // A small batch runs as one team when every matrix is f32 or integer: every thread of the pool takes its
        // share of each step (its heads, its part of each matrix, its rows of each LayerNorm) and meets the others at a
        // spinning barrier between steps, instead of waking the pool for every GEMM, attention and LayerNorm
        // (about thirty times a pass, each wake-up tens of microseconds on a 2-core VM).
        let team =
            self.runs_as_team() && !kernels::is_serial() && rayon::current_thread_index().is_none();
        self.forward_group(ids, team)
    }

    /// [`QuantEncoder::forward`] of checked sequences as one matrix; `team`: the layers as one team of threads.
    fn forward_group(&self, ids: &[Vec<u32>], team: bool) -> Result<Vec<Vec<f32>>> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        // All tokens of the batch as one [n, h] matrix, so each linear layer is one kernel call.
        let offsets: Vec<usize> = ids
            .iter()
            .scan(0, |s, seq| {
                let o = *s;
                *s += seq.len();
                Some(o)
            })
            .collect();
        let n: usize = ids.iter().map(|s| s.len()).sum();
        // This thread's buffers (a re-entrant call, none today, gets fresh ones).
        let mut ws = WORKSPACE.with(|w| {
            w.try_borrow_mut()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default()
        });
        let x = &mut ws.x;
        x.resize(n * h, 0.0);
        for (b, seq) in ids.iter().enumerate() {
            for (p, &t) in seq.iter().enumerate() {
                let row = &mut x[(offsets[b] + p) * h..(offsets[b] + p + 1) * h];
                for j in 0..h {
                    row[j] = self.word[t as usize * h + j]
                        + self.position[p * h + j]
                        + self.token_type.as_ref().map_or(0.0, |tt| tt[j]);
                }
            }
        }
        let tier = Tier::best();
        self.embedding_norm.apply(tier, x, None);
        let scale = 1.0 / (d as f32).sqrt();
        // Each (sequence, head) pair is independent.
        let jobs: Vec<(usize, usize)> = (0..ids.len())
            .flat_map(|b| (0..heads).map(move |hd| (b, hd)))
            .collect();
        let layers: &[Layer] = if team {
            self.run_team(&mut ws, ids, &offsets, tier)?;
            &[]
        } else {
            &self.layers
        };
        for layer in layers {
            let Workspace {
                x,
                qkv,
                context,
                attn,
                inner,
            } = &mut ws;
            // Q, K and V side by side in one [n, 3h] matrix (one GEMM) or as three [n, h] ones.
            let (stride, at) = match &layer.qkv {
                Qkv::Fused(gemm, _) => {
                    gemm.forward_into(x, n, &mut qkv[0])?;
                    (3 * h, [(0, 0), (0, h), (0, 2 * h)])
                }
                Qkv::Separate(m) => {
                    for (linear, y) in m.iter().zip(qkv.iter_mut()) {
                        linear.forward_into(x, n, y)?;
                    }
                    (h, [(0, 0), (1, 0), (2, 0)])
                }
            };
            let part = |which: usize, row: usize, hd: usize| {
                let (m, col) = at[which];
                &qkv[m][row * stride + col + hd * d..]
            };
            context.resize(n * h, 0.0);
            let shared = SharedOut::new(context);
            jobs.par_iter().for_each(|&(b, hd)| {
                let (o, len) = (offsets[b], ids[b].len());
                let head = ops::Head {
                    q: part(0, o, hd),
                    k: part(1, o, hd),
                    v: part(2, o, hd),
                    stride,
                    len,
                    d,
                    scale,
                };
                SCRATCH.with(|scratch| {
                    let (scratch, out) = &mut *scratch.borrow_mut();
                    out.resize(len * d, 0.0);
                    ops::attend_head(tier, head, scratch, out);
                    for (i, row) in out.chunks_exact(d).enumerate() {
                        // SAFETY: this job alone writes columns hd·d..(hd + 1)·d of the sequence's rows.
                        unsafe { shared.slice((o + i) * h + hd * d, d) }.copy_from_slice(row);
                    }
                });
            });
            layer.output.forward_into(context, n, attn)?;
            layer.attention_norm.apply(tier, attn, Some(x));
            layer.intermediate.forward_into(attn, n, inner)?;
            activate(tier, self.activation, inner);
            layer.ffn_output.forward_into(inner, n, x)?;
            layer.output_norm.apply(tier, x, Some(attn));
        }
        let states = ids
            .iter()
            .enumerate()
            .map(|(b, seq)| ws.x[offsets[b] * h..(offsets[b] + seq.len()) * h].to_vec())
            .collect();
        WORKSPACE.with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                *w = ws;
            }
        });
        Ok(states)
    }

    /// Mean over tokens of each sequence's last hidden states (the classifier's pooling).
    ///
    /// # Shapes
    /// - returns `[batch][hidden]`.
    pub fn mean_pooled(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let h = self.config.hidden_size;
        Ok(self
            .forward(ids)?
            .iter()
            .map(|states| mean_over_tokens(states, h))
            .collect())
    }
}

/// The mean over tokens of one sequence's last hidden states `states` (`[tokens][hidden]` flat).
pub fn mean_over_tokens(states: &[f32], hidden: usize) -> Vec<f32> {
    let n = states.len() / hidden;
    (0..hidden)
        .map(|j| (0..n).map(|t| states[t * hidden + j]).sum::<f32>() / n as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 - 500.0) / 500.0)
            .collect()
    }

    #[test]
    fn stacked_f32_matrices_give_each_matrix_s_outputs_side_by_side() {
        for gemm in [F32Gemm::Packed, F32Gemm::Crate] {
            stacked_f32_on(gemm);
        }
    }

    fn stacked_f32_on(gemm: F32Gemm) {
        let (cols, n) = (24, 5);
        let parts: Vec<Linear> = [(8, 1), (16, 2), (8, 3)]
            .iter()
            .map(|&(rows, seed)| {
                Linear::f32_on(
                    gemm,
                    &values(rows * cols, seed),
                    values(rows, seed + 10),
                    rows,
                    cols,
                )
                .unwrap()
            })
            .collect();
        let stacked = Linear::stack(&parts.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((stacked.rows(), stacked.kind()), (32, "f32"));
        let x = values(n * cols, 7);
        let y = stacked.forward(&x, n).unwrap();
        let mut at = 0;
        for part in &parts {
            let r = part.rows();
            let own = part.forward(&x, n).unwrap();
            for t in 0..n {
                for j in 0..r {
                    let (a, b) = (y[t * 32 + at + j], own[t * r + j]);
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{gemm:?}: token {t} output {j}: {a} vs {b}"
                    );
                }
            }
            at += r;
        }
        // Different input widths, or an f32 matrix beside an integer one, do not stack.
        let narrow = Linear::f32(&values(8 * 12, 4), vec![0.0; 8], 8, 12).unwrap();
        assert!(Linear::stack(&[&parts[0], &narrow]).is_none());
    }
}
