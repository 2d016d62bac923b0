//! Group-wise quantization of a weight matrix: 2, 3, 4 or 8 bits, symmetric or asymmetric, one f16 scale (and
//! zero point) per group, with groups per tensor, per output channel, per attention head (Q-BERT) or per block
//! of k consecutive inputs (llama.cpp's formats).
//!
//! Matrices are in Hugging Face's layout, `[rows = out_features, cols = in_features]`. A group is a rectangle of
//! `group_rows × group_cols` elements, and the groups tile the matrix:
//!
//! | granularity | group | scales for a `[R, C]` matrix |
//! |---|---|---|
//! | tensor | `R × C` | 1 |
//! | channel | `1 × C` (one output row) | `R` |
//! | head, Q/K/V (`HeadAxis::Rows`) | `head_dim × C` (the head's output rows) | `heads` |
//! | head, O (`HeadAxis::Columns`) | `R × head_dim` (the head's input columns) | `heads` |
//! | block:k | `1 × k` | `R · C / k` |
//!
//! Codes round to nearest. Symmetric: `w ≈ s·q`, `q ∈ [−(2^(b−1)−1), 2^(b−1)−1]`, `s = max|w| / qmax`. Asymmetric:
//! `w ≈ s·(q − z)`, `q ∈ [0, 2^b − 1]`, `s = (max − min) / (2^b − 1)`, `z = round(−min / s)`. The scale is rounded
//! *up* to the next f16, so every element stays within range and `|w − deq(q(w))| ≤ s/2` holds with the stored
//! scale (up to f32 rounding).

use half::f16;
use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};

/// Bit widths with a format.
pub const SUPPORTED_BITS: [u32; 4] = [2, 3, 4, 8];

/// Checks that `bits` is one of [`SUPPORTED_BITS`].
pub fn check_bits(bits: u32, what: &str) -> Result<u32> {
    if SUPPORTED_BITS.contains(&bits) {
        Ok(bits)
    } else {
        Err(QuantError::UnsupportedBits {
            bits,
            what: what.into(),
        })
    }
}

/// Which elements share a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One range for the whole tensor.
    Tensor,
    /// One range per output channel (row).
    Channel,
    /// One range per attention head: the head's rows of Q, K, V and its columns of O (Q-BERT's group-wise
    /// quantization). Matrices outside attention fall back to per channel.
    Head,
    /// One range per block of `k` consecutive inputs of a row (k = 32, 64 or 128).
    Block(usize),
    /// Q-BERT's layer-wise baseline: one range for a layer's Q, K, V and O together (the feed-forward matrices
    /// one per tensor). Each matrix is stored per tensor, with the shared scale.
    Layer,
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tensor => write!(f, "tensor"),
            Self::Channel => write!(f, "channel"),
            Self::Head => write!(f, "head"),
            Self::Block(k) => write!(f, "block:{k}"),
            Self::Layer => write!(f, "layer"),
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = QuantError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |message: &str| QuantError::Granularity {
            found: s.into(),
            message: message.into(),
        };
        match s {
            "tensor" => Ok(Self::Tensor),
            "channel" => Ok(Self::Channel),
            "head" => Ok(Self::Head),
            "layer" => Ok(Self::Layer),
            _ => {
                let k = s.strip_prefix("block:").ok_or_else(|| {
                    bad("expected layer, tensor, channel, head or block:K (K = 32, 64 or 128)")
                })?;
                match k.parse::<usize>() {
                    Ok(k @ (32 | 64 | 128)) => Ok(Self::Block(k)),
                    _ => Err(bad("the block size K must be 32, 64 or 128")),
                }
            }
        }
    }
}

/// How a matrix relates to the attention heads, for [`Granularity::Head`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadAxis {
    /// Q, K, V: each head owns `head_dim` consecutive output rows.
    Rows,
    /// O: each head owns `head_dim` consecutive input columns.
    Columns,
}

/// How to quantize one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantSpec {
    /// 2, 3, 4 or 8.
    pub bits: u32,
    /// Symmetric (no zero point) or asymmetric.
    pub symmetric: bool,
    /// Which elements share a range.
    pub granularity: Granularity,
}

impl QuantSpec {
    /// A symmetric spec.
    pub fn symmetric(bits: u32, granularity: Granularity) -> Self {
        Self {
            bits,
            symmetric: true,
            granularity,
        }
    }

