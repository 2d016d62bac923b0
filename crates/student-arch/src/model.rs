//! The BERT encoder: embeddings, post-LN transformer layers with separate Q, K, V and O projections, and an
//! optional pooler. Its forward pass returns every intermediate that the distillation losses need.

use crate::gelu::gelu;
use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu_approximate, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{BertConfig, HiddenAct};
use crate::error::{ArchError, Result};

/// The value added to attention scores at padding keys. Its exponential underflows to exactly 0 in f32, and
/// TinyBERT's rule of zeroing scores `<= -1e2` recognises it.
pub const MASKED_SCORE: f32 = -1e4;

/// What the encoder reads.
///
/// # Shapes
/// - `input_ids`: `[batch_size, seq_length]`
/// - `attention_mask`: `[batch_size, seq_length]`, 1 for real tokens and 0 for padding
/// - `token_type_ids`: `[batch_size, seq_length]`, or `None` for all zeros
#[derive(Clone, Debug)]
pub struct BertInput {
    /// Word-piece ids.
    pub input_ids: Tensor<2, Int>,
    /// 1 where a token is real, 0 where it is padding.
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids; `None` means segment 0 everywhere.
    pub token_type_ids: Option<Tensor<2, Int>>,
}

impl BertInput {
    /// Pads `sequences` to the longest one (dynamic padding) and moves them to `device`.
    ///
    /// Fails on an empty batch, an empty sequence, or an id outside `vocab_size`.
    pub fn from_token_ids(
        sequences: &[Vec<u32>],
        pad_token_id: u32,
        vocab_size: usize,
        device: &Device,
    ) -> Result<Self> {
        if sequences.is_empty() {
            return Err(ArchError::BadInput {
                op: "BertInput::from_token_ids",
                message: "the batch is empty".into(),
            });
        }
        let seq_length = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if let Some(i) = sequences.iter().position(Vec::is_empty) {
            return Err(ArchError::BadInput {
                op: "BertInput::from_token_ids",
                message: format!(
                    "sequence {i} has no tokens; every sequence needs at least [CLS] and [SEP]"
                ),
            });
        }
        let batch_size = sequences.len();
        let mut ids = Vec::with_capacity(batch_size * seq_length);
        let mut mask = Vec::with_capacity(batch_size * seq_length);
        for (i, seq) in sequences.iter().enumerate() {
            if let Some(&bad) = seq.iter().find(|&&id| id as usize >= vocab_size) {
                return Err(ArchError::BadInput {
                    op: "BertInput::from_token_ids",
                    message: format!(
                        "sequence {i} holds token id {bad}, outside the vocabulary of {vocab_size}"
                    ),
                });
            }
            ids.extend(seq.iter().map(|&id| id as i64));
            ids.extend(std::iter::repeat_n(
                pad_token_id as i64,
                seq_length - seq.len(),
            ));
            mask.extend(std::iter::repeat_n(1i64, seq.len()));
            mask.extend(std::iter::repeat_n(0i64, seq_length - seq.len()));
        }
        let shape = [batch_size, seq_length];
        Ok(Self {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
            token_type_ids: None,
        })
    }

    /// `[batch_size, seq_length]`.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}

/// Everything the encoder computed, named.
///
/// # Shapes
/// - `embedding_output`: `[batch_size, seq_length, hidden_size]`
/// - `hidden_states[l]`: `[batch_size, seq_length, hidden_size]`, the output of layer `l`
/// - `attention_probs[l]`: `[batch_size, num_heads, seq_length, seq_length]`, softmax over the last dim
/// - `attention_scores[l]`: the same shape, before softmax, with [`MASKED_SCORE`] added at padding keys
/// - `pooled`: `[batch_size, hidden_size]` when the encoder has a pooler
#[derive(Clone, Debug)]
pub struct BertOutput {
    /// Output of the embedding LayerNorm.
    pub embedding_output: Tensor<3>,
    /// The output of every transformer layer, first to last.
    pub hidden_states: Vec<Tensor<3>>,
    /// Every layer's attention probabilities per head.
    pub attention_probs: Vec<Tensor<4>>,
    /// Every layer's scaled pre-softmax attention scores per head, padding masked.
    pub attention_scores: Vec<Tensor<4>>,
    /// tanh(W·h_[CLS] + b), when the encoder has a pooler.
    pub pooled: Option<Tensor<2>>,
}

impl BertOutput {
    /// The last layer's hidden states.
    pub fn last_hidden_state(&self) -> Tensor<3> {
        self.hidden_states
            .last()
            .cloned()
            .unwrap_or_else(|| self.embedding_output.clone())
    }
}

/// Word, position and (optional) token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab_size, hidden_size]`.
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, hidden_size]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, hidden_size]`; `None` in a DistilBERT-style student.
    pub token_type_embeddings: Option<Embedding>,
    /// The embedding LayerNorm.
    pub layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// # Shapes
    /// - input: `[batch_size, seq_length]` ids
    /// - output: `[batch_size, seq_length, hidden_size]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let [_, seq_length] = input_ids.dims();
        let device = input_ids.device();
        let words = self.word_embeddings.forward(input_ids);
        let positions = Tensor::<1, Int>::arange(0..seq_length as i64, &device).unsqueeze::<2>();
        let mut sum = words + self.position_embeddings.forward(positions);
        if let Some(types) = &self.token_type_embeddings {
            sum = match token_type_ids {
                Some(ids) => sum + types.forward(ids),
                None => {
                    let [_, hidden] = types.weight.dims();
                    sum + types.weight.val().slice(0..1).reshape([1, 1, hidden])
                }
            };
        }
        self.layer_norm.forward(sum)
    }
}

