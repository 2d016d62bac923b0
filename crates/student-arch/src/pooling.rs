//! Sentence embeddings as sentence-transformers computes them: mean pooling over real tokens, then L2
//! normalisation.

use burn::tensor::{Int, Tensor};

/// Mean of the hidden states over the tokens where `attention_mask` is 1.
///
/// # Shapes
/// - hidden: `[batch_size, seq_length, hidden_size]`
/// - attention_mask: `[batch_size, seq_length]`
/// - output: `[batch_size, hidden_size]`
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let [batch_size, seq_length, hidden_size] = hidden.dims();
    let mask = attention_mask.float().reshape([batch_size, seq_length, 1]);
    let summed = (hidden * mask.clone())
        .sum_dim(1)
        .reshape([batch_size, hidden_size]);
    let counts = mask.sum_dim(1).reshape([batch_size, 1]).clamp_min(1e-9);
    summed / counts
}

/// Each row divided by its L2 norm (norms below 1e-12 are clamped, as `torch.nn.functional.normalize` does).
///
/// # Shapes
/// - input: `[batch_size, hidden_size]`
/// - output: `[batch_size, hidden_size]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// [`mean_pool`] then [`l2_normalize`]: sentence-transformers' embedding.
///
/// # Shapes
/// - hidden: `[batch_size, seq_length, hidden_size]`
/// - attention_mask: `[batch_size, seq_length]`
/// - output: `[batch_size, hidden_size]`
pub fn sentence_embedding(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    l2_normalize(mean_pool(hidden, attention_mask))
}