    /// The largest code magnitude (symmetric) or the largest code (asymmetric).
    pub fn qmax(&self) -> i32 {
        if self.symmetric {
            (1 << (self.bits - 1)) - 1
        } else {
            (1 << self.bits) - 1
        }
    }

    /// The rectangle of elements that share a range, for a `[rows, cols]` matrix. `head` gives the axis and the
    /// number of heads for attention matrices under [`Granularity::Head`].
    pub fn group_shape(
        &self,
        rows: usize,
        cols: usize,
        head: Option<(HeadAxis, usize)>,
    ) -> Result<[usize; 2]> {
        check_bits(self.bits, "a quantization spec")?;
        if rows == 0 || cols == 0 {
            return Err(QuantError::Shape {
                op: "group_shape",
                message: format!("empty matrix [{rows}, {cols}]"),
            });
        }
        let divides = |what: &str, n: usize, by: usize| -> Result<usize> {
            if by == 0 || !n.is_multiple_of(by) {
                Err(QuantError::Shape {
                    op: "group_shape",
                    message: format!(
                        "{what}: {n} is not divisible by {by} ([{rows}, {cols}] matrix, {self:?})"
                    ),
                })
            } else {
                Ok(n / by)
            }
        };
        Ok(match (self.granularity, head) {
            (Granularity::Tensor | Granularity::Layer, _) => [rows, cols],
            (Granularity::Channel, _) | (Granularity::Head, None) => [1, cols],
            (Granularity::Head, Some((HeadAxis::Rows, heads))) => {
                [divides("rows per head", rows, heads)?, cols]
            }
            (Granularity::Head, Some((HeadAxis::Columns, heads))) => {
                [rows, divides("columns per head", cols, heads)?]
            }
            (Granularity::Block(k), _) => {
                divides("columns per block", cols, k)?;
                [1, k]
            }
        })
    }
}

/// A quantized matrix: packed codes, one f16 scale (and zero point) per group.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedTensor {
    /// `[rows, cols]`.
    pub shape: [usize; 2],
    /// How it was quantized.
    pub spec: QuantSpec,
    /// `[group_rows, group_cols]`: the rectangle sharing one range.
    pub group: [usize; 2],
    /// One per group, groups in row-major order.
    pub scales: Vec<f16>,
    /// One per group (integers stored as f16, exact up to 2048); empty when symmetric.
    pub zero_points: Vec<f16>,
    /// Codes as unsigned integers (`q + qmax` when symmetric), `bits` each, little-endian bit order, row-major.
    pub packed: Vec<u8>,
}

/// Rounds `x` up to the nearest f16 (the stored scale must never be smaller than the range needs).
fn f16_up(x: f32) -> f16 {
    let h = f16::from_f32(x);
    if h.to_f32() >= x {
        h
    } else {
        f16::from_bits(h.to_bits() + 1)
    }
}

