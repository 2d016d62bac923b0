//! A small builder of ONNX graphs over the generated protobuf messages: nodes with fresh output names,
//! initializers from Rust slices, and the model around them.

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// The domain of ONNX Runtime's contrib operators (`MatMulNBits`).
pub const MS_DOMAIN: &str = "com.microsoft";

/// An attribute of a node.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A string attribute.
pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A list-of-ints attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A graph under construction.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
    /// Whether a node of [`MS_DOMAIN`] was added.
    pub uses_contrib: bool,
    /// The default domain's opset the nodes need (17 unless a node needs more).
    pub opset: i64,
    /// Bytes of every initializer's data.
    pub initializer_bytes: usize,
    /// Export matrices that our integer engine runs as it runs them (`MatMulInteger` on per-token uint8
    /// activations) rather than as float `MatMul` of dequantized weights.
    pub integer_matmul: bool,
    /// Per-token quantized activations already in the graph, by the input's name: `(codes, zero, scale)`.
    pub(crate) quantized_inputs: std::collections::HashMap<String, (String, String, String)>,
}

impl Graph {
    /// An empty graph at opset 17.
    pub fn new() -> Self {
        Self {
            opset: 17,
            ..Default::default()
        }
    }

    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        format!("{}_{}", op.to_lowercase(), self.counter)
    }

    /// Adds a node of the default domain with one output and returns the output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_in("", op, inputs, attrs)
    }

    /// Adds a node of `domain` with one output and returns the output's name.
    pub fn op_in(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(op);
        self.op_named(domain, op, inputs, attrs, &out);
        out
    }

    /// Adds a node whose one output is called `out` (a graph output).
    pub fn op_named(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: &str,
    ) {
        if domain == MS_DOMAIN {
            self.uses_contrib = true;
        }
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: Some(name),
            op_type: Some(op.into()),
            domain: (!domain.is_empty()).then(|| domain.to_string()),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn initializer(
        &mut self,
        name: &str,
        dims: &[usize],
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        self.initializer_bytes += raw.len();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type as i32),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// An f32 initializer (little-endian raw data).
    pub fn f32s(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, DataType::Float, raw)
    }

    /// An i64 initializer.
    pub fn i64s(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, DataType::Int64, raw)
    }

    /// An int32 initializer.
    pub fn i32s(&mut self, name: &str, dims: &[usize], values: &[i32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, DataType::Int32, raw)
    }

    /// An int8 initializer.
    pub fn i8s(&mut self, name: &str, dims: &[usize], values: &[i8]) -> String {
        let raw = values.iter().map(|&v| v as u8).collect();
        self.initializer(name, dims, DataType::Int8, raw)
    }

    /// A uint8 initializer.
    pub fn u8s(&mut self, name: &str, dims: &[usize], values: Vec<u8>) -> String {
        self.initializer(name, dims, DataType::Uint8, values)
    }

    /// A scalar or 1-D f32 constant named after the graph's counter.
    pub fn constant_f32(&mut self, values: &[f32], dims: &[usize]) -> String {
        let name = self.fresh("const");
        self.f32s(&name, dims, values)
    }

    /// A 1-D i64 constant named after the graph's counter.
    pub fn constant_i64(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const");
        self.i64s(&name, &[values.len()], values)
    }

    /// The model: this graph with its inputs and outputs, at IR version 8 (opset 17) or 10 (opset 21).
    pub fn into_model(
        self,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
        metadata: Vec<(String, String)>,
    ) -> ModelProto {
        let mut opset_import = vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(self.opset),
        }];
        if self.uses_contrib {
            opset_import.push(OperatorSetIdProto {
                domain: Some(MS_DOMAIN.into()),
                version: Some(1),
            });
        }
        ModelProto {
            ir_version: Some(if self.opset >= 21 { 10 } else { 8 }),
            opset_import,
            producer_name: Some("bert-compress".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(GraphProto {
                node: self.nodes,
                name: Some("bert".into()),
                initializer: self.initializers,
                input: inputs,
                output: outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: Some(key),
                    value: Some(value),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// A graph input or output of `elem_type` with named (dynamic) or fixed dimensions.
pub fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Named(n) => dimension::Value::DimParam(n.to_string()),
                Dim::Fixed(v) => dimension::Value::DimValue(*v as i64),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A dimension of a graph input or output.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    /// A dynamic axis, by name (`batch`, `sequence`).
    Named(&'static str),
    /// A fixed size.
    Fixed(usize),
}
