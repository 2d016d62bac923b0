//! A BERT encoder forward pass on the CPU that runs its linear layers on the quantized kernels of
//! [`crate::kernels`]: 8-bit and 4-bit symmetric matrices whose groups span whole blocks of 32 use
//! [`QuantLinear`]; other widths (2, 3 bits, asymmetric) run as dequantized f32 matrices. Embeddings,
//! LayerNorm, softmax and GELU are f32. Its outputs match the Burn model built from the same dequantized weights
//! up to the 8-bit rounding of activations inside the kernels (tested).

use rayon::prelude::*;
use student_arch::{BertConfig, HiddenAct};

use crate::error::{QuantError, Result};
use crate::kernels::{BlockQ4_0, BlockQ8_0, QuantLinear, QK};
use crate::model::QuantizedModel;

/// One linear layer, on the fastest kernel its format allows.
#[derive(Clone, Debug)]
pub enum Linear {
    /// 8-bit blocks.
    Q8(QuantLinear<BlockQ8_0>),
    /// 4-bit blocks.
    Q4(QuantLinear<BlockQ4_0>),
    /// Dequantized f32 `[out, in]` with bias.
    F32 {
        /// `[out, in]`, row-major.
        weight: Vec<f32>,
        /// `[out]`.
        bias: Vec<f32>,
        /// Output features.
        rows: usize,
        /// Input features.
        cols: usize,
    },
}

impl Linear {
    /// Output features.
    pub fn rows(&self) -> usize {
        match self {
            Self::Q8(l) => l.rows,
            Self::Q4(l) => l.rows,
            Self::F32 { rows, .. } => *rows,
        }
    }

    /// `y = x Wᵀ + b`, `x: [n, in]` → `[n, out]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        match self {
            Self::Q8(l) => l.forward(x, n),
            Self::Q4(l) => l.forward(x, n),
            Self::F32 {
                weight,
                bias,
                rows,
                cols,
            } => {
                let mut y = vec![0.0; n * rows];
                y.par_chunks_mut(*rows).enumerate().for_each(|(i, out)| {
                    let xi = &x[i * cols..(i + 1) * cols];
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = weight[r * cols..(r + 1) * cols]
                            .iter()
                            .zip(xi)
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            + bias[r];
                    }
                });
                Ok(y)
            }
        }
    }

    /// The kernel's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Q8(_) => "q8_0",
            Self::Q4(_) => "q4_0",
            Self::F32 { .. } => "f32",
        }
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn apply(&self, x: &mut [f32]) {
        let h = self.gamma.len();
        for row in x.chunks_mut(h) {
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * inv * self.gamma[j] + self.beta[j];
            }
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    ffn_output: Linear,
    output_norm: LayerNorm,
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
}

/// `erf` to 1.5e-7 (Abramowitz & Stegun 7.1.26).
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs() as f64);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-(x as f64) * x as f64).exp();
    (y as f32).copysign(x)
}

fn activate(act: HiddenAct, x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = match act {
            HiddenAct::Gelu => 0.5 * *v * (1.0 + erf(*v / std::f32::consts::SQRT_2)),
            HiddenAct::GeluTanh => {
                0.5 * *v
                    * (1.0
                        + ((2.0 / std::f32::consts::PI).sqrt() * (*v + 0.044715 * v.powi(3)))
                            .tanh())
            }
            HiddenAct::Relu => v.max(0.0),
        };
    }
}

