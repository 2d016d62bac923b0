//! DistilBERT's cosine embedding loss between student and teacher hidden states.

use burn::tensor::{Int, Tensor};

use crate::error::{as_target, mask_dims, same_dims, Result};
use crate::soft_target::masked_mean;

/// Added to each squared norm, as in PyTorch's `CosineEmbeddingLoss`.
pub const COSINE_EPS: f64 = 1e-12;

/// `1 − cos(s, t)` per token, with PyTorch's `CosineEmbeddingLoss` formula:
/// `cos = s·t / sqrt((‖s‖² + ε)(‖t‖² + ε))`.
///
/// # Shapes
/// - student, teacher: `[batch_size, seq_length, hidden_size]`
/// - output: `[batch_size, seq_length]`
pub fn cosine_distance(student: Tensor<3>, teacher: Tensor<3>) -> Result<Tensor<2>> {
    same_dims("cosine_embedding_loss", student.dims(), teacher.dims())?;
    let [b, s, _] = student.dims();
    let teacher = as_target(teacher, &student);
    let dot = (student.clone() * teacher.clone()).sum_dim(2);
    let ss = student.square().sum_dim(2).add_scalar(COSINE_EPS);
    let tt = teacher.square().sum_dim(2).add_scalar(COSINE_EPS);
    let cos = dot / (ss * tt).sqrt();
    Ok(cos.reshape([b, s]).neg().add_scalar(1.0))
}

/// Mean of `1 − cos` over the real (non-padding) tokens.
///
/// # Shapes
/// - student, teacher: `[batch_size, seq_length, hidden_size]`
/// - attention_mask: `[batch_size, seq_length]`
/// - output: `[1]`
pub fn cosine_embedding_loss(
    student: Tensor<3>,
    teacher: Tensor<3>,
    attention_mask: Tensor<2, Int>,
) -> Result<Tensor<1>> {
    let [b, s, _] = student.dims();
    mask_dims("cosine_embedding_loss", attention_mask.dims(), b, s)?;
    Ok(masked_mean(
        cosine_distance(student, teacher)?,
        attention_mask.float(),
    ))
}
