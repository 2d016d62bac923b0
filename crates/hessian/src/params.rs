//! Parameters by path: listing a module's float parameters with their shapes. Reading, perturbing and
//! differentiating a block of them is [`crate::access`].
//!
//! Paths are the module's field names joined by dots, as Burn's `ModuleVisitor` reports them, e.g.
//! `encoder.layers.0.attention.query.weight`. Linear weights are stored `[d_input, d_output]`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// A float parameter's path and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// Dotted path, e.g. `encoder.layers.0.attention.query.weight`.
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl ParamInfo {
    /// Number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The dotted path of the module being visited.
#[derive(Default)]
pub(crate) struct PathStack(Vec<String>);

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }
    pub(crate) fn path(&self) -> String {
        self.0.join(".")
    }
}

struct Lister {
    stack: PathStack,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for Lister {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push(ParamInfo {
            path: self.stack.path(),
            shape: param.val().dims().to_vec(),
        });
    }
}

/// Every float parameter of `module`, in visiting order.
pub fn parameters<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut lister = Lister {
        stack: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut lister);
    lister.out
}