/// Multi-head self-attention with its output projection, residual and LayerNorm (BERT's `attention` block).
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Q projection, `hidden → hidden`.
    pub query: Linear,
    /// K projection, `hidden → hidden`.
    pub key: Linear,
    /// V projection, `hidden → hidden`.
    pub value: Linear,
    /// O projection, `hidden → hidden`.
    pub output: Linear,
    /// LayerNorm after the residual.
    pub layer_norm: LayerNorm,
    /// Number of heads.
    pub num_heads: usize,
}

/// One attention block's results.
#[derive(Clone, Debug)]
pub struct AttentionOutput {
    /// `[batch_size, seq_length, hidden_size]`.
    pub hidden: Tensor<3>,
    /// `[batch_size, num_heads, seq_length, seq_length]`.
    pub probs: Tensor<4>,
    /// `[batch_size, num_heads, seq_length, seq_length]`, before softmax.
    pub scores: Tensor<4>,
}

impl BertAttention {
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, hidden_size]`
    /// - additive_mask: `[batch_size, 1, 1, seq_length]`, 0 for real keys and [`MASKED_SCORE`] for padding
    pub fn forward(&self, hidden: Tensor<3>, additive_mask: Tensor<4>) -> AttentionOutput {
        let [batch_size, seq_length, hidden_size] = hidden.dims();
        let head_dim = hidden_size / self.num_heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch_size, seq_length, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query.forward(hidden.clone()));
        let k = split(self.key.forward(hidden.clone()));
        let v = split(self.value.forward(hidden.clone()));
        let scores = q.matmul(k.transpose()).div_scalar((head_dim as f64).sqrt()) + additive_mask;
        let probs = softmax(scores.clone(), 3);
        let context =
            probs
                .clone()
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([batch_size, seq_length, hidden_size]);
        let hidden = self
            .layer_norm
            .forward(self.output.forward(context) + hidden);
        AttentionOutput {
            hidden,
            probs,
            scores,
        }
    }
}

/// One post-LN transformer layer: attention, then the feed-forward block.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// The attention block.
    pub attention: BertAttention,
    /// `hidden → intermediate`.
    pub intermediate: Linear,
    /// `intermediate → hidden`.
    pub output: Linear,
    /// LayerNorm after the feed-forward residual.
    pub layer_norm: LayerNorm,
    /// The feed-forward activation.
    #[module(skip)]
    pub activation: HiddenAct,
}

impl BertLayer {
    /// # Shapes
    /// - hidden: `[batch_size, seq_length, hidden_size]`
    /// - additive_mask: `[batch_size, 1, 1, seq_length]`
    pub fn forward(&self, hidden: Tensor<3>, additive_mask: Tensor<4>) -> AttentionOutput {
        let attn = self.attention.forward(hidden, additive_mask);
        let inner = self.intermediate.forward(attn.hidden.clone());
        let inner = match self.activation {
            HiddenAct::Gelu => gelu(inner),
            HiddenAct::GeluTanh => gelu_approximate(inner),
            HiddenAct::Relu => relu(inner),
        };
        let hidden = self
            .layer_norm
            .forward(self.output.forward(inner) + attn.hidden);
        AttentionOutput { hidden, ..attn }
    }
}

/// A BERT encoder as Hugging Face's `BertModel` defines it.
#[derive(Module, Debug)]
pub struct BertModel {
    /// The embedding block.
    pub embeddings: BertEmbeddings,
    /// The transformer layers.
    pub layers: Vec<BertLayer>,
    /// The pooler's dense layer (`tanh` applied), if the checkpoint has one.
    pub pooler: Option<Linear>,
    /// The config this model was built from.
    #[module(skip)]
    pub config: BertConfig,
}

/// The broadcastable additive mask of [`BertAttention::forward`].
///
/// # Shapes
/// - attention_mask: `[batch_size, seq_length]`
/// - output: `[batch_size, 1, 1, seq_length]`
pub fn additive_attention_mask(attention_mask: Tensor<2, Int>) -> Tensor<4> {
    let [batch_size, seq_length] = attention_mask.dims();
    let keep = attention_mask.float();
    (keep.neg() + 1.0)
        .mul_scalar(MASKED_SCORE)
        .reshape([batch_size, 1, 1, seq_length])
}

impl BertModel {
    /// Checks that `input` fits this model: positions within `max_position_embeddings`, matching shapes.
    pub fn validate_input(&self, input: &BertInput) -> Result<()> {
        let [batch_size, seq_length] = input.input_ids.dims();
        if batch_size == 0 || seq_length == 0 {
            return Err(ArchError::BadInput {
                op: "BertModel::forward",
                message: format!(
                    "input_ids has shape [{batch_size}, {seq_length}]; both must be positive"
                ),
            });
        }
        if seq_length > self.config.max_position_embeddings {
            return Err(ArchError::BadInput {
                op: "BertModel::forward",
                message: format!(
                    "sequence length {seq_length} exceeds max_position_embeddings {}; truncate the input",
                    self.config.max_position_embeddings
                ),
            });
        }
        if input.attention_mask.dims() != [batch_size, seq_length] {
            return Err(ArchError::BadInput {
                op: "BertModel::forward",
                message: format!(
                    "attention_mask has shape {:?}, input_ids has [{batch_size}, {seq_length}]",
                    input.attention_mask.dims()
                ),
            });
        }
        if let Some(t) = &input.token_type_ids {
            if t.dims() != [batch_size, seq_length] {
                return Err(ArchError::BadInput {
                    op: "BertModel::forward",
                    message: format!(
                        "token_type_ids has shape {:?}, input_ids has [{batch_size}, {seq_length}]",
                        t.dims()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs the encoder. Call [`BertModel::validate_input`] first on untrusted input, or use
    /// [`BertModel::try_forward`].
    ///
    /// # Shapes
    /// - input: see [`BertInput`]
    /// - output: see [`BertOutput`]
    pub fn forward(&self, input: BertInput) -> BertOutput {
        let additive_mask = additive_attention_mask(input.attention_mask);
        let embedding_output = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        let mut hidden = embedding_output.clone();
        let n = self.layers.len();
        let (mut hidden_states, mut attention_probs, mut attention_scores) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for layer in &self.layers {
            let out = layer.forward(hidden, additive_mask.clone());
            hidden = out.hidden;
            hidden_states.push(hidden.clone());
            attention_probs.push(out.probs);
            attention_scores.push(out.scores);
        }
        let pooled = self.pooler.as_ref().map(|dense| {
            let [batch_size, _, hidden_size] = hidden.dims();
            let cls = hidden
                .clone()
                .slice([0..batch_size, 0..1])
                .reshape([batch_size, hidden_size]);
            dense.forward(cls).tanh()
        });
        BertOutput {
            embedding_output,
            hidden_states,
            attention_probs,
            attention_scores,
            pooled,
        }
    }

    /// [`BertModel::validate_input`], then [`BertModel::forward`].
    pub fn try_forward(&self, input: BertInput) -> Result<BertOutput> {
        self.validate_input(&input)?;
        Ok(self.forward(input))
    }

    /// Number of transformer layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

/// Where the parameters of a model being built come from: a checkpoint, or a seeded random initialiser.
///
/// Shapes are in Hugging Face's layout (`[out, in]` for linear weights).
pub trait ParamSource {
    /// The values of tensor `key` with `shape`. A source that cannot provide it records the problem and returns
    /// zeros, so that every problem of a checkpoint is reported at once.
    fn take(&mut self, key: &str, shape: &[usize], init: Init) -> Vec<f32>;
}

/// How a parameter is initialised when it is not loaded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal(0, std): weights and embeddings.
    Normal(f64),
    /// All zeros: biases, LayerNorm beta.
    Zeros,
    /// All ones: LayerNorm gamma.
    Ones,
}

/// Builds modules from a [`ParamSource`].
pub(crate) struct Builder<'a, S: ParamSource> {
    pub source: &'a mut S,
    pub device: &'a Device,
    pub config: &'a BertConfig,
}

impl<S: ParamSource> Builder<'_, S> {
    pub(crate) fn tensor<const D: usize>(
        &mut self,
        key: &str,
        shape: [usize; D],
        init: Init,
    ) -> Tensor<D> {
        let values = self.source.take(key, &shape, init);
        Tensor::from_data(TensorData::new(values, shape), self.device)
    }

    pub(crate) fn linear(&mut self, prefix: &str, d_input: usize, d_output: usize) -> Linear {
        let std = self.config.initializer_range;
        // Hugging Face stores [out, in]; Burn's Linear holds [in, out].
        let weight = self.source.take(
            &format!("{prefix}.weight"),
            &[d_output, d_input],
            Init::Normal(std),
        );
        let weight = crate::transpose::transpose(&weight, d_output, d_input);
        let weight = Tensor::from_data(TensorData::new(weight, [d_input, d_output]), self.device);
        let bias = self.tensor(&format!("{prefix}.bias"), [d_output], Init::Zeros);
        Linear {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(bias)),
        }
    }

    pub(crate) fn layer_norm(&mut self, prefix: &str) -> LayerNorm {
        let d = self.config.hidden_size;
        let mut norm = LayerNormConfig::new(d)
            .with_epsilon(self.config.layer_norm_eps)
            .init(self.device);
        norm.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [d], Init::Ones));
        norm.beta = Some(Param::from_tensor(self.tensor(
            &format!("{prefix}.bias"),
            [d],
            Init::Zeros,
        )));
        norm
    }

    fn embedding(&mut self, key: &str, rows: usize) -> Embedding {
        let weight = self.tensor(
            key,
            [rows, self.config.hidden_size],
            Init::Normal(self.config.initializer_range),
        );
        Embedding {
            weight: Param::from_tensor(weight),
        }
    }

    pub fn model(&mut self, with_pooler: bool) -> Result<BertModel> {
        let c = self.config.clone();
        c.validate()?;
        let activation = c.activation()?;
        let embeddings = BertEmbeddings {
            word_embeddings: self.embedding("embeddings.word_embeddings.weight", c.vocab_size),
            position_embeddings: self.embedding(
                "embeddings.position_embeddings.weight",
                c.max_position_embeddings,
            ),
            token_type_embeddings: (c.type_vocab_size > 0).then(|| {
                self.embedding("embeddings.token_type_embeddings.weight", c.type_vocab_size)
            }),
            layer_norm: self.layer_norm("embeddings.LayerNorm"),
        };
        let h = c.hidden_size;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                BertLayer {
                    attention: BertAttention {
                        query: self.linear(&format!("{p}.attention.self.query"), h, h),
                        key: self.linear(&format!("{p}.attention.self.key"), h, h),
                        value: self.linear(&format!("{p}.attention.self.value"), h, h),
                        output: self.linear(&format!("{p}.attention.output.dense"), h, h),
                        layer_norm: self.layer_norm(&format!("{p}.attention.output.LayerNorm")),
                        num_heads: c.num_attention_heads,
                    },
                    intermediate: self.linear(
                        &format!("{p}.intermediate.dense"),
                        h,
                        c.intermediate_size,
                    ),
                    output: self.linear(&format!("{p}.output.dense"), c.intermediate_size, h),
                    layer_norm: self.layer_norm(&format!("{p}.output.LayerNorm")),
                    activation,
                }
            })
            .collect();
        let pooler = with_pooler.then(|| self.linear("pooler.dense", h, h));
        Ok(BertModel {
            embeddings,
            layers,
            pooler,
            config: c,
        })
    }
}

/// A small seeded generator (SplitMix64 with Box–Muller), so that the same seed gives the same model on every
/// device and platform.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A [`ParamSource`] of random values, as BERT initialises them: Normal(0, initializer_range) weights, zero
/// biases, unit LayerNorm scales.
#[derive(Clone, Debug)]
pub struct RandomInit {
    rng: SeededRng,
}

impl RandomInit {
    /// A random source with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SeededRng::new(seed),
        }
    }
}

impl ParamSource for RandomInit {
    fn take(&mut self, _key: &str, shape: &[usize], init: Init) -> Vec<f32> {
        let n = shape.iter().product();
        match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal(std) => (0..n).map(|_| (self.rng.normal() * std) as f32).collect(),
        }
    }
}

impl BertConfig {
    /// A randomly initialised encoder with `seed`. Same seed, same weights, on any device.
    pub fn init_random(&self, with_pooler: bool, seed: u64, device: &Device) -> Result<BertModel> {
        let mut source = RandomInit::new(seed);
        Builder {
            source: &mut source,
            device,
            config: self,
        }
        .model(with_pooler)
    }
}
