//! The error type of `kd-losses`.

/// What can go wrong when computing a distillation loss.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// Two inputs that must agree in shape do not.
    #[error("{op}: {message}")]
    Shape {
        /// The loss that rejected its inputs.
        op: &'static str,
        /// Expected and found shapes.
        message: String,
    },
    /// A layer map is invalid.
    #[error("invalid layer map: {message}")]
    LayerMap {
        /// Which index and why.
        message: String,
    },
    /// A loss config holds an impossible value.
    #[error("invalid loss config field `{field}`: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A term that the config asks for cannot be computed from what was given.
    #[error("loss term `{term}` needs {needs}; give it or set alpha_{term} = 0")]
    MissingInput {
        /// The term, e.g. `mlm`.
        term: &'static str,
        /// What it needs.
        needs: &'static str,
    },
    /// A loss term is NaN or infinite.
    #[error("loss term `{term}` is {value}: lower the learning rate, check the inputs, or resume from the last good checkpoint")]
    NonFinite {
        /// The term.
        term: &'static str,
        /// The value.
        value: f32,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = LossError> = std::result::Result<T, E>;

pub(crate) fn same_dims<const D: usize>(
    op: &'static str,
    a: [usize; D],
    b: [usize; D],
) -> Result<()> {
    if a != b {
        return Err(LossError::Shape {
            op,
            message: format!("student has shape {a:?}, teacher has {b:?}"),
        });
    }
    Ok(())
}

pub(crate) fn mask_dims(
    op: &'static str,
    mask: [usize; 2],
    batch: usize,
    seq: usize,
) -> Result<()> {
    if mask != [batch, seq] {
        return Err(LossError::Shape {
            op,
            message: format!("attention_mask has shape {mask:?}, expected [{batch}, {seq}]"),
        });
    }
    Ok(())
}

/// The teacher's tensor, detached, in the student's autodiff context: a teacher run on a plain device can be
/// compared with a student trained on an autodiff device.
pub(crate) fn as_target<const D: usize>(
    teacher: burn::tensor::Tensor<D>,
    student: &burn::tensor::Tensor<D>,
) -> burn::tensor::Tensor<D> {
    let teacher = teacher.detach();
    if student.is_autodiff() {
        teacher.autodiff()
    } else {
        teacher
    }
}
