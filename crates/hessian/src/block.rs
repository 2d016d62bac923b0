//! Blocks: the groups of parameters whose Hessian is studied, one at a time. A block is a list of parameters,
//! each whole or a slice of it (some columns or rows of a matrix, a range of a vector). Q-BERT's blocks are
//! encoder layers; finer ones are single weight matrices and single attention heads.

use serde::{Deserialize, Serialize};

use crate::error::{HessianError, Result};
use crate::params::ParamInfo;

/// Which part of a parameter belongs to a block. Ranges are half-open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Part {
    /// All of it.
    Whole,
    /// Columns `start..end` of a 2-D parameter `[rows, columns]`.
    Columns {
        /// First column.
        start: usize,
        /// One past the last column.
        end: usize,
    },
    /// Rows `start..end` of a 2-D parameter.
    Rows {
        /// First row.
        start: usize,
        /// One past the last row.
        end: usize,
    },
    /// Values `start..end` of a 1-D parameter.
    Range {
        /// First index.
        start: usize,
        /// One past the last index.
        end: usize,
    },
}

/// One parameter (or part of one) in a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockParam {
    /// The parameter's dotted path.
    pub path: String,
    /// Which part of it.
    pub part: Part,
}

/// A named group of parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// E.g. `layer.2`, `layer.2.query`, `layer.2.head.5`.
    pub name: String,
    /// Its parameters.
    pub params: Vec<BlockParam>,
}

/// A block checked against a model: every parameter found, its slice turned into flat indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBlock {
    /// The block's name.
    pub name: String,
    /// One entry per parameter.
    pub entries: Vec<BlockEntry>,
}

/// One parameter of a resolved block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// The parameter's path.
    pub path: String,
    /// Its full shape.
    pub shape: Vec<usize>,
    /// Its number of values.
    pub numel: usize,
    /// The flat (row-major) indices that belong to the block, ascending.
    pub indices: Vec<usize>,
}

impl ResolvedBlock {
    /// The block's dimension: the length of its vectors.
    pub fn dim(&self) -> usize {
        self.entries.iter().map(|e| e.indices.len()).sum()
    }
}

fn range_check(
    block: &str,
    path: &str,
    what: &str,
    start: usize,
    end: usize,
    size: usize,
) -> Result<()> {
    if start >= end || end > size {
        return Err(HessianError::BadSlice {
            block: block.into(),
            message: format!("{what} {start}..{end} of {path} do not fit its size {size}"),
        });
    }
    Ok(())
}

impl Block {
    /// Checks the block against a model's parameters and turns its slices into indices.
    pub fn resolve(&self, params: &[ParamInfo]) -> Result<ResolvedBlock> {
        if self.params.is_empty() {
            return Err(HessianError::BadSlice {
                block: self.name.clone(),
                message: "the block has no parameters".into(),
            });
        }
        let mut entries = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let info = params.iter().find(|i| i.path == p.path).ok_or_else(|| {
                HessianError::UnknownParameter {
                    block: self.name.clone(),
                    path: p.path.clone(),
                    examples: params
                        .iter()
                        .take(4)
                        .map(|i| i.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            let numel = info.numel();
            let indices: Vec<usize> = match (&p.part, info.shape.as_slice()) {
                (Part::Whole, _) => (0..numel).collect(),
                (Part::Columns { start, end }, [rows, cols]) => {
                    range_check(&self.name, &p.path, "columns", *start, *end, *cols)?;
                    (0..*rows)
                        .flat_map(|r| (*start..*end).map(move |c| r * cols + c))
                        .collect()
                }
                (Part::Rows { start, end }, [rows, cols]) => {
                    range_check(&self.name, &p.path, "rows", *start, *end, *rows)?;
                    (start * cols..end * cols).collect()
                }
                (Part::Range { start, end }, [n]) => {
                    range_check(&self.name, &p.path, "values", *start, *end, *n)?;
                    (*start..*end).collect()
                }
                (part, shape) => {
                    return Err(HessianError::BadSlice {
                        block: self.name.clone(),
                        message: format!(
                            "{part:?} does not apply to {} of shape {shape:?}",
                            p.path
                        ),
                    })
                }
            };
            entries.push(BlockEntry {
                path: p.path.clone(),
                shape: info.shape.clone(),
                numel,
                indices,
            });
        }
        Ok(ResolvedBlock {
            name: self.name.clone(),
            entries,
        })
    }
}

/// How finely a BERT encoder is cut into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockGranularity {
    /// One block per encoder layer (Q-BERT): every parameter of the layer.
    Layer,
    /// One block per weight matrix with its bias: query, key, value, attention output, ffn_in, ffn_out.
    Matrix,
    /// One block per attention head: the head's columns of Q, K and V (with their biases) and its rows of O.
    Head,
}

impl std::str::FromStr for BlockGranularity {
    type Err = HessianError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "layer" => Ok(Self::Layer),
            "matrix" => Ok(Self::Matrix),
            "head" => Ok(Self::Head),
            other => Err(HessianError::Config {
                field: "block",
                message: format!("unknown granularity {other:?}; use layer, matrix or head"),
            }),
        }
    }
}

