//! An embedding lookup in ONNX. A quantized table stays quantized: its codes (one byte each: ONNX Runtime's
//! `Gather` reads no 4-bit type) and a table of scales (and zero points) per row and group of columns are
//! gathered by the same indices, and only the gathered rows are dequantized, to exactly
//! `QuantizedTensor::dequantize`'s values.

use crate::error::Result;
use crate::graph::{attr_int, Graph};
use crate::head::MatrixExport;
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
