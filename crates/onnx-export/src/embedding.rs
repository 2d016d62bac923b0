//! An embedding lookup in ONNX. A quantized table stays quantized, and only the gathered rows are dequantized,
//! to exactly `QuantizedTensor::dequantize`'s values:
//!
//! - codes of at most 4 bits whose groups span whole blocks of 16–128 columns: ONNX Runtime's
//!   `com.microsoft.GatherBlockQuantized`, two codes a byte, one scale per (row, block), zero point 8 (symmetric)
//!   or the group's (asymmetric);
//! - other codes: one byte each (`Gather` reads no narrower type), gathered beside a table of scales (and zero
//!   points) per row and group of columns, then scaled.

use crate::error::Result;
use crate::graph::MS_DOMAIN;
use crate::graph::{attr_int, Graph};
use crate::head::MatrixExport;
use crate::linear::nbits_block;
use crate::proto::tensor_proto::DataType;
use crate::tensors::{Tensors, Weight};

/// Rows `indices` of the table `name` (`[rows, width]`); the result has rank `rank` (`indices`' rank + 1).
pub fn embedding(
    g: &mut Graph,
    tensors: &Tensors,
    name: &str,
    shape: [usize; 2],
    indices: &str,
    rank: usize,
    report: &mut Vec<MatrixExport>,
) -> Result<String> {
    let before = g.initializer_bytes;
    let [rows, width] = shape;
    let gather =
        |g: &mut Graph, table: &str| g.op("Gather", &[table, indices], vec![attr_int("axis", 0)]);
    let (out, bits, our_bytes, representation) = match tensors.weight("embedding", name, &shape)? {
        Weight::Dense(values) => {
            let table = g.f32s(name, &shape, values);
            (
                gather(g, &table),
                32,
                4 * values.len(),
                "f32 Gather".to_string(),
            )
        }
        Weight::Quantized(q) if nbits_block(q).is_some() => {
            let block = nbits_block(q).expect("checked");
            let out = gather_block_quantized(g, q, name, indices, block);
            let representation = format!(
                "{}-bit codes packed, GatherBlockQuantized, block {block}",
                q.spec.bits
            );
            (out, q.spec.bits, q.bytes(), representation)
        }
        Weight::Quantized(q) => {
            let gc = q.group[1];
            let blocks = width / gc;
            let codes = q.signed_codes();
            let group_value =
                |values: &[half::f16], r: usize, b: usize| values[q.group_of(r, b * gc)].to_f32();
            let scales: Vec<f32> = (0..rows * blocks)
                .map(|i| group_value(&q.scales, i / blocks, i % blocks))
                .collect();
            let table = if q.spec.symmetric {
                let stored: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
                g.i8s(&format!("{name}.qweight"), &shape, &stored)
            } else {
                let stored: Vec<u8> = codes
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        (c + q.zero_points[q.group_of(i / width, i % width)].to_f32() as i32) as u8
                    })
                    .collect();
                g.u8s(&format!("{name}.qweight"), &shape, stored)
            };
            let rows_codes = gather(g, &table);
            let mut values = g.op(
                "Cast",
                &[&rows_codes],
                vec![attr_int("to", DataType::Float as i64)],
            );
            // [.., width] → [.., blocks, gc], so that each block of a row meets its scale.
            let blocked: Vec<i64> = std::iter::repeat_n(0, rank - 1)
                .chain([blocks as i64, gc as i64])
                .collect();
            let blocked = g.constant_i64(&blocked);
            values = g.op("Reshape", &[&values, &blocked], vec![]);
            let last = g.constant_i64(&[-1]);
            if !q.spec.symmetric {
                let zps: Vec<f32> = (0..rows * blocks)
                    .map(|i| group_value(&q.zero_points, i / blocks, i % blocks))
                    .collect();
                let zp_table = g.f32s(&format!("{name}.zero_points"), &[rows, blocks], &zps);
                let zp = gather(g, &zp_table);
                let zp = g.op("Unsqueeze", &[&zp, &last], vec![]);
                values = g.op("Sub", &[&values, &zp], vec![]);
            }
            let scale_table = g.f32s(&format!("{name}.scales"), &[rows, blocks], &scales);
            let scale = gather(g, &scale_table);
            let scale = g.op("Unsqueeze", &[&scale, &last], vec![]);
            values = g.op("Mul", &[&values, &scale], vec![]);
            let flat: Vec<i64> = std::iter::repeat_n(0, rank - 1)
                .chain([width as i64])
                .collect();
            let flat = g.constant_i64(&flat);
            let out = g.op("Reshape", &[&values, &flat], vec![]);
            let representation = format!(
                "{}-bit codes as {}, Gather then scale per row and {gc} columns",
                q.spec.bits,
                if q.spec.symmetric { "int8" } else { "uint8" }
            );
            (out, q.spec.bits, q.bytes(), representation)
        }
    };
    report.push(MatrixExport {
        name: name.into(),
        bits,
        representation,
        onnx_bytes: g.initializer_bytes - before,
        our_bytes,
    });
    Ok(out)
}

/// `com.microsoft.GatherBlockQuantized(data, indices, scales[, zero_points])`: `data` `[rows, width / 2]` (two
/// 4-bit codes a byte, low nibble first), scales `[rows, width / block]`, zero points packed likewise (absent:
/// 8, the symmetric codes' offset).
fn gather_block_quantized(
    g: &mut Graph,
    q: &quant::QuantizedTensor,
    name: &str,
    indices: &str,
    block: usize,
) -> String {
    let [rows, width] = q.shape;
    let blocks = width / block;
    let codes = q.signed_codes();
    let zp_of = |r: usize, b: usize| -> i32 {
        if q.spec.symmetric {
            8
        } else {
            q.zero_points[q.group_of(r, b * block)].to_f32() as i32
        }
    };
    let mut packed = vec![0u8; rows * width / 2];
    let mut scales = Vec::with_capacity(rows * blocks);
    let zp_row = blocks.div_ceil(2);
    let mut zero_points = vec![0u8; rows * zp_row];
    for r in 0..rows {
        for b in 0..blocks {
            scales.push(q.scales[q.group_of(r, b * block)].to_f32());
            let zp = zp_of(r, b);
            zero_points[r * zp_row + b / 2] |= (zp as u8) << (4 * (b % 2));
            for c in b * block..(b + 1) * block {
                // Fits 4 bits: nbits_block admits only codes of at most 4 bits and zero points in 0..=15.
                let u = (codes[r * width + c] + zp) as u8;
                packed[(r * width + c) / 2] |= u << (4 * (c % 2));
            }
        }
    }
    let data = g.u8s(&format!("{name}.qweight"), &[rows, width / 2], packed);
    let s = g.f32s(&format!("{name}.scales"), &[rows, blocks], &scales);
    let mut inputs = vec![data, indices.to_string(), s];
    if !q.spec.symmetric {
        inputs.push(g.u8s(&format!("{name}.zero_points"), &[rows, zp_row], zero_points));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attrs = vec![
        attr_int("gather_axis", 0),
        attr_int("quantize_axis", 1),
        attr_int("block_size", block as i64),
        attr_int("bits", 4),
    ];
    g.op_in(MS_DOMAIN, "GatherBlockQuantized", &refs, attrs)
}
