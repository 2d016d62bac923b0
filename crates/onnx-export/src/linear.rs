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
//!
//! With [`crate::Matmul::Integer`] (the default), a matrix that our integer engine runs as one integer GEMM
//! (`quant::kernels::IntLinear`: symmetric codes of at most 8 bits, one scale per output row or per input
//! column band) is exported as that engine computes it, so that ONNX Runtime gives `predict`'s outputs rather
//! than the dequantized model's: each token's inputs (times the column scales) quantized to unsigned 8 bits
//! with a zero point, the range stretched to include 0 and rounded half to even, exactly as
//! `quant::kernels::activations::quantize_token`; `MatMulInteger` (uint8 × int8 → int32, exact); then
//! `(sum − zero · Σ_k w) · (scale · row_scale) + b` in the engine's order of operations. Codes beyond ±64 (8-bit
//! matrices) are stored as uint8 offset by 128 with the weight zero point 128: on CPUs without VNNI ONNX
//! Runtime's uint8 × int8 kernel sums pairs in saturating i16, which such codes can overflow, while its
//! uint8 × uint8 kernel widens first and is exact. Codes of 4 bits or
//! fewer stay packed two to a byte and are unpacked by `BitwiseAnd`/`BitShift` on initializers only, which ONNX
//! Runtime folds into a constant when the session loads.