impl QuantEncoder {
    /// Builds the encoder from a quantized model.
    pub fn new(model: &QuantizedModel) -> Result<Self> {
        let config = model.config.clone();
        // Dequantize only what runs in f32 here; 8- and 4-bit matrices go to the kernels as they are.
        let tensor = |name: &str| -> Option<(Vec<usize>, Vec<f32>)> {
            match model.quantized.get(name) {
                Some(q) => Some((q.shape.to_vec(), q.dequantize())),
                None => model.dense.get(name).cloned(),
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
            if let Some(q) = model.quantized.get(&key) {
                if q.spec.symmetric && q.group[1] % QK == 0 {
                    match q.spec.bits {
                        8 => return Ok(Linear::Q8(QuantLinear::from_quantized(q, Some(bias))?)),
                        4 => return Ok(Linear::Q4(QuantLinear::from_quantized(q, Some(bias))?)),
                        _ => {}
                    }
                }
            }
            Ok(Linear::F32 {
                weight: take(&key, rows * cols)?,
                bias,
                rows,
                cols,
            })
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
            layers.push(Layer {
                query: lin("attention.self.query")?,
                key: lin("attention.self.key")?,
                value: lin("attention.self.value")?,
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
        Ok(Self {
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

    /// The kernel each layer's six matrices run on, e.g. `["q4_0", ...]` per layer.
    pub fn kernels(&self) -> Vec<[&'static str; 6]> {
        self.layers
            .iter()
            .map(|l| {
                [
                    l.query.kind(),
                    l.key.kind(),
                    l.value.kind(),
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
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
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
        let mut x = vec![0.0f32; n * h];
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
        self.embedding_norm.apply(&mut x);
        let scale = 1.0 / (d as f32).sqrt();
        for layer in &self.layers {
            let q = layer.query.forward(&x, n)?;
            let k = layer.key.forward(&x, n)?;
            let v = layer.value.forward(&x, n)?;
            let mut context = vec![0.0f32; n * h];
            // Each (sequence, head) pair is independent.
            let jobs: Vec<(usize, usize)> = (0..ids.len())
                .flat_map(|b| (0..heads).map(move |hd| (b, hd)))
                .collect();
            let parts: Vec<(usize, usize, Vec<f32>)> = jobs
                .par_iter()
                .map(|&(b, hd)| {
                    let (o, len) = (offsets[b], ids[b].len());
                    let span = |j: usize| (o + j) * h + hd * d..(o + j) * h + (hd + 1) * d;
                    // This head's keys transposed to [d, len], so the scores of one query are `d` sweeps
                    // over contiguous rows (vectorized over keys); its values contiguous as [len, d].
                    let mut kt = vec![0.0f32; d * len];
                    let mut vh = Vec::with_capacity(len * d);
                    for j in 0..len {
                        for (c, kv) in k[span(j)].iter().enumerate() {
                            kt[c * len + j] = *kv;
                        }
                        vh.extend_from_slice(&v[span(j)]);
                    }
                    let mut out = vec![0.0f32; len * d];
                    let mut scores = vec![0.0f32; len];
                    for (i, out_i) in out.chunks_exact_mut(d).enumerate() {
                        scores.fill(0.0);
                        for (qc, row) in q[span(i)].iter().zip(kt.chunks_exact(len)) {
                            for (s, kv) in scores.iter_mut().zip(row) {
                                *s += qc * kv;
                            }
                        }
                        let max = scores
                            .iter()
                            .fold(f32::NEG_INFINITY, |m, s| m.max(*s * scale));
                        let mut total = 0.0;
                        for s in scores.iter_mut() {
                            *s = (*s * scale - max).exp();
                            total += *s;
                        }
                        let inv = 1.0 / total;
                        for (s, vj) in scores.iter().zip(vh.chunks_exact(d)) {
                            let p = s * inv;
                            for (c, vv) in out_i.iter_mut().zip(vj) {
                                *c += p * vv;
                            }
                        }
                    }
                    (b, hd, out)
                })
                .collect();
            for (b, hd, out) in parts {
                for i in 0..ids[b].len() {
                    let row = (offsets[b] + i) * h + hd * d;
                    context[row..row + d].copy_from_slice(&out[i * d..(i + 1) * d]);
                }
            }
            let mut attn = layer.output.forward(&context, n)?;
            for (a, r) in attn.iter_mut().zip(&x) {
                *a += r;
            }
            layer.attention_norm.apply(&mut attn);
            let mut inner = layer.intermediate.forward(&attn, n)?;
            activate(self.activation, &mut inner);
            let mut out = layer.ffn_output.forward(&inner, n)?;
            for (a, r) in out.iter_mut().zip(&attn) {
                *a += r;
            }
            layer.output_norm.apply(&mut out);
            x = out;
        }
        Ok(ids
            .iter()
            .enumerate()
            .map(|(b, seq)| x[offsets[b] * h..(offsets[b] + seq.len()) * h].to_vec())
            .collect())
    }

    /// Mean over tokens of each sequence's last hidden states (the classifier's pooling).
    ///
    /// # Shapes
    /// - returns `[batch][hidden]`.
    pub fn mean_pooled(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let h = self.config.hidden_size;
        Ok(self
            .forward(ids)?
            .into_iter()
            .map(|states| {
                let n = states.len() / h;
                (0..h)
                    .map(|j| (0..n).map(|t| states[t * h + j]).sum::<f32>() / n as f32)
                    .collect()
            })
            .collect())
    }
}
