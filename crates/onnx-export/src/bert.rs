//! The BERT encoder as an ONNX graph: embeddings, every layer's attention and feed-forward block, and a head
//! (a classifier's logits or a sentence embedding). Operators of the default domain at opset 17 (18 when a
//! matrix computes as our integer engine, 21 when one needs blocked `DequantizeLinear`), plus
//! `com.microsoft.MatMulNBits` / `GatherBlockQuantized` for 4-bit matrices and tables.
//!
//! The graph computes what `student_arch::BertModel` does: word + position (+ token type 0) embeddings and a
//! LayerNorm; per layer, scores `q·kᵀ / √d` plus −10⁴ at padded keys, softmax, the heads' contexts through the
//! output projection, residual and LayerNorm, then the feed-forward block with `hidden_act`, residual and LayerNorm.

use student_arch::{BertConfig, HiddenAct};

use crate::embedding::embedding;
use crate::error::{ExportError, Result};
use crate::graph::{attr_float, attr_int, attr_ints, value_info, Dim, Graph};
use crate::head::{Exported, Head, MatrixExport, Pooling};
use crate::linear::linear;
use crate::proto::tensor_proto::DataType;
use crate::tensors::Tensors;

/// The additive mask at padded keys (`student_arch::model::MASKED_SCORE`).
const MASKED_SCORE: f32 = -1e4;

struct Builder<'a> {
    g: Graph,
    tensors: Tensors<'a>,
    config: &'a BertConfig,
    matrices: Vec<MatrixExport>,
}

/// Builds the ONNX model of `config`'s encoder from `tensors` with `head` on top.
pub fn export(
    config: &BertConfig,
    tensors: Tensors,
    head: &Head,
    matmul: crate::head::Matmul,
    metadata: Vec<(String, String)>,
) -> Result<Exported> {
    check_config(config)?;
    let mut g = Graph::new();
    g.integer_matmul = matmul == crate::head::Matmul::Integer;
    let mut b = Builder {
        g,
        tensors,
        config,
        matrices: vec![],
    };
    let mask = b.g.op(
        "Cast",
        &["attention_mask"],
        vec![attr_int("to", DataType::Float as i64)],
    );
    let mut x = b.embeddings()?;
    let additive = b.additive_mask(&mask);
    let act = HiddenAct::parse(&config.hidden_act).map_err(|e| ExportError::Unsupported {
        what: "hidden_act".into(),
        message: e.to_string(),
    })?;
    for layer in 0..config.num_hidden_layers {
        x = b.layer(layer, &x, &additive, act)?;
    }
    let (output, width) = b.head(head, &x, &mask)?;
    let inputs = vec![
        value_info(
            "input_ids",
            DataType::Int64,
            &[Dim::Named("batch"), Dim::Named("sequence")],
        ),
        value_info(
            "attention_mask",
            DataType::Int64,
            &[Dim::Named("batch"), Dim::Named("sequence")],
        ),
    ];
    let outputs = vec![value_info(
        output,
        DataType::Float,
        &[Dim::Named("batch"), Dim::Fixed(width)],
    )];
    let opset = b.g.opset;
    let contrib = b.g.uses_contrib;
    let initializer_bytes = b.g.initializer_bytes;
    Ok(Exported {
        model: b.g.into_model(inputs, outputs, metadata),
        matrices: b.matrices,
        output,
        opset,
        uses_contrib: contrib,
        initializer_bytes,
    })
}

fn check_config(config: &BertConfig) -> Result<()> {
    if config.hidden_size == 0
        || config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(ExportError::Unsupported {
            what: "config.json".into(),
            message: format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ),
        });
    }
    if config.position_embedding_type != "absolute" {
        return Err(ExportError::Unsupported {
            what: "position_embedding_type".into(),
            message: format!(
                "{:?}: the export writes absolute position embeddings only",
                config.position_embedding_type
            ),
        });
    }
    Ok(())
}

