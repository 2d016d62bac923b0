//! `student-arch` owns the BERT encoder on Burn tensors, teacher and student alike: its config, its forward pass
//! with every intermediate the distillation losses need, loading and saving Hugging Face checkpoints (with the
//! one [`transpose()`] between Burn's and Hugging Face's linear layouts), the tokenizer, sentence embeddings, the
//! MLM head, and building a student from a teacher. The package keeps the design card's name.
//!
//! Architecture invariant: this crate depends on no other crate of the workspace, and its model code never
//! names a backend; [`device`] only maps a user's choice to a `Device` among the backends compiled in, and
//! [`gelu`] alone holds a backend extension (a fused GELU kernel for flex; every other backend runs Burn's).
#![warn(missing_docs)]

pub mod config;
pub mod defaults;
pub mod device;
pub mod embed;
pub mod error;
pub mod gelu;
pub mod io;
pub mod mlm;
pub mod model;
pub mod pooling;
pub mod student;
pub mod tokenizer;
pub mod transpose;
pub mod weights;

pub use config::{BertConfig, HiddenAct};
pub use embed::SentenceEncoder;
pub use error::{ArchError, Result};
pub use mlm::{gather_positions, MlmHead};
pub use model::{BertInput, BertModel, BertOutput};
pub use student::{model_size, LayerSelection, ModelSize, StudentSpec};
pub use tokenizer::BertTokenizer;
pub use transpose::transpose;
pub use weights::{load_pretrained, save_pretrained, LoadReport};