/// Writes `bits`-bit unsigned codes into a little-endian bit stream.
pub fn pack(codes: &[u8], bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
    if bits == 8 {
        out.copy_from_slice(codes);
        return out;
    }
    for (i, &c) in codes.iter().enumerate() {
        let bit = i * bits as usize;
        let v = (c as u16) << (bit % 8);
        out[bit / 8] |= v as u8;
        if bit % 8 + bits as usize > 8 {
            out[bit / 8 + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Reads `n` codes of `bits` bits back from [`pack`]'s stream.
pub fn unpack(packed: &[u8], bits: u32, n: usize) -> Vec<u8> {
    if bits == 8 {
        return packed[..n].to_vec();
    }
    let mask = (1u16 << bits) - 1;
    (0..n)
        .map(|i| {
            let bit = i * bits as usize;
            let lo = packed[bit / 8] as u16;
            let hi = packed.get(bit / 8 + 1).copied().unwrap_or(0) as u16;
            (((lo | (hi << 8)) >> (bit % 8)) & mask) as u8
        })
        .collect()
}

impl QuantizedTensor {
    /// Quantizes a row-major `[rows, cols]` matrix. `name` appears in errors.
    pub fn quantize(
        name: &str,
        values: &[f32],
        shape: [usize; 2],
        spec: QuantSpec,
        head: Option<(HeadAxis, usize)>,
    ) -> Result<Self> {
        Self::quantize_in_range(name, values, shape, spec, head, None)
    }

    /// [`QuantizedTensor::quantize`] with every group's range widened to `range` (`[lo, hi]`) when given: how
    /// [`Granularity::Layer`] shares one range among a layer's attention matrices.
    pub fn quantize_in_range(
        name: &str,
        values: &[f32],
        shape: [usize; 2],
        spec: QuantSpec,
        head: Option<(HeadAxis, usize)>,
        range: Option<[f32; 2]>,
    ) -> Result<Self> {
        let [rows, cols] = shape;
        if values.len() != rows * cols {
            return Err(QuantError::Shape {
                op: "quantize",
                message: format!(
                    "`{name}` has {} values, shape [{rows}, {cols}] needs {}",
                    values.len(),
                    rows * cols
                ),
            });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::NonFinite {
                op: "quantize",
                tensor: name.into(),
                index,
                value: values[index],
            });
        }
        let group = spec.group_shape(rows, cols, head)?;
        let [gr, gc] = group;
        let (ngr, ngc) = (rows / gr, cols / gc);
        let qmax = spec.qmax();
        let mut scales = Vec::with_capacity(ngr * ngc);
        let mut zero_points = Vec::new();
        let mut codes = vec![0u8; rows * cols];
        for g_row in 0..ngr {
            for g_col in 0..ngc {
                let cells = || {
                    (g_row * gr..(g_row + 1) * gr).flat_map(move |r| {
                        (g_col * gc..(g_col + 1) * gc).map(move |c| r * cols + c)
                    })
                };
                let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                for i in cells() {
                    lo = lo.min(values[i]);
                    hi = hi.max(values[i]);
                }
                if let Some([shared_lo, shared_hi]) = range {
                    lo = lo.min(shared_lo);
                    hi = hi.max(shared_hi);
                }
                if spec.symmetric {
                    let amax = lo.abs().max(hi.abs());
                    let s = f16_up(amax / qmax as f32);
                    let sf = s.to_f32();
                    for i in cells() {
                        let q = if sf > 0.0 {
                            (values[i] / sf).round() as i32
                        } else {
                            0
                        };
                        codes[i] = (q.clamp(-qmax, qmax) + qmax) as u8;
                    }
                    scales.push(s);
                } else {
                    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                    let s = f16_up((hi - lo) / qmax as f32);
                    let sf = s.to_f32();
                    let z = if sf > 0.0 {
                        (-lo / sf).round().clamp(0.0, qmax as f32)
                    } else {
                        0.0
                    };
                    for i in cells() {
                        let q = if sf > 0.0 {
                            (values[i] / sf).round() as i32 + z as i32
                        } else {
                            z as i32
                        };
                        codes[i] = q.clamp(0, qmax) as u8;
                    }
                    scales.push(s);
                    zero_points.push(f16::from_f32(z));
                }
            }
        }
        Ok(Self {
            shape,
            spec,
            group,
            scales,
            zero_points,
            packed: pack(&codes, spec.bits),
        })
    }

    /// Number of groups along rows and columns.
    pub fn groups(&self) -> [usize; 2] {
        [self.shape[0] / self.group[0], self.shape[1] / self.group[1]]
    }

    /// The group index of element `(r, c)`.
    pub fn group_of(&self, r: usize, c: usize) -> usize {
        (r / self.group[0]) * self.groups()[1] + c / self.group[1]
    }

    /// The codes as signed integers relative to the zero point: `w = scale · code`.
    pub fn signed_codes(&self) -> Vec<i32> {
        let [rows, cols] = self.shape;
        let raw = unpack(&self.packed, self.spec.bits, rows * cols);
        let qmax = self.spec.qmax();
        raw.iter()
            .enumerate()
            .map(|(i, &q)| {
                if self.spec.symmetric {
                    q as i32 - qmax
                } else {
                    q as i32 - self.zero_points[self.group_of(i / cols, i % cols)].to_f32() as i32
                }
            })
            .collect()
    }

    /// The scale of each element's group, row-major.
    pub fn element_scales(&self) -> Vec<f32> {
        let [rows, cols] = self.shape;
        (0..rows * cols)
            .map(|i| self.scales[self.group_of(i / cols, i % cols)].to_f32())
            .collect()
    }

    /// The dequantized matrix, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let scales = self.element_scales();
        self.signed_codes()
            .iter()
            .zip(scales)
            .map(|(&q, s)| q as f32 * s)
            .collect()
    }

    /// Bytes this tensor takes in a file: packed codes plus 2 bytes per scale and zero point.
    pub fn bytes(&self) -> usize {
        self.packed.len() + 2 * (self.scales.len() + self.zero_points.len())
    }

    /// Checks that the parts fit together (used when reading a file).
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |message: String| QuantError::Shape {
            op: "QuantizedTensor::validate",
            message: format!("`{name}`: {message}"),
        };
        check_bits(self.spec.bits, name)?;
        let [rows, cols] = self.shape;
        let [gr, gc] = self.group;
        if gr == 0 || gc == 0 || rows % gr != 0 || cols % gc != 0 {
            return Err(bad(format!(
                "group [{gr}, {gc}] does not tile shape [{rows}, {cols}]"
            )));
        }
        let groups = (rows / gr) * (cols / gc);
        if self.scales.len() != groups {
            return Err(bad(format!(
                "{} scales for {groups} groups",
                self.scales.len()
            )));
        }
        let zeros = if self.spec.symmetric { 0 } else { groups };
        if self.zero_points.len() != zeros {
            return Err(bad(format!(
                "{} zero points, expected {zeros}",
                self.zero_points.len()
            )));
        }
        let want = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(self.spec.bits as usize))
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| bad(format!("shape [{rows}, {cols}] overflows")))?;
        if self.packed.len() != want {
            return Err(bad(format!(
                "{} packed bytes, expected {want}",
                self.packed.len()
            )));
        }
        if let Some(i) = self
            .scales
            .iter()
            .position(|s| !(s.to_f32() >= 0.0 && s.is_finite()))
        {
            return Err(bad(format!("scale {i} is {}", self.scales[i])));
        }
        Ok(())
    }
}

