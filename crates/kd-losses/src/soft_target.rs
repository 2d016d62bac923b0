//! Soft-target losses on logits: Hinton's KL at temperature T (DistilBERT) and the soft cross-entropy of
//! TinyBERT's prediction layer.

use burn::nn::loss::Reduction;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

use crate::error::{as_target, mask_dims, same_dims, LossError, Result};

fn check_temperature(temperature: f64) -> Result<()> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(LossError::Config {
            field: "temperature",
            message: format!("must be positive, found {temperature}"),
        });
    }
    Ok(())
}

/// Masked mean over positions: `sum(values * mask) / max(sum(mask), 1)`.
///
/// # Shapes
/// - values: `[batch_size, seq_length]`
/// - mask: `[batch_size, seq_length]`, 1 where a position counts
pub(crate) fn masked_mean(values: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let count = mask.clone().sum().clamp_min(1.0);
    (values * mask).sum() / count
}

/// A per-row soft loss applied to every position of `[batch_size, seq_length, classes]` logits, averaged over the
/// positions where `mask` is 1.
pub(crate) fn masked_rows(
    op: &'static str,
    student: Tensor<3>,
    teacher: Tensor<3>,
    mask: Tensor<2, Int>,
    per_row: impl Fn(Tensor<2>, Tensor<2>) -> Result<Tensor<1>>,
) -> Result<Tensor<1>> {
    same_dims(op, student.dims(), teacher.dims())?;
    let [b, s, c] = student.dims();
    mask_dims(op, mask.dims(), b, s)?;
    let rows = per_row(student.reshape([b * s, c]), teacher.reshape([b * s, c]))?;
    Ok(masked_mean(rows.reshape([b, s]), mask.float()))
}

fn reduce(values: Tensor<1>, reduction: Reduction) -> Tensor<1> {
    match reduction {
        Reduction::Sum => values.sum(),
        Reduction::Mean | Reduction::BatchMean | Reduction::Auto => values.mean(),
    }
}

/// Hinton's soft-target loss, `T² · KL(softmax(t/T) ‖ softmax(s/T))`, as DistilBERT uses it
/// (`KLDivLoss(reduction="batchmean")` times T²).
#[derive(Clone, Copy, Debug)]
pub struct SoftTargetLoss {
    /// The softmax temperature T.
    pub temperature: f64,
}

impl SoftTargetLoss {
    /// A loss at `temperature` (> 0).
    pub fn new(temperature: f64) -> Result<Self> {
        check_temperature(temperature)?;
        Ok(Self { temperature })
    }

    /// One value per row.
    ///
    /// # Shapes
    /// - student, teacher: `[n, num_classes]`
    /// - output: `[n]`
    pub fn forward_no_reduction(
        &self,
        student: Tensor<2>,
        teacher: Tensor<2>,
    ) -> Result<Tensor<1>> {
        same_dims("SoftTargetLoss", student.dims(), teacher.dims())?;
        let [n, _] = student.dims();
        let t = self.temperature;
        let teacher = as_target(teacher, &student).div_scalar(t);
        let log_p_teacher = log_softmax(teacher.clone(), 1);
        let p_teacher = softmax(teacher, 1);
        let log_p_student = log_softmax(student.div_scalar(t), 1);
        let kl = (p_teacher * (log_p_teacher - log_p_student))
            .sum_dim(1)
            .reshape([n]);
        Ok(kl.mul_scalar(t * t))
    }

    /// The loss over rows; `Mean` is DistilBERT's batch mean.
    ///
    /// # Shapes
    /// - student, teacher: `[n, num_classes]`
    /// - output: `[1]`
    pub fn forward(
        &self,
        student: Tensor<2>,
        teacher: Tensor<2>,
        reduction: Reduction,
    ) -> Result<Tensor<1>> {
        Ok(reduce(
            self.forward_no_reduction(student, teacher)?,
            reduction,
        ))
    }

    /// The batch mean over the positions where `mask` is 1 (e.g. the masked tokens of MLM).
    ///
    /// # Shapes
    /// - student, teacher: `[batch_size, seq_length, vocab_size]`
    /// - mask: `[batch_size, seq_length]`
    /// - output: `[1]`
    pub fn forward_masked(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        mask: Tensor<2, Int>,
    ) -> Result<Tensor<1>> {
        masked_rows("SoftTargetLoss", student, teacher, mask, |s, t| {
            self.forward_no_reduction(s, t)
        })
    }
}

/// TinyBERT's prediction-layer loss: `-Σ softmax(t/T) · log_softmax(s/T)`, mean over rows (no T² factor).
#[derive(Clone, Copy, Debug)]
pub struct SoftCrossEntropyLoss {
    /// The softmax temperature T.
    pub temperature: f64,
}

impl SoftCrossEntropyLoss {
    /// A loss at `temperature` (> 0).
    pub fn new(temperature: f64) -> Result<Self> {
        check_temperature(temperature)?;
        Ok(Self { temperature })
    }

    /// One value per row.
    ///
    /// # Shapes
    /// - student, teacher: `[n, num_classes]`
    /// - output: `[n]`
    pub fn forward_no_reduction(
        &self,
        student: Tensor<2>,
        teacher: Tensor<2>,
    ) -> Result<Tensor<1>> {
        same_dims("SoftCrossEntropyLoss", student.dims(), teacher.dims())?;
        let [n, _] = student.dims();
        let t = self.temperature;
        let p_teacher = softmax(as_target(teacher, &student).div_scalar(t), 1);
        let log_p_student = log_softmax(student.div_scalar(t), 1);
        Ok((p_teacher * log_p_student).sum_dim(1).reshape([n]).neg())
    }

    /// The loss over rows.
    ///
    /// # Shapes
    /// - student, teacher: `[n, num_classes]`
    /// - output: `[1]`
    pub fn forward(
        &self,
        student: Tensor<2>,
        teacher: Tensor<2>,
        reduction: Reduction,
    ) -> Result<Tensor<1>> {
        Ok(reduce(
            self.forward_no_reduction(student, teacher)?,
            reduction,
        ))
    }

    /// The mean over positions where `mask` is 1.
    ///
    /// # Shapes
    /// - student, teacher: `[batch_size, seq_length, vocab_size]`
    /// - mask: `[batch_size, seq_length]`
    /// - output: `[1]`
    pub fn forward_masked(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        mask: Tensor<2, Int>,
    ) -> Result<Tensor<1>> {
        masked_rows("SoftCrossEntropyLoss", student, teacher, mask, |s, t| {
            self.forward_no_reduction(s, t)
        })
    }
}