use crate::error::{ExportError, Result};
use crate::graph::{attr_int, attr_string, Graph, MS_DOMAIN};
use crate::head::MatrixExport;
use crate::proto::tensor_proto::DataType;
use crate::tensors::{Tensors, Weight};
use quant::kernels::{IntLinear, SATURATION_FREE_CODE};
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
        Weight::Quantized(q) if g.integer_matmul && IntLinear::supports(q) => {
            let bias = tensors.values("linear", &format!("{prefix}.bias"), &[shape[0]])?;
            let (y, representation) = integer_matmul(g, q, &name, x, &bias)?;
            report.push(MatrixExport {
                name,
                bits: q.spec.bits,
                representation,
                onnx_bytes: g.initializer_bytes - before,
                our_bytes: q.bytes(),
            });
            return Ok(y);
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
fn transpose<T: Copy + Default>(w: &[T], [rows, cols]: [usize; 2]) -> Vec<T> {
    let mut t = vec![T::default(); w.len()];
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

/// `x·Wᵀ + b` as our integer engine computes it (`quant::kernels::IntLinear`); returns `y` and the
/// representation in words.
fn integer_matmul(
    g: &mut Graph,
    q: &QuantizedTensor,
    name: &str,
    x: &str,
    bias: &[f32],
) -> Result<(String, String)> {
    let [rows, cols] = q.shape;
    let codes = q.signed_codes();
    // The engine's own scales: per output row, or per input column folded into the activations.
    let (row_scale, col_scale) = IntLinear::scales(q);
    let row_sums: Vec<i32> = (0..rows)
        .map(|r| codes[r * cols..(r + 1) * cols].iter().sum())
        .collect();
    // The codes transposed to [in = cols, out = rows], as MatMulInteger's B.
    let transposed = transpose(&codes, q.shape);
    let dims = [cols, rows];
    // Without VNNI, ONNX Runtime multiplies uint8 × int8 pairs with `vpmaddubsw`, whose i16 pair sums saturate
    // past 32767 (scripts/ort_saturation.py). Codes within ±64 cannot reach it (255 · 64 · 2 = 32640); larger
    // ones are stored as uint8 offset by 128 with the weight zero point 128, which ONNX Runtime multiplies as
    // uint8 × uint8, widened to i16 before multiplying: exact on every CPU.
    let offset_codes = codes
        .iter()
        .any(|c| c.unsigned_abs() > SATURATION_FREE_CODE);
    let (w, held) = if offset_codes {
        let values: Vec<u8> = transposed.iter().map(|&v| (v + 128) as u8).collect();
        (
            g.u8s(&format!("{name}.qweight"), &dims, values),
            "codes as uint8 offset by 128 (weight zero point 128: uint8 × uint8, exact where uint8 × int8 \
             saturates on CPUs without VNNI)",
        )
    } else if q.spec.bits <= 4 && transposed.len().is_multiple_of(2) {
        (
            unpacked_int4(g, name, &transposed, &dims)?,
            "codes packed two to a byte, unpacked at load",
        )
    } else {
        let values: Vec<i8> = transposed.iter().map(|&v| v as i8).collect();
        (
            g.i8s(&format!("{name}.qweight"), &dims, &values),
            "codes as int8",
        )
    };
    let (codes_x, zero, scale) = quantize_tokens(g, x, col_scale.as_deref().map(|cs| (name, cs)));
    let sums = if offset_codes {
        let offset = g.u8s(&format!("{name}.qweight_zero"), &[], vec![128]);
        g.op("MatMulInteger", &[&codes_x, &w, "", &offset], vec![])
    } else {
        g.op("MatMulInteger", &[&codes_x, &w], vec![])
    };
    let row_sums = g.i32s(&format!("{name}.row_sums"), &[rows], &row_sums);
    let offset = g.op("Mul", &[&zero, &row_sums], vec![]);
    let sums = g.op("Sub", &[&sums, &offset], vec![]);
    let sums = g.op(
        "Cast",
        &[&sums],
        vec![attr_int("to", DataType::Float as i64)],
    );
    let row_scale = g.f32s(&format!("{name}.row_scales"), &[rows], &row_scale);
    let scales = g.op("Mul", &[&scale, &row_scale], vec![]);
    let y = g.op("Mul", &[&sums, &scales], vec![]);
    let b = g.f32s(&format!("{name}.bias"), &[rows], bias);
    let y = g.op("Add", &[&y, &b], vec![]);
    let per = if col_scale.is_some() {
        "input column band"
    } else {
        "output row"
    };
    Ok((
        y,
        format!(
            "{}-bit {held}, MatMulInteger with per-token uint8 activations (our integer engine), a scale per {per}",
            q.spec.bits
        ),
    ))
}

/// Signed codes in -8..=7, `[in, out]` row-major, stored two to a byte (`code + 8`, low nibble first) and
/// unpacked to int8 by operators on initializers only.
fn unpacked_int4(g: &mut Graph, name: &str, codes: &[i32], dims: &[usize; 2]) -> Result<String> {
    let mut packed = vec![0u8; codes.len() / 2];
    for (i, &c) in codes.iter().enumerate() {
        if !(-8..=7).contains(&c) {
            return Err(ExportError::Unsupported {
                what: name.into(),
                message: format!("code {c} does not fit 4 bits"),
            });
        }
        packed[i / 2] |= ((c + 8) as u8) << (4 * (i % 2));
    }
    let p = g.u8s(&format!("{name}.qweight_packed"), &[packed.len()], packed);
    let mask = g.u8s(&format!("{name}.nibble_mask"), &[], vec![15]);
    let four = g.u8s(&format!("{name}.nibble_shift"), &[], vec![4]);
    let lo = g.op("BitwiseAnd", &[&p, &mask], vec![]);
    let hi = g.op(
        "BitShift",
        &[&p, &four],
        vec![attr_string("direction", "RIGHT")],
    );
    let last = g.constant_i64(&[1]);
    let lo = g.op("Unsqueeze", &[&lo, &last], vec![]);
    let hi = g.op("Unsqueeze", &[&hi, &last], vec![]);
    let pairs = g.op("Concat", &[&lo, &hi], vec![attr_int("axis", 1)]);
    let shape = g.constant_i64(&[dims[0] as i64, dims[1] as i64]);
    let u = g.op("Reshape", &[&pairs, &shape], vec![]);
    let u = g.op("Cast", &[&u], vec![attr_int("to", DataType::Int32 as i64)]);
    let eight = g.i32s(&format!("{name}.nibble_offset"), &[], &[8]);
    let s = g.op("Sub", &[&u, &eight], vec![]);
    g.opset = g.opset.max(18);
    Ok(g.op("Cast", &[&s], vec![attr_int("to", DataType::Int8 as i64)]))
}

/// Each token of `x` (times `col_scale`, when the weight has one) quantized as
/// `quant::kernels::activations::quantize_token` does: `(codes: uint8, zero: int32, scale: f32)`, the last two
/// `[…, 1]`. A token whose range is 0 gets codes 0, zero 0 and scale 1, as there. Without column scales the
/// result is shared by every matrix that reads `x` (Q, K and V).
fn quantize_tokens(
    g: &mut Graph,
    x: &str,
    col_scale: Option<(&str, &[f32])>,
) -> (String, String, String) {
    if col_scale.is_none() {
        if let Some(hit) = g.quantized_inputs.get(x) {
            return hit.clone();
        }
    }
    let xs = match col_scale {
        Some((name, cs)) => {
            let cs = g.f32s(&format!("{name}.col_scales"), &[cs.len()], cs);
            g.op("Mul", &[x, &cs], vec![])
        }
        None => x.to_string(),
    };
    g.opset = g.opset.max(18);
    let axis = g.constant_i64(&[-1]);
    let keep = || vec![attr_int("keepdims", 1)];
    let zero_f = g.constant_f32(&[0.0], &[]);
    let lo = g.op("ReduceMin", &[&xs, &axis], keep());
    let lo = g.op("Min", &[&lo, &zero_f], vec![]);
    let hi = g.op("ReduceMax", &[&xs, &axis], keep());
    let hi = g.op("Max", &[&hi, &zero_f], vec![]);
    let range = g.op("Sub", &[&hi, &lo], vec![]);
    let positive = g.op("Greater", &[&range, &zero_f], vec![]);
    let c255 = g.constant_f32(&[255.0], &[]);
    let one = g.constant_f32(&[1.0], &[]);
    let scale = g.op("Div", &[&range, &c255], vec![]);
    let scale = g.op("Where", &[&positive, &scale, &one], vec![]);
    let inv = g.op("Div", &[&one, &scale], vec![]);
    let neg = g.op("Neg", &[&lo], vec![]);
    let zero = g.op("Mul", &[&neg, &inv], vec![]);
    let zero = g.op("Round", &[&zero], vec![]);
    let zero = g.op("Clip", &[&zero, &zero_f, &c255], vec![]);
    let v = g.op("Mul", &[&xs, &inv], vec![]);
    let v = g.op("Add", &[&v, &zero], vec![]);
    let v = g.op("Round", &[&v], vec![]);
    let v = g.op("Clip", &[&v, &zero_f, &c255], vec![]);
    let codes = g.op("Cast", &[&v], vec![attr_int("to", DataType::Uint8 as i64)]);
    let zero = g.op(
        "Cast",
        &[&zero],
        vec![attr_int("to", DataType::Int32 as i64)],
    );
    let out = (codes, zero, scale);
    if col_scale.is_none() {
        g.quantized_inputs.insert(x.to_string(), out.clone());
    }
    out
}
