//! A linear layer `y = x·Wᵀ + b` in ONNX, with its weight in the representation that keeps its bits:
//!
//! - f32: `MatMul` with the transposed matrix.
//! - 2- to 4-bit codes whose groups span whole blocks of 16–128 inputs: ONNX Runtime's
//!   `com.microsoft.MatMulNBits` at 4 bits, one scale per (output, block) and the zero point 8 (symmetric) or the
//!   group's (asymmetric). Every grouping of our format fits it when the group's width is a multiple of 16 (per
//!   tensor, channel, head and block:32/64/128 on BERT's shapes): a group wider than a block repeats its scale.
//! - Other codes (5 to 8 bits, or groups no block fits): `DequantizeLinear` of int8 codes (uint8 with zero
//!   points when asymmetric) into `MatMul`, per tensor, per output or input channel when the groups are whole
//!   rows or columns, else blocked along the inputs (opset 21). Codes of fewer than 8 bits then take a byte each.
//!
//! Every representation dequantizes to exactly the values of `QuantizedTensor::dequantize` (`w = s·q`).

use crate::error::{ExportError, Result};
use crate::graph::{attr_int, Graph, MS_DOMAIN};
use crate::head::MatrixExport;
use crate::tensors::{Tensors, Weight};
use quant::QuantizedTensor;

