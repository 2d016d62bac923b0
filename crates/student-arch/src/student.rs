//! Building a student from a teacher: which layers to keep, an optional narrower shape, and DistilBERT's
//! initialisation by copying, or TinyBERT's seeded random initialisation.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::BertConfig;
use crate::error::{ArchError, Result};
use crate::model::BertModel;

/// Which teacher layers a student keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSelection {
    /// Teacher layers 0, 2, 4, … (DistilBERT: half the layers, every other one).
    EveryOther,
    /// These teacher layers, in order.
    Explicit(Vec<usize>),
    /// `n` layers, for a randomly initialised (narrow) student; copies nothing.
    Count(usize),
}

crate::config_defaults! {
    /// What the student looks like.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct StudentSpec {
        /// The layers.
        pub layers: LayerSelection = LayerSelection::EveryOther,
        /// A narrower hidden size (random init).
        pub hidden_size: Option<usize> = None,
        /// Heads, with `hidden_size`.
        pub num_attention_heads: Option<usize> = None,
        /// Feed-forward width.
        pub intermediate_size: Option<usize> = None,
        /// Remove the token-type embeddings (DistilBERT).
        /// segment-0 embedding is folded into the position embeddings, so single-segment inputs embed exactly as in
        /// the teacher.
        pub drop_token_types: bool = true,
        /// Remove the pooler (DistilBERT).
        pub drop_pooler: bool = true,
        /// Seed of the random initialisation.
        pub seed: u64 = 0,
    }
}

impl StudentSpec {
    /// The teacher layers kept (for copying) or, for [`LayerSelection::Count`], none.
    pub fn teacher_layers(&self, num_teacher: usize) -> Result<Vec<usize>> {
        let layers = match &self.layers {
            LayerSelection::EveryOther => (0..num_teacher).step_by(2).collect(),
            LayerSelection::Explicit(list) => list.clone(),
            LayerSelection::Count(_) => Vec::new(),
        };
        for (i, &l) in layers.iter().enumerate() {
            if l >= num_teacher {
                return Err(ArchError::InvalidConfig {
                    field: "layers",
                    message: format!("student layer {i} would copy teacher layer {l}, but the teacher has layers 0..{num_teacher}"),
                });
            }
        }
        if let LayerSelection::Explicit(list) = &self.layers {
            if list.is_empty() {
                return Err(ArchError::InvalidConfig {
                    field: "layers",
                    message: "the explicit list is empty".into(),
                });
            }
        }
        Ok(layers)
    }

    /// Whether the student differs in width from `teacher` (and so is randomly initialised).
    pub fn is_narrow(&self, teacher: &BertConfig) -> bool {
        self.hidden_size.is_some_and(|h| h != teacher.hidden_size)
            || self
                .num_attention_heads
                .is_some_and(|h| h != teacher.num_attention_heads)
            || self
                .intermediate_size
                .is_some_and(|h| h != teacher.intermediate_size)
    }

    /// The student's config.
    pub fn student_config(&self, teacher: &BertConfig) -> Result<BertConfig> {
        let mut c = teacher.clone();
        c.num_hidden_layers = match &self.layers {
            LayerSelection::Count(n) => *n,
            _ => self.teacher_layers(teacher.num_hidden_layers)?.len(),
        };
        if let Some(h) = self.hidden_size {
            c.hidden_size = h;
        }
        if let Some(h) = self.num_attention_heads {
            c.num_attention_heads = h;
        }
        if let Some(f) = self.intermediate_size {
            c.intermediate_size = f;
        }
        if self.drop_token_types {
            c.type_vocab_size = 0;
        }
        c.validate()?;
        Ok(c)
    }

    /// Builds the student. Same width as the teacher: embeddings and the selected layers are copied
    /// (DistilBERT). Narrower, or [`LayerSelection::Count`]: random initialisation with `seed` (TinyBERT).
    pub fn build(&self, teacher: &BertModel, device: &Device) -> Result<BertModel> {
        let config = self.student_config(&teacher.config)?;
        let copy =
            !self.is_narrow(&teacher.config) && !matches!(self.layers, LayerSelection::Count(_));
        if !copy {
            return config.init_random(
                !self.drop_pooler && teacher.pooler.is_some(),
                self.seed,
                device,
            );
        }
        let layers = self.teacher_layers(teacher.config.num_hidden_layers)?;
        let mut embeddings = teacher.embeddings.clone();
        if self.drop_token_types {
            if let Some(types) = embeddings.token_type_embeddings.take() {
                let [_, hidden] = types.weight.dims();
                let segment0: Tensor<2> = types.weight.val().slice(0..1).reshape([1, hidden]);
                let positions = embeddings.position_embeddings.weight.val() + segment0;
                embeddings.position_embeddings.weight = Param::from_tensor(positions);
            }
        }
        let model = BertModel {
            embeddings,
            layers: layers.iter().map(|&l| teacher.layers[l].clone()).collect(),
            pooler: if self.drop_pooler {
                None
            } else {
                teacher.pooler.clone()
            },
            config,
        };
        // `fork` (not `to_device`) keeps the parameters trainable on the destination; `train` turns autodiff
        // on when the destination is an autodiff device and the teacher lived on a plain one.
        let model = model.fork(device);
        Ok(if device.is_autodiff() {
            model.train()
        } else {
            model
        })
    }
}

/// Parameter count and size of a model, computed from its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSize {
    /// Number of parameters.
    pub params: usize,
    /// Bytes of the parameters in f32.
    pub bytes: usize,
}

/// Counts the parameters of any module by visiting its tensors.
pub fn model_size<M: Module>(model: &M) -> ModelSize {
    let params = model.num_params();
    ModelSize {
        params,
        bytes: params * std::mem::size_of::<f32>(),
    }
}
