//! The one place where a linear layer's weight changes layout: Burn's `Linear` holds `[d_input, d_output]`,
//! Hugging Face's checkpoints and the quantized formats hold `[d_output, d_input]`.

/// A row-major `[rows, cols]` matrix as row-major `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(data.len(), rows * cols, "transpose: {rows}x{cols}");
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_by_three_matrix_by_hand() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(transpose(&m, 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(transpose(&transpose(&m, 2, 3), 3, 2), m.to_vec());
    }
}
