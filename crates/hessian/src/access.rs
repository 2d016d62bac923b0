//! A resolved block's parameters: reading them, perturbing them in place of the originals (keeping their ids, so
//! gradients can be looked up), and reading the block's gradient. Paths as in [`crate::params`].

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::block::{BlockEntry, ResolvedBlock};
use crate::error::{HessianError, Result};
use crate::params::PathStack;
fn to_f64(data: TensorData) -> Vec<f64> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .expect("a float tensor converted to f32 reads back as f32")
        .into_iter()
        .map(f64::from)
        .collect()
}

fn wanted(block: &ResolvedBlock) -> HashMap<String, usize> {
    block
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect()
}

/// Reads the block's parameters (`grads: None`) or their gradients (`Some`) by path, and gathers the block's
/// part of each into one compact vector; `missing` names the error for a parameter that gave nothing.
struct BlockReader<'a> {
    stack: PathStack,
    wanted: HashMap<String, usize>,
    grads: Option<&'a GradientsParams>,
    out: Vec<Option<Vec<f64>>>,
}

impl ModuleVisitor for BlockReader<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(&i) = self.wanted.get(&self.stack.path()) {
            self.out[i] = match self.grads {
                None => Some(param.val().into_data()),
                Some(grads) => grads.get::<D>(param.id).map(Tensor::into_data),
            }
            .map(to_f64);
        }
    }
}

fn read_compact<M: Module>(
    module: &M,
    block: &ResolvedBlock,
    grads: Option<&GradientsParams>,
    missing: impl Fn(&BlockEntry) -> HessianError,
) -> Result<Vec<f64>> {
    let mut reader = BlockReader {
        stack: PathStack::default(),
        wanted: wanted(block),
        grads,
        out: vec![None; block.entries.len()],
    };
    module.visit(&mut reader);
    let mut compact = Vec::with_capacity(block.dim());
    for (entry, full) in block.entries.iter().zip(reader.out) {
        let full = full.ok_or_else(|| missing(entry))?;
        compact.extend(entry.indices.iter().map(|&i| full[i]));
    }
    Ok(compact)
}

/// The block's current values, in the block's compact order.
pub fn read_block<M: Module>(module: &M, block: &ResolvedBlock) -> Result<Vec<f64>> {
    read_compact(module, block, None, |entry| {
        HessianError::UnknownParameter {
            block: block.name.clone(),
            path: entry.path.clone(),
            examples: String::new(),
        }
    })
}

struct Perturber<'a> {
    stack: PathStack,
    wanted: &'a HashMap<String, usize>,
    deltas: Vec<Option<Vec<f32>>>,
}

impl ModuleMapper for Perturber<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(&i) = self.wanted.get(&self.stack.path()) else {
            return param;
        };
        let delta = self.deltas[i]
            .take()
            .expect("each parameter is visited once");
        param.map(|value| {
            let shape = value.dims();
            if !value.is_autodiff() {
                let device = value.device();
                return value + Tensor::<D>::from_data(TensorData::new(delta, shape), &device);
            }
            // The sum is taken below autodiff, then wrapped as a fresh leaf with the same parameter id, so its
            // gradient is found under that id.
            let inner = value.inner();
            let device = inner.device();
            let sum = inner + Tensor::<D>::from_data(TensorData::new(delta, shape), &device);
            Tensor::from_inner(sum).require_grad()
        })
    }
}

/// `module` with `scale · v` added to the block's values (`v` in compact order). Parameter ids are kept.
pub fn perturb<M: Module>(module: M, block: &ResolvedBlock, v: &[f64], scale: f64) -> Result<M> {
    if v.len() != block.dim() {
        return Err(HessianError::Length {
            op: "perturb",
            block: block.name.clone(),
            expected: block.dim(),
            found: v.len(),
        });
    }
    let mut offset = 0;
    let mut deltas = Vec::with_capacity(block.entries.len());
    for entry in &block.entries {
        let mut full = vec![0f32; entry.numel];
        for (k, &i) in entry.indices.iter().enumerate() {
            full[i] = (scale * v[offset + k]) as f32;
        }
        offset += entry.indices.len();
        deltas.push(Some(full));
    }
    let wanted = wanted(block);
    let mut mapper = Perturber {
        stack: PathStack::default(),
        wanted: &wanted,
        deltas,
    };
    Ok(module.map(&mut mapper))
}

/// The block's gradient from `grads` (made from this `module`'s loss), in compact order.
pub fn block_gradient<M: Module>(
    module: &M,
    grads: &GradientsParams,
    block: &ResolvedBlock,
) -> Result<Vec<f64>> {
    read_compact(module, block, Some(grads), |entry| {
        HessianError::NoGradient {
            block: block.name.clone(),
            path: entry.path.clone(),
        }
    })
}
