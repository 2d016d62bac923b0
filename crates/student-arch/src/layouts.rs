//! The layouts Hugging Face saves a BERT's weights in, read as one safetensors buffer: `model.safetensors`,
//! sharded safetensors (`model.safetensors.index.json` and its shards) and PyTorch's `pytorch_model.bin` (read by
//! Burn's `pytorch-reader`, which runs no pickled code). Sizes are checked before anything is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{ArchError, Result};

/// The weights file of a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Sharded safetensors: the index that maps every tensor to its shard.
pub const SHARDED_INDEX_FILE: &str = "model.safetensors.index.json";
/// PyTorch's pickled state dict.
pub const PYTORCH_FILE: &str = "pytorch_model.bin";
/// Largest weights file (or sum of shards) read: BERT-large in f32 is 1.3 GB, so 8 GB is far above any BERT.
pub const MAX_WEIGHTS_BYTES: u64 = 8 << 30;

/// The weights of the model directory `dir` as one safetensors buffer, whatever layout Hugging Face saved them
/// in: `model.safetensors`, sharded safetensors (`model.safetensors.index.json` and its shards) or PyTorch's
/// `pytorch_model.bin` (read by Burn's `pytorch-reader`, no unpickling of code). Returns the file that errors
/// should name and the bytes. Sizes are checked against [`MAX_WEIGHTS_BYTES`] before anything is read.
pub fn weights_bytes(dir: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let single = dir.join(WEIGHTS_FILE);
    if single.exists() {
        check_size(&single)?;
        let bytes = std::fs::read(&single).map_err(|e| ArchError::io("reading", &single, e))?;
        return Ok((single, bytes));
    }
    let index = dir.join(SHARDED_INDEX_FILE);
    if index.exists() {
        return Ok((index.clone(), sharded_bytes(dir, &index)?));
    }
    let pickled = dir.join(PYTORCH_FILE);
    if pickled.exists() {
        return Ok((pickled.clone(), pytorch_bytes(&pickled)?));
    }
    Err(ArchError::MissingFile {
        path: single,
        hint: format!(
            "the directory holds none of {WEIGHTS_FILE}, {SHARDED_INDEX_FILE} or {PYTORCH_FILE}; give a Hugging Face \
             BERT directory (`cargo xtask fetch` brings the teacher)"
        ),
    })
}

pub(crate) fn check_size(path: &Path) -> Result<u64> {
    let len = std::fs::metadata(path)
        .map_err(|e| ArchError::io("reading", path, e))?
        .len();
    if len > MAX_WEIGHTS_BYTES {
        return Err(ArchError::CorruptWeights {
            path: path.to_path_buf(),
            message: format!(
                "{len} bytes is beyond any BERT (at most {MAX_WEIGHTS_BYTES}); the file is corrupt or not a BERT's"
            ),
        });
    }
    Ok(len)
}

/// Merges the shards that `index` names (each at most once, all inside `dir`) into one buffer.
fn sharded_bytes(dir: &Path, index: &Path) -> Result<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let corrupt = |message: String| ArchError::CorruptWeights {
        path: index.to_path_buf(),
        message,
    };
    check_size(index)?;
    let text = std::fs::read_to_string(index).map_err(|e| ArchError::io("reading", index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| {
        corrupt(format!(
            "not a safetensors index ({e}); it needs a \"weight_map\""
        ))
    })?;
    let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
    let mut total = 0u64;
    let mut buffers = Vec::new();
    for shard in shards {
        let plain = Path::new(shard);
        if plain.components().count() != 1 || plain.file_name().is_none() {
            return Err(corrupt(format!(
                "shard {shard:?} is not a file name in the model directory"
            )));
        }
        let path = dir.join(plain);
        total += check_size(&path)?;
        if total > MAX_WEIGHTS_BYTES {
            return Err(corrupt(format!(
                "the shards hold more than {MAX_WEIGHTS_BYTES} bytes; beyond any BERT"
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| ArchError::io("reading", &path, e))?;
        buffers.push((path, bytes));
    }
    let mut files = Vec::new();
    for (path, bytes) in &buffers {
        let file = SafeTensors::deserialize(bytes).map_err(|e| ArchError::CorruptWeights {
            path: path.clone(),
            message: e.to_string(),
        })?;
        files.push((path, file));
    }
    let mut views = Vec::new();
    for (name, shard) in &parsed.weight_map {
        let (path, file) = files
            .iter()
            .find(|(p, _)| p.file_name().and_then(|f| f.to_str()) == Some(shard.as_str()))
            .expect("every shard of the map was read");
        let view = file.tensor(name).map_err(|_| ArchError::CorruptWeights {
            path: path.to_path_buf(),
            message: format!("the index puts {name} in this shard, which does not hold it"),
        })?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, None).map_err(|e| corrupt(e.to_string()))
}

/// Reads PyTorch's `pytorch_model.bin` with `pytorch-reader` into a safetensors buffer of the same dtypes.
fn pytorch_bytes(path: &Path) -> Result<Vec<u8>> {
    use pytorch_reader::{DType, PytorchReader};
    check_size(path)?;
    let corrupt = |message: String| ArchError::CorruptWeights {
        path: path.to_path_buf(),
        message,
    };
    let reader = PytorchReader::new(path).map_err(|e| corrupt(e.to_string()))?;
    let mut buffers = Vec::new();
    let mut total = 0u64;
    for (name, tensor) in reader.tensors() {
        let dtype = match tensor.dtype() {
            DType::F64 => Dtype::F64,
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            DType::I64 => Dtype::I64,
            DType::I32 => Dtype::I32,
            DType::I16 => Dtype::I16,
            DType::I8 => Dtype::I8,
            DType::U64 => Dtype::U64,
            DType::U32 => Dtype::U32,
            DType::U16 => Dtype::U16,
            DType::U8 => Dtype::U8,
            DType::Bool => Dtype::BOOL,
        };
        total += tensor.byte_len() as u64;
        if total > MAX_WEIGHTS_BYTES {
            return Err(corrupt(format!(
                "its tensors hold more than {MAX_WEIGHTS_BYTES} bytes; beyond any BERT"
            )));
        }
        let bytes = tensor.read().map_err(|e| corrupt(e.to_string()))?;
        buffers.push((name.clone(), dtype, tensor.shape().to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| corrupt(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| corrupt(e.to_string()))
}
