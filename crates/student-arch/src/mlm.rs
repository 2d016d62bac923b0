//! BERT's masked-language-model head: `dense → activation → LayerNorm`, then a decoder tied to the encoder's
//! word embeddings, plus a per-token bias. It reads only the positions that were masked, so a step costs
//! `masked × vocab` rather than `tokens × vocab`.
//!
//! Key table (Hugging Face `BertForMaskedLM` → [`MlmHead`]):
//!
//! | Hugging Face | `MlmHead` |
//! |---|---|
//! | `cls.predictions.transform.dense.{weight,bias}` | `dense` (weight transposed) |
//! | `cls.predictions.transform.LayerNorm.{weight,bias}` or `{gamma,beta}` | `layer_norm.{gamma,beta}` |
//! | `cls.predictions.bias` | `bias` |
//! | `cls.predictions.decoder.weight` | not read: tied to `embeddings.word_embeddings.weight` |

use std::collections::BTreeMap;
use std::path::Path;

use crate::gelu::gelu;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::{gelu_approximate, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::SafeTensors;

use crate::config::{BertConfig, HiddenAct};
use crate::error::{ArchError, Result};
use crate::model::BertModel;
use crate::model::{Builder, Init, ParamSource, RandomInit};
use crate::weights::{named_tensors, safetensors_bytes, to_f32, weights_bytes, WEIGHTS_FILE};

/// The prefix of the head's tensors in a Hugging Face file.
pub const MLM_PREFIX: &str = "cls.predictions";

/// The MLM head. The decoder weight is not a parameter of the head: it is the word-embedding table of the
/// encoder the head sits on, passed to [`MlmHead::forward`].
#[derive(Module, Debug)]
pub struct MlmHead {
    /// `hidden → hidden`.
    pub dense: Linear,
    /// LayerNorm after the activation.
    pub layer_norm: LayerNorm,
    /// `[vocab_size]`, added to the decoder's output.
    pub bias: Param<Tensor<1>>,
    /// The activation (the encoder's `hidden_act`).
    #[module(skip)]
    pub activation: HiddenAct,
}

struct HeadSource<'a> {
    file: SafeTensors<'a>,
    problems: Vec<String>,
}

impl ParamSource for HeadSource<'_> {
    fn take(&mut self, key: &str, shape: &[usize], _init: Init) -> Vec<f32> {
        let n = shape.iter().product();
        let mut keys = vec![key.to_string()];
        if let Some(stem) = key.strip_suffix("LayerNorm.weight") {
            keys.push(format!("{stem}LayerNorm.gamma"));
        } else if let Some(stem) = key.strip_suffix("LayerNorm.bias") {
            keys.push(format!("{stem}LayerNorm.beta"));
        }
        for k in keys {
            let Ok(view) = self.file.tensor(&k) else {
                continue;
            };
            if view.shape() != shape {
                self.problems.push(format!(
                    "{k} has shape {:?}, expected {shape:?}",
                    view.shape()
                ));
                return vec![0.0; n];
            }
            return match to_f32(view.dtype(), view.data()) {
                Ok(v) => v,
                Err(dtype) => {
                    self.problems
                        .push(format!("{k} has dtype {dtype}, expected F32, F16 or BF16"));
                    vec![0.0; n]
                }
            };
        }
        self.problems.push(format!("missing {key} {shape:?}"));
        vec![0.0; n]
    }
}

fn build<S: ParamSource>(source: &mut S, config: &BertConfig, device: &Device) -> Result<MlmHead> {
    config.validate()?;
    let h = config.hidden_size;
    let mut b = Builder {
        source,
        device,
        config,
    };
    let dense = b.linear(&format!("{MLM_PREFIX}.transform.dense"), h, h);
    let layer_norm = b.layer_norm(&format!("{MLM_PREFIX}.transform.LayerNorm"));
    let bias = b.tensor(
        &format!("{MLM_PREFIX}.bias"),
        [config.vocab_size],
        Init::Zeros,
    );
    Ok(MlmHead {
        dense,
        layer_norm,
        bias: Param::from_tensor(bias),
        activation: config.activation()?,
    })
}

impl MlmHead {
    /// A new head for an encoder of `config`: Normal(0, `initializer_range`) dense weights, zero biases, unit
    /// LayerNorm, as BERT initialises it. Same seed, same head.
    pub fn init(config: &BertConfig, seed: u64, device: &Device) -> Result<Self> {
        build(&mut RandomInit::new(seed ^ 0x004D_4C4D), config, device)
    }

