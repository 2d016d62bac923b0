//! Run-time dispatch: each block format's [`QuantBlock::tile`] and the activation quantization take the
//! fastest path this CPU runs (AVX-512 VNNI, else AVX2, else the plain loops).

use half::f16;

#[cfg(target_arch = "x86_64")]
use super::avx;
use super::blocks::{
    quantize_acts_plain, tile_plain, ActRows, BlockQ4_0, BlockQ8_0, QuantBlock, WeightRows, QK,
};

/// The fastest [`QuantBlock::tile`] this CPU runs: AVX-512 VNNI, else AVX2, else plain loops.
#[cfg(target_arch = "x86_64")]
fn tile_fastest<B: avx::Codes, const R: usize, const T: usize>(
    w: WeightRows<'_, B, R>,
    x: ActRows<'_, T>,
) -> [[f32; T]; R] {
    if avx::vnni_available() {
        // SAFETY: AVX-512 VNNI and VL, AVX2 and FMA were detected at run time.
        return unsafe { avx::tile_vnni(w, x) };
    }
    if avx::available() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { avx::tile(w, x) };
    }
    tile_plain(w, x)
}

/// The fastest [`QuantBlock::tile`] this CPU runs: plain loops off x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn tile_fastest<B: QuantBlock, const R: usize, const T: usize>(
    w: WeightRows<'_, B, R>,
    x: ActRows<'_, T>,
) -> [[f32; T]; R] {
    tile_plain(w, x)
}

impl QuantBlock for BlockQ8_0 {
    const BITS: u32 = 8;
    const NAME: &'static str = "q8_0";
    const QMAX: i32 = 127;
    fn from_codes(codes: &[i8], d: f16) -> Self {
        let mut qs = [0i8; QK];
        qs.copy_from_slice(&codes[..QK]);
        Self { d, qs }
    }
    fn codes(&self) -> [i8; QK] {
        self.qs
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn tile<const R: usize, const T: usize>(
        w: WeightRows<'_, Self, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        tile_fastest(w, x)
    }
}

impl QuantBlock for BlockQ4_0 {
    const BITS: u32 = 4;
    const NAME: &'static str = "q4_0";
    const QMAX: i32 = 7;
    fn from_codes(codes: &[i8], d: f16) -> Self {
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            qs[j] = ((codes[j] + 8) as u8) | (((codes[j + QK / 2] + 8) as u8) << 4);
        }
        Self { d, qs }
    }
    fn codes(&self) -> [i8; QK] {
        let mut out = [0i8; QK];
        for j in 0..QK / 2 {
            out[j] = (self.qs[j] & 0x0F) as i8 - 8;
            out[j + QK / 2] = (self.qs[j] >> 4) as i8 - 8;
        }
        out
    }
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    fn tile<const R: usize, const T: usize>(
        w: WeightRows<'_, Self, R>,
        x: ActRows<'_, T>,
    ) -> [[f32; T]; R] {
        tile_fastest(w, x)
    }
}

/// [`quantize_acts_plain`] with AVX2 where the CPU has it (the same codes: the products are the same IEEE
/// multiplications and `cvtps` rounds ties to even).
pub(crate) fn quantize_acts(x: &[f32], q: &mut [BlockQ8_0], d: &mut [f32], s: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if avx::available() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { avx::quantize_acts(x, q, d, s) };
    }
    quantize_acts_plain(x, q, d, s)
}
