//! TinyBERT's intermediate losses: hidden-state and embedding MSE through a learnt projection, and the
//! attention-matrix MSE.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use student_arch::model::SeededRng;

use crate::error::{as_target, mask_dims, same_dims, LossError, Result};

/// Whether a [`ProjectedMse`] has a learnt projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Projection {
    /// Only when the widths differ (the default).
    Auto,
    /// Always, even when the widths are equal.
    Always,
}

/// Configuration of a [`ProjectedMse`].
#[derive(Clone, Debug)]
pub struct ProjectedMseConfig {
    /// Student width.
    pub d_student: usize,
    /// Teacher width.
    pub d_teacher: usize,
    /// Whether to learn the projection. Default: [`Projection::Auto`].
    pub projection: Projection,
    /// Whether the projection has a bias. Default: true.
    pub bias: bool,
    /// Seed of the initial projection. Default: 0.
    pub seed: u64,
}

impl ProjectedMseConfig {
    /// A config with the defaults.
    pub fn new(d_student: usize, d_teacher: usize) -> Self {
        Self {
            d_student,
            d_teacher,
            projection: Projection::Auto,
            bias: true,
            seed: 0,
        }
    }

    /// With `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With `projection`.
    pub fn with_projection(mut self, projection: Projection) -> Self {
        self.projection = projection;
        self
    }

    /// Builds the loss, with its projection `W` (`d_student → d_teacher`) when needed.
    pub fn init(&self, device: &Device) -> ProjectedMse {
        let needed = self.projection == Projection::Always || self.d_student != self.d_teacher;
        // PyTorch's nn.Linear initialisation, U(-1/sqrt(d_in), 1/sqrt(d_in)) for weight and bias, drawn from a
        // seeded generator so that a run is reproducible from its seed.
        let projection = needed.then(|| {
            let mut rng = SeededRng::new(self.seed);
            let bound = 1.0 / (self.d_student as f64).sqrt();
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                    .collect()
            };
            let mut linear = LinearConfig::new(self.d_student, self.d_teacher)
                .with_bias(self.bias)
                .init(device);
            linear.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(
                    draw(self.d_student * self.d_teacher),
                    [self.d_student, self.d_teacher],
                ),
                device,
            ));
            if self.bias {
                linear.bias = Some(Param::from_tensor(Tensor::from_data(
                    TensorData::new(draw(self.d_teacher), [self.d_teacher]),
                    device,
                )));
            }
            linear
        });
        ProjectedMse { projection }
    }
}

/// `MSE(W·s (+ b), t)`: TinyBERT's hidden-state loss (W_h) and embedding loss (W_e).
#[derive(Module, Debug)]
pub struct ProjectedMse {
    /// The learnt projection, `d_student → d_teacher`; `None` when the widths match and none was asked for.
    pub projection: Option<Linear>,
}

impl ProjectedMse {
    /// The student states projected to the teacher's width.
    ///
    /// # Shapes
    /// - student: `[batch_size, seq_length, d_student]`
    /// - output: `[batch_size, seq_length, d_teacher]`
    pub fn project(&self, student: Tensor<3>) -> Tensor<3> {
        match &self.projection {
            Some(w) => w.forward(student),
            None => student,
        }
    }

    fn squared_error(&self, student: Tensor<3>, teacher: Tensor<3>) -> Result<Tensor<3>> {
        let projected = self.project(student);
        same_dims("ProjectedMse", projected.dims(), teacher.dims()).map_err(|e| match e {
            LossError::Shape { message, .. } => LossError::Shape {
                op: "ProjectedMse",
                message: format!(
                    "{message} after projection; widths differ, so use Projection::Auto or Always"
                ),
            },
            other => other,
        })?;
        let teacher = as_target(teacher, &projected);
        Ok((projected - teacher).square())
    }

    /// Mean squared error over every element, padding included (TinyBERT's reference code).
    ///
    /// # Shapes
    /// - student: `[batch_size, seq_length, d_student]`
    /// - teacher: `[batch_size, seq_length, d_teacher]`
    /// - output: `[1]`
    pub fn forward(&self, student: Tensor<3>, teacher: Tensor<3>) -> Result<Tensor<1>> {
        Ok(self.squared_error(student, teacher)?.mean())
    }