    /// Whether the safetensors file at `path` holds an MLM head (`cls.predictions.transform.dense.weight`).
    /// A missing `model.safetensors` is looked for in the directory's other layouts ([`weights_bytes`]).
    pub fn file_has_head(path: &Path) -> bool {
        let other_layout = || {
            path.parent()
                .filter(|_| path.file_name() == Some(WEIGHTS_FILE.as_ref()))
                .and_then(|dir| weights_bytes(dir).ok())
                .map(|(_, bytes)| bytes)
        };
        std::fs::read(path)
            .ok()
            .or_else(other_layout)
            .and_then(|bytes| {
                SafeTensors::deserialize(&bytes).ok().map(|f| {
                    f.tensor(&format!("{MLM_PREFIX}.transform.dense.weight"))
                        .is_ok()
                })
            })
            .unwrap_or(false)
    }

    /// Loads the head of a Hugging Face BERT directory whose `model.safetensors` holds `cls.predictions.*`
    /// (a `BertForMaskedLM` checkpoint, or a directory written by [`MlmHead::save_with_encoder`]).
    pub fn load(dir: &Path, config: &BertConfig, device: &Device) -> Result<Self> {
        let (path, bytes) = weights_bytes(dir)?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| ArchError::CorruptWeights {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if file
            .tensor(&format!("{MLM_PREFIX}.transform.dense.weight"))
            .is_err()
        {
            return Err(ArchError::MissingFile {
                path: path.clone(),
                hint: format!(
                    "it has no MLM head ({MLM_PREFIX}.*); fit one with `cargo xtask distill --stage general`"
                ),
            });
        }
        let mut source = HeadSource {
            file,
            problems: Vec::new(),
        };
        let head = build(&mut source, config, device)?;
        if !source.problems.is_empty() {
            return Err(ArchError::WeightMismatch {
                path,
                problems: source.problems,
            });
        }
        Ok(head)
    }

    /// The head's tensors under their Hugging Face names, in Hugging Face's layout.
    pub fn named_tensors(&self) -> Result<crate::weights::NamedTensors> {
        let host = |t: Tensor<1>| -> Result<Vec<f32>> {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| ArchError::Data {
                    what: "MLM head".into(),
                    message: format!("{e:?}"),
                })
        };
        let [d_in, d_out] = self.dense.weight.dims();
        let w = host(self.dense.weight.val().reshape([d_in * d_out]))?;
        let t = crate::transpose::transpose(&w, d_in, d_out);
        let mut out = BTreeMap::new();
        let p = MLM_PREFIX;
        out.insert(
            format!("{p}.transform.dense.weight"),
            (vec![d_out, d_in], t),
        );
        if let Some(b) = &self.dense.bias {
            out.insert(
                format!("{p}.transform.dense.bias"),
                (vec![d_out], host(b.val())?),
            );
        }
        let d = self.layer_norm.gamma.dims()[0];
        out.insert(
            format!("{p}.transform.LayerNorm.weight"),
            (vec![d], host(self.layer_norm.gamma.val())?),
        );
        if let Some(b) = &self.layer_norm.beta {
            out.insert(
                format!("{p}.transform.LayerNorm.bias"),
                (vec![d], host(b.val())?),
            );
        }
        let v = self.bias.dims()[0];
        out.insert(format!("{p}.bias"), (vec![v], host(self.bias.val())?));
        Ok(out)
    }

    /// Writes `encoder` and this head as one Hugging Face directory (`config.json` + `model.safetensors` with
    /// `cls.predictions.*`), each file atomically. [`crate::load_pretrained`] opens it as an encoder (skipping
    /// the head) and [`MlmHead::load`] finds the head.
    pub fn save_with_encoder(&self, encoder: &BertModel, dir: &Path) -> Result<()> {
        let mut tensors = named_tensors(encoder)?;
        tensors.extend(self.named_tensors()?);
        crate::io::write_atomic(&dir.join(WEIGHTS_FILE), &safetensors_bytes(&tensors)?)?;
        crate::io::write_atomic(
            &dir.join(crate::weights::CONFIG_FILE),
            encoder.config.to_hf_json().as_bytes(),
        )
    }

    /// Logits over the vocabulary at the given hidden states.
    ///
    /// # Shapes
    /// - hidden: `[positions, hidden_size]`
    /// - word_embeddings: `[vocab_size, hidden_size]` (the tied decoder)
    /// - output: `[positions, vocab_size]`
    pub fn forward(&self, hidden: Tensor<2>, word_embeddings: Tensor<2>) -> Tensor<2> {
        let x = self.dense.forward(hidden);
        let x = match self.activation {
            HiddenAct::Gelu => gelu(x),
            HiddenAct::GeluTanh => gelu_approximate(x),
            HiddenAct::Relu => relu(x),
        };
        let x = self.layer_norm.forward(x);
        let vocab = self.bias.dims()[0];
        x.matmul(word_embeddings.transpose()) + self.bias.val().reshape([1, vocab])
    }
}