/// The blocks of a BERT encoder whose parameters live under `prefix` (e.g. `encoder` for a classifier whose
/// encoder field is `encoder`; empty for a bare encoder), at `granularity`. `params` are the model's
/// parameters (see [`crate::params::parameters`]); `num_heads` splits heads.
pub fn bert_blocks(
    params: &[ParamInfo],
    prefix: &str,
    num_heads: usize,
    granularity: BlockGranularity,
) -> Result<Vec<Block>> {
    let base = if prefix.is_empty() {
        "layers".to_string()
    } else {
        format!("{prefix}.layers")
    };
    let mut layers: Vec<usize> = params
        .iter()
        .filter_map(|p| {
            p.path
                .strip_prefix(&format!("{base}."))
                .and_then(|rest| rest.split('.').next())
                .and_then(|i| i.parse().ok())
        })
        .collect();
    layers.sort_unstable();
    layers.dedup();
    if layers.is_empty() {
        return Err(HessianError::UnknownBlock {
            name: base,
            message: "the model has no encoder layers under this prefix".into(),
        });
    }
    let whole = |path: String| BlockParam {
        path,
        part: Part::Whole,
    };
    let mut blocks = Vec::new();
    for i in layers {
        let layer = format!("{base}.{i}");
        match granularity {
            BlockGranularity::Layer => blocks.push(Block {
                name: format!("layer.{i}"),
                params: params
                    .iter()
                    .filter(|p| p.path.starts_with(&format!("{layer}.")))
                    .map(|p| whole(p.path.clone()))
                    .collect(),
            }),
            BlockGranularity::Matrix => {
                for (short, module) in [
                    ("query", "attention.query"),
                    ("key", "attention.key"),
                    ("value", "attention.value"),
                    ("attention_output", "attention.output"),
                    ("ffn_in", "intermediate"),
                    ("ffn_out", "output"),
                ] {
                    let mut ps = vec![whole(format!("{layer}.{module}.weight"))];
                    let bias = format!("{layer}.{module}.bias");
                    if params.iter().any(|p| p.path == bias) {
                        ps.push(whole(bias));
                    }
                    blocks.push(Block {
                        name: format!("layer.{i}.{short}"),
                        params: ps,
                    });
                }
            }
            BlockGranularity::Head => {
                let q = format!("{layer}.attention.query.weight");
                let hidden = params
                    .iter()
                    .find(|p| p.path == q)
                    .map(|p| p.shape[1])
                    .ok_or_else(|| HessianError::UnknownBlock {
                        name: q.clone(),
                        message: "the layer has no query weight".into(),
                    })?;
                if num_heads == 0 || hidden % num_heads != 0 {
                    return Err(HessianError::Config {
                        field: "num_heads",
                        message: format!("{hidden} is not divisible into {num_heads} heads"),
                    });
                }
                let dh = hidden / num_heads;
                for h in 0..num_heads {
                    let (start, end) = (h * dh, (h + 1) * dh);
                    let mut ps = Vec::new();
                    for m in ["query", "key", "value"] {
                        ps.push(BlockParam {
                            path: format!("{layer}.attention.{m}.weight"),
                            part: Part::Columns { start, end },
                        });
                        let bias = format!("{layer}.attention.{m}.bias");
                        if params.iter().any(|p| p.path == bias) {
                            ps.push(BlockParam {
                                path: bias,
                                part: Part::Range { start, end },
                            });
                        }
                    }
                    ps.push(BlockParam {
                        path: format!("{layer}.attention.output.weight"),
                        part: Part::Rows { start, end },
                    });
                    blocks.push(Block {
                        name: format!("layer.{i}.head.{h}"),
                        params: ps,
                    });
                }
            }
        }
    }
    Ok(blocks)
}

/// The blocks named in `names`, in that order; an unknown name is an error listing the ones that exist.
pub fn select(blocks: &[Block], names: &[String]) -> Result<Vec<Block>> {
    names
        .iter()
        .map(|n| {
            blocks
                .iter()
                .find(|b| &b.name == n)
                .cloned()
                .ok_or_else(|| HessianError::UnknownBlock {
                    name: n.clone(),
                    message: format!(
                        "the model has {}",
                        blocks
                            .iter()
                            .map(|b| b.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        })
        .collect()
}