    /// Mean squared error over the elements of real tokens only.
    ///
    /// # Shapes
    /// - student: `[batch_size, seq_length, d_student]`
    /// - teacher: `[batch_size, seq_length, d_teacher]`
    /// - attention_mask: `[batch_size, seq_length]`
    /// - output: `[1]`
    pub fn forward_masked(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        attention_mask: Tensor<2, Int>,
    ) -> Result<Tensor<1>> {
        let [b, s, _] = student.dims();
        mask_dims("ProjectedMse", attention_mask.dims(), b, s)?;
        let sq = self.squared_error(student, teacher)?;
        let [_, _, d] = sq.dims();
        let mask = attention_mask.float().reshape([b, s, 1]);
        let count = mask.clone().sum().mul_scalar(d as f64).clamp_min(1.0);
        Ok((sq * mask).sum() / count)
    }
}

/// What the attention loss compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionTarget {
    /// Softmax probabilities.
    #[serde(alias = "Probs")]
    Probs,
    /// Pre-softmax scores, with masked scores (≤ −100) replaced by 0: what TinyBERT's paper and code compare.
    #[serde(alias = "Scores")]
    Scores,
}

impl std::str::FromStr for AttentionTarget {
    type Err = LossError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "scores" => Ok(Self::Scores),
            "probs" | "probabilities" => Ok(Self::Probs),
            other => Err(LossError::Config {
                field: "attention_target",
                message: format!("{other:?}: expected scores or probs"),
            }),
        }
    }
}

/// Scores at or below this are masked ones; TinyBERT replaces them with 0 before the MSE.
pub const MASKED_SCORE_THRESHOLD: f64 = -1e2;

/// TinyBERT's rule: attention scores `<= -1e2` (padding keys) become 0.
pub fn zero_masked_scores(scores: Tensor<4>) -> Tensor<4> {
    let masked = scores.clone().lower_equal_elem(MASKED_SCORE_THRESHOLD);
    scores.mask_fill(masked, 0.0)
}

/// Attention-matrix MSE between a student layer and a teacher layer, per head.
///
/// # Shapes
/// - student, teacher: `[batch_size, num_heads, seq_length, seq_length]`
/// - output: `[batch_size, num_heads]` (the mean over query–key pairs of each head)
pub fn attention_mse_no_reduction(
    student: Tensor<4>,
    teacher: Tensor<4>,
    target: AttentionTarget,
    attention_mask: Option<Tensor<2, Int>>,
) -> Result<Tensor<2>> {
    same_dims("attention_mse", student.dims(), teacher.dims())?;
    let [b, h, s, _] = student.dims();
    let (student, teacher) = match target {
        AttentionTarget::Probs => {
            let teacher = as_target(teacher, &student);
            (student, teacher)
        }
        AttentionTarget::Scores => {
            let teacher = as_target(teacher, &student);
            (zero_masked_scores(student), zero_masked_scores(teacher))
        }
    };
    let sq = (student - teacher).square();
    match attention_mask {
        None => Ok(sq
            .sum_dim(3)
            .sum_dim(2)
            .reshape([b, h])
            .div_scalar((s * s) as f64)),
        Some(mask) => {
            mask_dims("attention_mse", mask.dims(), b, s)?;
            let m = mask.float();
            let pairs = m.clone().reshape([b, 1, s, 1]) * m.reshape([b, 1, 1, s]);
            let count = pairs
                .clone()
                .sum_dim(3)
                .sum_dim(2)
                .reshape([b, 1])
                .clamp_min(1.0);
            Ok((sq * pairs).sum_dim(3).sum_dim(2).reshape([b, h]) / count)
        }
    }
}

/// Attention-matrix MSE averaged over batch and heads; with a mask, padding rows and columns do not count.
///
/// # Shapes
/// - student, teacher: `[batch_size, num_heads, seq_length, seq_length]`
/// - attention_mask: `[batch_size, seq_length]`
/// - output: `[1]`
pub fn attention_mse(
    student: Tensor<4>,
    teacher: Tensor<4>,
    target: AttentionTarget,
    attention_mask: Option<Tensor<2, Int>>,
) -> Result<Tensor<1>> {
    let [b, h, s, _] = student.dims();
    match attention_mask {
        None => Ok(attention_mse_no_reduction(student, teacher, target, None)?.mean()),
        Some(mask) => {
            // Weight each example by its number of real pairs, so the result is the mean over all real pairs.
            mask_dims("attention_mse", mask.dims(), b, s)?;
            let m = mask.clone().float();
            let pairs = m.clone().reshape([b, 1, s, 1]) * m.reshape([b, 1, 1, s]);
            let per_head = attention_mse_no_reduction(student, teacher, target, Some(mask))?;
            let counts = pairs.sum_dim(3).sum_dim(2).reshape([b, 1]);
            Ok((per_head * counts.clone()).sum()
                / (counts.sum().mul_scalar(h as f64)).clamp_min(1.0))
        }
    }
}