/// The hidden states at `positions`, flat indices into `batch_size × seq_length`.
///
/// # Shapes
/// - hidden: `[batch_size, seq_length, hidden_size]`
/// - output: `[positions.len(), hidden_size]`
pub fn gather_positions(hidden: Tensor<3>, positions: &[usize]) -> Result<Tensor<2>> {
    let [b, s, h] = hidden.dims();
    if positions.is_empty() {
        return Err(ArchError::BadInput {
            op: "gather_positions",
            message: "no positions to gather; mask at least one token".into(),
        });
    }
    if let Some(&bad) = positions.iter().find(|&&p| p >= b * s) {
        return Err(ArchError::BadInput {
            op: "gather_positions",
            message: format!("position {bad} is outside the batch of {b} × {s} tokens"),
        });
    }
    let device = hidden.device();
    let index: Tensor<1, Int> = Tensor::from_data(
        TensorData::new(
            positions.iter().map(|&p| p as i64).collect::<Vec<_>>(),
            [positions.len()],
        ),
        &device,
    );
    Ok(hidden.reshape([b * s, h]).select(0, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_config() -> BertConfig {
        BertConfig {
            max_position_embeddings: 16,
            type_vocab_size: 0,
            ..BertConfig::new(11, 8, 1, 2, 16)
        }
    }

    #[test]
    fn head_logits_match_a_hand_computation() {
        let device = Device::default();
        let config = tiny_config();
        let head = MlmHead::init(&config, 3, &device).unwrap();
        let emb: Tensor<2> = Tensor::from_data(
            TensorData::new(
                (0..88)
                    .map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0)
                    .collect::<Vec<_>>(),
                [11, 8],
            ),
            &device,
        );
        let x: Tensor<2> = Tensor::from_data(
            TensorData::new(
                (0..16).map(|i| (i as f32 - 7.5) / 4.0).collect::<Vec<_>>(),
                [2, 8],
            ),
            &device,
        );
        let logits: Vec<f32> = head
            .forward(x.clone(), emb.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // By hand: dense, exact GELU, LayerNorm (unit gamma, zero beta, eps 1e-12), dot with each embedding row.
        let w: Vec<f32> = head
            .dense
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let xv: Vec<f32> = x.into_data().try_to_vec::<f32>().unwrap();
        let ev: Vec<f32> = emb.into_data().try_to_vec::<f32>().unwrap();
        for r in 0..2 {
            let mut y = [0f64; 8];
            for (o, yo) in y.iter_mut().enumerate() {
                let z: f64 = (0..8)
                    .map(|i| xv[r * 8 + i] as f64 * w[i * 8 + o] as f64)
                    .sum();
                *yo = 0.5 * z * (1.0 + erf(z / 2f64.sqrt()));
            }
            let mean = y.iter().sum::<f64>() / 8.0;
            let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 8.0;
            let n: Vec<f64> = y
                .iter()
                .map(|v| (v - mean) / (var + 1e-12).sqrt())
                .collect();
            for t in 0..11 {
                let expected: f64 = (0..8).map(|i| n[i] * ev[t * 8 + i] as f64).sum();
                let got = logits[r * 11 + t] as f64;
                assert!(
                    (got - expected).abs() < 1e-4,
                    "row {r} token {t}: {got} vs {expected}"
                );
            }
        }
    }

    // Abramowitz–Stegun 7.1.26 is too coarse for 1e-4 after LayerNorm; use a series that converges for |x| < 3.
    fn erf(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 3.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn saved_head_loads_back_and_the_encoder_still_opens() {
        let device = Device::default();
        let config = tiny_config();
        let encoder = config.init_random(false, 1, &device).unwrap();
        let head = MlmHead::init(&config, 5, &device).unwrap();
        let dir = std::env::temp_dir().join(format!("mlm-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        head.save_with_encoder(&encoder, &dir).unwrap();
        let (reloaded, report) = crate::load_pretrained(&dir, &device).unwrap();
        assert!(
            report.skipped.iter().any(|k| k == "cls.predictions.bias"),
            "{:?}",
            report.skipped
        );
        assert_eq!(reloaded.num_layers(), 1);
        let back = MlmHead::load(&dir, &reloaded.config, &device).unwrap();
        assert_eq!(head.named_tensors().unwrap(), back.named_tensors().unwrap());
        assert!(MlmHead::file_has_head(&dir.join(WEIGHTS_FILE)));
        // A directory without a head says how to get one.
        crate::save_pretrained(&encoder, &dir).unwrap();
        let err = MlmHead::load(&dir, &config, &device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no MLM head") && err.contains("--stage general"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn gather_positions_picks_flat_rows_and_rejects_bad_ones() {
        let device = Device::default();
        let hidden: Tensor<3> = Tensor::from_data(
            TensorData::new((0..24).map(|i| i as f32).collect::<Vec<_>>(), [2, 3, 4]),
            &device,
        );
        let rows: Vec<f32> = gather_positions(hidden.clone(), &[4, 0])
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(rows, vec![16.0, 17.0, 18.0, 19.0, 0.0, 1.0, 2.0, 3.0]);
        assert!(gather_positions(hidden.clone(), &[6]).is_err());
        assert!(gather_positions(hidden, &[]).is_err());
    }
}