impl Builder<'_> {
    fn scalar(&mut self, v: f32) -> String {
        self.g.constant_f32(&[v], &[])
    }

    fn layer_norm(&mut self, prefix: &str, x: &str) -> Result<String> {
        let h = self.config.hidden_size;
        let gamma = self
            .tensors
            .values("layer_norm", &format!("{prefix}.weight"), &[h])?;
        let beta = self
            .tensors
            .values("layer_norm", &format!("{prefix}.bias"), &[h])?;
        let gamma = self.g.f32s(&format!("{prefix}.weight"), &[h], &gamma);
        let beta = self.g.f32s(&format!("{prefix}.bias"), &[h], &beta);
        let attrs = vec![
            attr_int("axis", -1),
            attr_float("epsilon", self.config.layer_norm_eps as f32),
        ];
        Ok(self.g.op("LayerNormalization", &[x, &gamma, &beta], attrs))
    }

    fn embeddings(&mut self) -> Result<String> {
        let c = self.config;
        let (h, v, p) = (c.hidden_size, c.vocab_size, c.max_position_embeddings);
        let word = embedding(
            &mut self.g,
            &self.tensors,
            "embeddings.word_embeddings.weight",
            [v, h],
            "input_ids",
            3,
            &mut self.matrices,
        )?;
        let shape = self.g.op("Shape", &["input_ids"], vec![]);
        let one = self.g.i64s("one", &[], &[1]);
        let zero = self.g.i64s("zero", &[], &[0]);
        let length = self
            .g
            .op("Gather", &[&shape, &one], vec![attr_int("axis", 0)]);
        let positions = self.g.op("Range", &[&zero, &length, &one], vec![]);
        let table = "embeddings.position_embeddings.weight";
        let position = embedding(
            &mut self.g,
            &self.tensors,
            table,
            [p, h],
            &positions,
            2,
            &mut self.matrices,
        )?;
        let mut x = self.g.op("Add", &[&word, &position], vec![]);
        let types = "embeddings.token_type_embeddings.weight";
        if c.type_vocab_size > 0 && self.tensors.contains(types) {
            let all = self
                .tensors
                .values("embeddings", types, &[c.type_vocab_size, h])?;
            let first = self.g.f32s("token_type_0", &[h], &all[..h]);
            x = self.g.op("Add", &[&x, &first], vec![]);
        }
        self.layer_norm("embeddings.LayerNorm", &x)
    }

    /// `[batch, 1, 1, sequence]`: 0 at real keys, −10⁴ at padding.
    fn additive_mask(&mut self, mask: &str) -> String {
        let one = self.scalar(1.0);
        let inverse = self.g.op("Sub", &[&one, mask], vec![]);
        let masked = self.scalar(MASKED_SCORE);
        let additive = self.g.op("Mul", &[&inverse, &masked], vec![]);
        let axes = self.g.constant_i64(&[1, 2]);
        self.g.op("Unsqueeze", &[&additive, &axes], vec![])
    }

    /// `[batch, sequence, hidden]` → `[batch, heads, sequence, head_dim]` (`perm` [0, 2, 1, 3]), or with the last
    /// two axes swapped for keys (`perm` [0, 2, 3, 1]).
    fn split_heads(&mut self, x: &str, perm: &[i64]) -> String {
        let heads = self.config.num_attention_heads;
        let d = self.config.hidden_size / heads;
        let shape = self.g.constant_i64(&[0, 0, heads as i64, d as i64]);
        let split = self.g.op("Reshape", &[x, &shape], vec![]);
        self.g
            .op("Transpose", &[&split], vec![attr_ints("perm", perm)])
    }

    fn layer(&mut self, layer: usize, x: &str, additive: &str, act: HiddenAct) -> Result<String> {
        let c = self.config;
        let (h, inner) = (c.hidden_size, c.intermediate_size);
        let d = h / c.num_attention_heads;
        let p = format!("encoder.layer.{layer}");
        let lin = |b: &mut Self, name: &str, x: &str, shape: [usize; 2]| {
            linear(
                &mut b.g,
                &b.tensors,
                &format!("{p}.{name}"),
                x,
                shape,
                &mut b.matrices,
            )
        };
        let q = lin(self, "attention.self.query", x, [h, h])?;
        let k = lin(self, "attention.self.key", x, [h, h])?;
        let v = lin(self, "attention.self.value", x, [h, h])?;
        let q = self.split_heads(&q, &[0, 2, 1, 3]);
        let k = self.split_heads(&k, &[0, 2, 3, 1]);
        let v = self.split_heads(&v, &[0, 2, 1, 3]);
        let scores = self.g.op("MatMul", &[&q, &k], vec![]);
        let root = self.scalar((d as f32).sqrt());
        let scores = self.g.op("Div", &[&scores, &root], vec![]);
        let scores = self.g.op("Add", &[&scores, additive], vec![]);
        let probs = self.g.op("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let context = self.g.op("MatMul", &[&probs, &v], vec![]);
        let context = self.g.op(
            "Transpose",
            &[&context],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let merged = self.g.constant_i64(&[0, 0, h as i64]);
        let context = self.g.op("Reshape", &[&context, &merged], vec![]);
        let attn = lin(self, "attention.output.dense", &context, [h, h])?;
        let attn = self.g.op("Add", &[&attn, x], vec![]);
        let attn = self.layer_norm(&format!("{p}.attention.output.LayerNorm"), &attn)?;
        let ffn = lin(self, "intermediate.dense", &attn, [inner, h])?;
        let ffn = self.activation(&ffn, act);
        let out = lin(self, "output.dense", &ffn, [h, inner])?;
        let out = self.g.op("Add", &[&out, &attn], vec![]);
        self.layer_norm(&format!("{p}.output.LayerNorm"), &out)
    }

    /// `hidden_act` in the form ONNX Runtime fuses: `x·½·(1 + erf(x/√2))` for GELU.
    fn activation(&mut self, x: &str, act: HiddenAct) -> String {
        match act {
            HiddenAct::Gelu => {
                let root2 = self.scalar(std::f32::consts::SQRT_2);
                let scaled = self.g.op("Div", &[x, &root2], vec![]);
                let erf = self.g.op("Erf", &[&scaled], vec![]);
                let one = self.scalar(1.0);
                let shifted = self.g.op("Add", &[&erf, &one], vec![]);
                let product = self.g.op("Mul", &[x, &shifted], vec![]);
                let half = self.scalar(0.5);
                self.g.op("Mul", &[&product, &half], vec![])
            }
            HiddenAct::GeluTanh => {
                let cube = self.g.op("Mul", &[x, x], vec![]);
                let cube = self.g.op("Mul", &[&cube, x], vec![]);
                let c = self.scalar(0.044715);
                let cube = self.g.op("Mul", &[&cube, &c], vec![]);
                let inner = self.g.op("Add", &[x, &cube], vec![]);
                let k = self.scalar((2.0 / std::f32::consts::PI).sqrt());
                let inner = self.g.op("Mul", &[&inner, &k], vec![]);
                let tanh = self.g.op("Tanh", &[&inner], vec![]);
                let one = self.scalar(1.0);
                let shifted = self.g.op("Add", &[&tanh, &one], vec![]);
                let product = self.g.op("Mul", &[x, &shifted], vec![]);
                let half = self.scalar(0.5);
                self.g.op("Mul", &[&product, &half], vec![])
            }
            HiddenAct::Relu => self.g.op("Relu", &[x], vec![]),
        }
    }

    /// The mean of `x` over real tokens: `[batch, hidden]`.
    fn mean_pool(&mut self, x: &str, mask: &str) -> String {
        let last = self.g.constant_i64(&[2]);
        let mask3 = self.g.op("Unsqueeze", &[mask, &last], vec![]);
        let masked = self.g.op("Mul", &[x, &mask3], vec![]);
        let tokens = self.g.constant_i64(&[1]);
        let summed = self.g.op(
            "ReduceSum",
            &[&masked, &tokens],
            vec![attr_int("keepdims", 0)],
        );
        let counts = self
            .g
            .op("ReduceSum", &[mask, &tokens], vec![attr_int("keepdims", 1)]);
        let floor = self.scalar(1e-9);
        let counts = self.g.op("Max", &[&counts, &floor], vec![]);
        self.g.op("Div", &[&summed, &counts], vec![])
    }

    /// The head's output (named `logits` or `embeddings`) and its width.
    fn head(&mut self, head: &Head, x: &str, mask: &str) -> Result<(&'static str, usize)> {
        let h = self.config.hidden_size;
        let (value, name, width) = match head {
            Head::Classifier { pooling, labels } => {
                let pooled = match pooling {
                    Pooling::Mean => self.mean_pool(x, mask),
                    Pooling::Cls => {
                        let zero = self.g.i64s("cls_position", &[], &[0]);
                        let first = self.g.op("Gather", &[x, &zero], vec![attr_int("axis", 1)]);
                        let dense = linear(
                            &mut self.g,
                            &self.tensors,
                            "pooler.dense",
                            &first,
                            [h, h],
                            &mut self.matrices,
                        )?;
                        self.g.op("Tanh", &[&dense], vec![])
                    }
                };
                let logits = linear(
                    &mut self.g,
                    &self.tensors,
                    "classifier",
                    &pooled,
                    [*labels, h],
                    &mut self.matrices,
                )?;
                (logits, "logits", *labels)
            }
            Head::Embedding { normalize } => {
                let pooled = self.mean_pool(x, mask);
                let value = if *normalize {
                    let axis = self.g.constant_i64(&[1]);
                    let squares = self.g.op("Mul", &[&pooled, &pooled], vec![]);
                    let norm = self.g.op(
                        "ReduceSum",
                        &[&squares, &axis],
                        vec![attr_int("keepdims", 1)],
                    );
                    let norm = self.g.op("Sqrt", &[&norm], vec![]);
                    let floor = self.scalar(1e-12);
                    let norm = self.g.op("Max", &[&norm, &floor], vec![]);
                    self.g.op("Div", &[&pooled, &norm], vec![])
                } else {
                    pooled
                };
                (value, "embeddings", h)
            }
        };
        self.g.op_named("", "Identity", &[&value], vec![], name);
        Ok((name, width))
    }
}
