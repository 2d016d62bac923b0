//! Compression of a saved classifier ([`chain`] runs every method in one command): Q-BERT's Hessian [`sensitivity`] per block, [`quantize`] (uniform or
//! mixed precision under a budget, written as `model.quant.safetensors`), and quantization-aware fine-tuning
//! ([`qat`]) before export; the quantize [`report`]; vocabulary pruning ([`prune`]), the main lever on size.

pub mod chain;
pub mod prune;
pub mod qat;
pub mod quantize;
pub mod report;
pub mod sensitivity;