/// Mean squared error between two equal-length slices.
pub fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use student_arch::model::SeededRng;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SeededRng::new(seed);
        (0..n).map(|_| (rng.normal() * 0.05) as f32).collect()
    }

    fn all_specs() -> Vec<(QuantSpec, Option<(HeadAxis, usize)>)> {
        let mut out = vec![];
        for bits in SUPPORTED_BITS {
            for symmetric in [true, false] {
                for (g, head) in [
                    (Granularity::Tensor, None),
                    (Granularity::Channel, None),
                    (Granularity::Head, Some((HeadAxis::Rows, 4))),
                    (Granularity::Head, Some((HeadAxis::Columns, 4))),
                    (Granularity::Block(32), None),
                    (Granularity::Block(64), None),
                ] {
                    out.push((
                        QuantSpec {
                            bits,
                            symmetric,
                            granularity: g,
                        },
                        head,
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn pack_round_trips_every_width() {
        let mut rng = SeededRng::new(3);
        for bits in SUPPORTED_BITS {
            for n in [1, 7, 8, 33, 100] {
                let codes: Vec<u8> = (0..n)
                    .map(|_| (rng.next_u64() % (1 << bits)) as u8)
                    .collect();
                let packed = pack(&codes, bits);
                assert_eq!(packed.len(), (n * bits as usize).div_ceil(8));
                assert_eq!(unpack(&packed, bits, n), codes, "{bits} bits, {n} codes");
            }
        }
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_for_every_format() {
        // Property over seeds, shapes and every spec: |w − deq(q(w))| ≤ scale/2 per element (+ f32 rounding).
        for seed in 0..6u64 {
            let (rows, cols) = (16, 128);
            let mut w = gaussian(rows * cols, seed);
            if seed % 3 == 1 {
                w.iter_mut().for_each(|v| *v = v.abs() + 0.01); // all positive: the asymmetric zero point at 0
            }
            if seed % 3 == 2 {
                w[5] = 3.0; // an outlier
            }
            for (spec, head) in all_specs() {
                let q = QuantizedTensor::quantize("w", &w, [rows, cols], spec, head).unwrap();
                q.validate("w").unwrap();
                let deq = q.dequantize();
                let scales = q.element_scales();
                for i in 0..w.len() {
                    let bound = scales[i] / 2.0 * (1.0 + 1e-5) + 1e-7;
                    assert!(
                        (w[i] - deq[i]).abs() <= bound,
                        "{spec:?} seed {seed} element {i}: {} vs {} (scale {})",
                        w[i],
                        deq[i],
                        scales[i]
                    );
                }
            }
        }
    }

    #[test]
    fn hand_computed_symmetric_and_asymmetric_cases() {
        // 4-bit symmetric per tensor: qmax 7, scale = 0.7 / 7 = 0.1 (f16 rounds up to 0.1000366).
        let w = [0.7f32, -0.35, 0.0, 0.14];
        let q = QuantizedTensor::quantize(
            "w",
            &w,
            [1, 4],
            QuantSpec::symmetric(4, Granularity::Tensor),
            None,
        )
        .unwrap();
        assert_eq!(q.signed_codes(), vec![7, -3, 0, 1]);
        assert!((q.scales[0].to_f32() - 0.1).abs() < 1e-4);
        // 2-bit asymmetric: range [-1, 2] → scale 1, zero point 1, codes {0..3} → values {-1, 0, 1, 2}.
        let w = [-1.0f32, 0.4, 2.0, 1.6];
        let spec = QuantSpec {
            bits: 2,
            symmetric: false,
            granularity: Granularity::Tensor,
        };
        let q = QuantizedTensor::quantize("w", &w, [1, 4], spec, None).unwrap();
        assert_eq!(q.zero_points[0].to_f32(), 1.0);
        assert_eq!(q.dequantize(), vec![-1.0, 0.0, 2.0, 2.0]);
        // Per head, rows: the second head's rows get their own, larger scale.
        let w = [0.1f32, -0.1, 1.0, 0.5];
        let q = QuantizedTensor::quantize(
            "q",
            &w,
            [2, 2],
            QuantSpec::symmetric(8, Granularity::Head),
            Some((HeadAxis::Rows, 2)),
        )
        .unwrap();
        assert_eq!(q.scales.len(), 2);
        assert!(q.scales[1].to_f32() > 9.0 * q.scales[0].to_f32());
        // Per head, columns: group 0 is column 0.
        let q = QuantizedTensor::quantize(
            "o",
            &w,
            [2, 2],
            QuantSpec::symmetric(8, Granularity::Head),
            Some((HeadAxis::Columns, 2)),
        )
        .unwrap();
        assert_eq!(q.group, [2, 1]);
        assert_eq!(q.group_of(1, 0), 0);
        assert_eq!(q.group_of(0, 1), 1);
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        let spec = QuantSpec::symmetric(4, Granularity::Block(32));
        let err = QuantizedTensor::quantize("w", &[0.0; 40], [1, 40], spec, None).unwrap_err();
        assert!(
            err.to_string().contains("40 is not divisible by 32"),
            "{err}"
        );
        let err = QuantizedTensor::quantize("w", &[0.0; 3], [2, 2], spec, None).unwrap_err();
        assert!(err.to_string().contains("`w` has 3 values"), "{err}");
        let err = QuantizedTensor::quantize("w", &[f32::NAN; 32], [1, 32], spec, None).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        let err = QuantizedTensor::quantize(
            "w",
            &[0.0; 32],
            [1, 32],
            QuantSpec::symmetric(5, Granularity::Tensor),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unsupported bits 5"), "{err}");
        let err = QuantizedTensor::quantize(
            "q",
            &[0.0; 30],
            [10, 3],
            QuantSpec::symmetric(8, Granularity::Head),
            Some((HeadAxis::Rows, 4)),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("10 is not divisible by 4"),
            "{err}"
        );
        assert!("block:48".parse::<Granularity>().is_err());
        assert!("rows"
            .parse::<Granularity>()
            .unwrap_err()
            .to_string()
            .contains("tensor, channel, head or block:K"));
        assert_eq!(
            "block:64".parse::<Granularity>().unwrap(),
            Granularity::Block(64)
        );
        // An all-zero group quantizes to zeros.
        let q = QuantizedTensor::quantize("z", &[0.0; 32], [1, 32], spec, None).unwrap();
        assert!(q.dequantize().iter().all(|v| *v == 0.0));
    }

    #[test]
    fn finer_groups_and_more_bits_lower_the_error() {
        let w = gaussian(64 * 256, 9);
        let err = |bits, g, head| {
            let q =
                QuantizedTensor::quantize("w", &w, [64, 256], QuantSpec::symmetric(bits, g), head)
                    .unwrap();
            mse(&w, &q.dequantize())
        };
        for g in [
            Granularity::Tensor,
            Granularity::Channel,
            Granularity::Block(32),
        ] {
            assert!(err(2, g, None) > err(3, g, None));
            assert!(err(3, g, None) > err(4, g, None));
            assert!(err(4, g, None) > err(8, g, None));
        }
        assert!(err(4, Granularity::Tensor, None) > err(4, Granularity::Channel, None));
        assert!(err(4, Granularity::Channel, None) > err(4, Granularity::Block(32), None));
    }
}
