//! `student-arch` owns the BERT encoder on Burn tensors, teacher and student alike: its config, its forward pass
//! with every intermediate the distillation losses need, loading and saving Hugging Face checkpoints (with the
//! one [`transpose()`] between Burn's and Hugging Face's linear layouts), the tokenizer, sentence embeddings, the
//! MLM head, and building a student from a teacher. The package keeps the design card's name.
//!
//! Architecture invariant: this crate depends on no other crate of the workspace, and its model code never
//! names a backend; [`device`] only maps a user's choice to a `Device` among the backends compiled in, and
//! [`gelu`] alone holds a backend extension (a fused GELU kernel for flex; every other backend runs Burn's).
//!
//! Backends are features: `flex` (the default), `ndarray`, `wgpu`, `tch`; with `default-features = false` name
//! at least one, or the crate does not compile. README's example, as a dependency sees it:
//!
//! ```no_run
//! use student_arch::{device::device, SentenceEncoder};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let encoder = SentenceEncoder::load(std::path::Path::new("all-MiniLM-L6-v2"), &device("flex")?)?;
//! let embeddings = encoder.embed(&["Distillation makes BERT smaller."], 32)?;
//! # let _ = embeddings;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

#[cfg(not(any(
    feature = "flex",
    feature = "ndarray",
    feature = "wgpu",
    feature = "tch"
)))]
compile_error!(
    "student-arch has no backend to run on: enable one of its features flex (the default), ndarray, wgpu or tch, \
     e.g. `student-arch = { version = \"0.1\", features = [\"flex\"] }`"
);

pub mod config;
pub mod defaults;
pub mod device;
pub mod embed;
pub mod error;
pub mod gelu;
pub mod io;
pub mod layouts;
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