/// `x·Wᵀ + b` for the layer `prefix` (`prefix.weight` `[out, in]`, `prefix.bias` `[out]`); returns `y`'s name.
pub fn linear(
    g: &mut Graph,
    tensors: &Tensors,
    prefix: &str,
    x: &str,
    shape: [usize; 2],
    report: &mut Vec<MatrixExport>,
) -> Result<String> {
    let name = format!("{prefix}.weight");
    let before = g.initializer_bytes;
    let (y, bits, our_bytes, representation) = match tensors.weight("linear", &name, &shape)? {
        Weight::Dense(w) => {
            let wt = g.f32s(&name, &[shape[1], shape[0]], &transpose(w, shape));
            let y = g.op("MatMul", &[x, &wt], vec![]);
            (y, 32, 4 * w.len(), "f32 MatMul".to_string())
        }
        Weight::Quantized(q) => {
            let (y, representation) = match nbits_block(q) {
                Some(block) => (
                    matmul_nbits(g, q, &name, x, block)?,
                    format!("MatMulNBits 4-bit, block {block}"),
                ),
                None => dequantize_matmul(g, q, &name, x)?,
            };
            (y, q.spec.bits, q.bytes(), representation)
        }
    };
    report.push(MatrixExport {
        name,
        bits,
        representation,
        onnx_bytes: g.initializer_bytes - before,
        our_bytes,
    });
    let bias = tensors.values("linear", &format!("{prefix}.bias"), &[shape[0]])?;
    let b = g.f32s(&format!("{prefix}.bias"), &[shape[0]], &bias);
    Ok(g.op("Add", &[&y, &b], vec![]))
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(w: &[f32], [rows, cols]: [usize; 2]) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// The `MatMulNBits` block that represents `q` exactly: codes of at most 4 bits (asymmetric zero points within
/// 0..=15) and a group width that a power-of-two block of 16 to 128 divides.
pub(crate) fn nbits_block(q: &QuantizedTensor) -> Option<usize> {
    if q.spec.bits > 4 {
        return None;
    }
    if !q.spec.symmetric
        && q.zero_points
            .iter()
            .any(|z| !(0.0..=15.0).contains(&z.to_f32()))
    {
        return None;
    }
    [128, 64, 32, 16]
        .into_iter()
        .find(|b| q.group[1].is_multiple_of(*b))
}

/// `com.microsoft.MatMulNBits(x, B, scales, zero_points)` with B `[N = out, K / block, block / 2]`.
fn matmul_nbits(
    g: &mut Graph,
    q: &QuantizedTensor,
    name: &str,
    x: &str,
    block: usize,
) -> Result<String> {
    let [n, k] = q.shape;
    let blocks = k / block;
    let codes = q.signed_codes();
    let mut packed = vec![0u8; n * k / 2];
    let mut scales = Vec::with_capacity(n * blocks);
    let zp_row = blocks.div_ceil(2);
    let mut zero_points = vec![0u8; n * zp_row];
    for r in 0..n {
        for b in 0..blocks {
            let group = q.group_of(r, b * block);
            scales.push(q.scales[group].to_f32());
            let zp = if q.spec.symmetric {
                8
            } else {
                q.zero_points[group].to_f32() as i32
            };
            zero_points[r * zp_row + b / 2] |= (zp as u8) << (4 * (b % 2));
            for i in 0..block {
                let c = b * block + i;
                let u = codes[r * k + c] + zp;
                if !(0..16).contains(&u) {
                    return Err(ExportError::Unsupported {
                        what: name.into(),
                        message: format!("code {u} at ({r}, {c}) does not fit 4 bits"),
                    });
                }
                packed[(r * k + c) / 2] |= (u as u8) << (4 * (c % 2));
            }
        }
    }
    let b_name = g.u8s(&format!("{name}.qweight"), &[n, blocks, block / 2], packed);
    let s_name = g.f32s(&format!("{name}.scales"), &[n * blocks], &scales);
    let mut inputs = vec![x.to_string(), b_name, s_name];
    if !q.spec.symmetric {
        inputs.push(g.u8s(&format!("{name}.zero_points"), &[n * zp_row], zero_points));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attrs = vec![
        attr_int("K", k as i64),
        attr_int("N", n as i64),
        attr_int("bits", 4),
        attr_int("block_size", block as i64),
    ];
    Ok(g.op_in(MS_DOMAIN, "MatMulNBits", &refs, attrs))
}

/// Where `DequantizeLinear`'s scales (and zero points) lie for the transposed `[in, out]` codes of `q`.
struct ScaleLayout {
    /// The scales' shape: `[]` per tensor, `[out]` or `[in]` per channel, `[in / block, out]` blocked.
    dims: Vec<usize>,
    /// `DequantizeLinear`'s `axis` (none per tensor).
    axis: Option<i64>,
    /// `DequantizeLinear`'s `block_size` (opset 21), when blocked.
    block: Option<usize>,
    /// For each scale, an element `(row, col)` of the `[out, in]` matrix whose group it is.
    pick: Vec<(usize, usize)>,
    /// The layout in words, for the report.
    kind: String,
}

fn scale_layout(q: &QuantizedTensor) -> ScaleLayout {
    let [rows, cols] = q.shape;
    let [gr, gc] = q.group;
    let layout = |dims, axis, block, pick, kind: &str| ScaleLayout {
        dims,
        axis,
        block,
        pick,
        kind: kind.to_string(),
    };
    if gr == rows && gc == cols {
        layout(vec![], None, None, vec![(0, 0)], "per tensor")
    } else if gc == cols {
        let pick = (0..rows).map(|r| (r, 0)).collect();
        layout(vec![rows], Some(1), None, pick, "per output channel")
    } else if gr == rows {
        let pick = (0..cols).map(|c| (0, c)).collect();
        layout(vec![cols], Some(0), None, pick, "per input channel")
    } else {
        let pick = (0..cols / gc)
            .flat_map(|b| (0..rows).map(move |r| (r, b * gc)))
            .collect();
        let kind = format!("blocked by {gc} inputs");
        layout(vec![cols / gc, rows], Some(0), Some(gc), pick, &kind)
    }
}

/// `MatMul(x, DequantizeLinear(Wᵀ codes, scales, zero points))`, per tensor, per channel or blocked.
fn dequantize_matmul(
    g: &mut Graph,
    q: &QuantizedTensor,
    name: &str,
    x: &str,
) -> Result<(String, String)> {
    let [rows, cols] = q.shape;
    let codes = q.signed_codes();
    // The codes transposed to [in = cols, out = rows]; asymmetric ones back to unsigned with their zero point.
    let mut zp_of = vec![0i32; rows * cols];
    if !q.spec.symmetric {
        for (i, z) in zp_of.iter_mut().enumerate() {
            *z = q.zero_points[q.group_of(i / cols, i % cols)].to_f32() as i32;
        }
    }
    let stored: Vec<i32> = (0..cols * rows)
        .map(|t| {
            let (c, r) = (t / rows, t % rows);
            codes[r * cols + c] + zp_of[r * cols + c]
        })
        .collect();
    let ScaleLayout {
        dims: scale_dims,
        axis,
        block,
        pick,
        kind,
    } = scale_layout(q);
    let scales: Vec<f32> = pick
        .iter()
        .map(|&(r, c)| q.scales[q.group_of(r, c)].to_f32())
        .collect();
    let dims = [cols, rows];
    let (w_name, zp_name) = if q.spec.symmetric {
        let values: Vec<i8> = stored.iter().map(|&v| v as i8).collect();
        (g.i8s(&format!("{name}.qweight"), &dims, &values), None)
    } else {
        let values: Vec<u8> = stored.iter().map(|&v| v as u8).collect();
        let zps: Vec<u8> = pick
            .iter()
            .map(|&(r, c)| q.zero_points[q.group_of(r, c)].to_f32() as u8)
            .collect();
        let w = g.u8s(&format!("{name}.qweight"), &dims, values);
        (
            w,
            Some(g.u8s(&format!("{name}.zero_points"), &scale_dims, zps)),
        )
    };
    let s_name = g.f32s(&format!("{name}.scales"), &scale_dims, &scales);
    let mut inputs = vec![w_name.as_str(), s_name.as_str()];
    if let Some(z) = &zp_name {
        inputs.push(z);
    }
    let mut attrs = vec![];
    if let Some(axis) = axis {
        attrs.push(attr_int("axis", axis));
    }
    if let Some(block) = block {
        attrs.push(attr_int("block_size", block as i64));
        g.opset = g.opset.max(21);
    }
    let w = g.op("DequantizeLinear", &inputs, attrs);
    let y = g.op("MatMul", &[x, &w], vec![]);
    Ok((
        y,
        format!(
            "{}-bit codes as {}, DequantizeLinear {kind} → MatMul",
            q.spec.bits,
            if q.spec.symmetric { "int8" } else { "uint8" }
        ),
    ))
}
