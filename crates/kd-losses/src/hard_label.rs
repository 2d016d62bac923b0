//! Cross-entropy with hard labels: MLM over masked positions (an ignore index for the rest), and sequence
//! classification.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::error::{LossError, Result};
use crate::soft_target::masked_mean;

/// Labels equal to this are ignored (PyTorch's and Hugging Face's convention).
pub const IGNORE_INDEX: i64 = -100;

/// Masked-language-model cross-entropy: the mean negative log-likelihood of the label at every position whose
/// label is not [`IGNORE_INDEX`]. A batch without any masked position gives 0.
///
/// # Shapes
/// - logits: `[batch_size, seq_length, vocab_size]`
/// - labels: `[batch_size, seq_length]`, a vocabulary id or [`IGNORE_INDEX`]
/// - output: `[1]`
pub fn mlm_cross_entropy(logits: Tensor<3>, labels: Tensor<2, Int>) -> Result<Tensor<1>> {
    let [b, s, v] = logits.dims();
    if labels.dims() != [b, s] {
        return Err(LossError::Shape {
            op: "mlm_cross_entropy",
            message: format!(
                "labels have shape {:?}, logits {:?}; expected [{b}, {s}]",
                labels.dims(),
                [b, s, v]
            ),
        });
    }
    let keep = labels.clone().not_equal_elem(IGNORE_INDEX);
    let index = labels.clamp(0, v as i64 - 1).reshape([b, s, 1]);
    let nll = log_softmax(logits, 2)
        .gather(2, index)
        .reshape([b, s])
        .neg();
    Ok(masked_mean(nll, keep.float()))
}

/// Sequence-classification cross-entropy, mean over the batch.
///
/// # Shapes
/// - logits: `[batch_size, num_classes]`
/// - labels: `[batch_size]`
/// - output: `[1]`
pub fn classification_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
) -> Result<Tensor<1>> {
    let [b, c] = logits.dims();
    if labels.dims() != [b] {
        return Err(LossError::Shape {
            op: "classification_cross_entropy",
            message: format!(
                "labels have shape {:?}, expected [{b}] for logits [{b}, {c}]",
                labels.dims()
            ),
        });
    }
    let index = labels.clamp(0, c as i64 - 1).reshape([b, 1]);
    Ok(log_softmax(logits, 1)
        .gather(1, index)
        .reshape([b])
        .neg()
        .mean())
}
