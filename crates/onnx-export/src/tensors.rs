//! The model's tensors as the writer reads them: dense f32 under Hugging Face names, and the quantized matrices
//! of a `model.quant.safetensors` kept as codes and scales.

use std::borrow::Cow;
use std::collections::BTreeMap;

use quant::{NamedTensors, QuantizedModel, QuantizedTensor};

use crate::error::{ExportError, Result};

/// A weight as the model holds it.
pub enum Weight<'a> {
    /// f32 values, row-major.
    Dense(&'a [f32]),
    /// Codes and group scales.
    Quantized(&'a QuantizedTensor),
}

/// Every tensor of a model, full precision or quantized.
#[derive(Clone, Copy)]
pub struct Tensors<'a> {
    /// Dense f32 tensors by Hugging Face name.
    pub dense: &'a NamedTensors,
    /// Quantized matrices by Hugging Face name (none for a full-precision model).
    pub quantized: Option<&'a BTreeMap<String, QuantizedTensor>>,
}

impl<'a> Tensors<'a> {
    /// A full-precision model's tensors.
    pub fn dense(tensors: &'a NamedTensors) -> Self {
        Self {
            dense: tensors,
            quantized: None,
        }
    }

    /// A quantized model's tensors.
    pub fn quantized(model: &'a QuantizedModel) -> Self {
        Self {
            dense: &model.dense,
            quantized: Some(&model.quantized),
        }
    }

    /// Whether the model has a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.dense.contains_key(name) || self.quantized.is_some_and(|q| q.contains_key(name))
    }

    /// The weight `name`, checked to have `shape`.
    pub fn weight(&self, op: &'static str, name: &str, shape: &[usize]) -> Result<Weight<'a>> {
        if let Some(q) = self.quantized.and_then(|q| q.get(name)) {
            check_shape(op, name, shape, &q.shape)?;
            return Ok(Weight::Quantized(q));
        }
        match self.dense.get(name) {
            Some((found, values)) => {
                check_shape(op, name, shape, found)?;
                if values.len() != shape.iter().product::<usize>() {
                    return Err(ExportError::Shape {
                        op,
                        name: name.into(),
                        expected: shape.to_vec(),
                        found: vec![values.len()],
                    });
                }
                Ok(Weight::Dense(values))
            }
            None => Err(ExportError::Missing {
                op,
                name: name.into(),
                hint: "the directory does not hold a complete BERT of its config.json",
            }),
        }
    }

    /// The tensor `name` as f32 values (dequantized if the model holds it quantized), checked to have `shape`.
    pub fn values(&self, op: &'static str, name: &str, shape: &[usize]) -> Result<Cow<'a, [f32]>> {
        Ok(match self.weight(op, name, shape)? {
            Weight::Dense(v) => Cow::Borrowed(v),
            Weight::Quantized(q) => Cow::Owned(q.dequantize()),
        })
    }
}

fn check_shape(op: &'static str, name: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected != found {
        return Err(ExportError::Shape {
            op,
            name: name.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}
