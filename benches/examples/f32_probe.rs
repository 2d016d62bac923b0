//! Times `quant::encoder::Linear`'s two f32 GEMMs side by side, one run of each in turn (so a noisy machine
//! slows both alike): the weight packed at load (`F32Gemm::Packed`) and the `gemm` crate, which packs it at
//! every call (`F32Gemm::Crate`); on x86-64 with AVX2 + FMA also this thread's FMA peak, from a loop of
//! independent fused multiply-adds, measured before and after. On the calling thread (rayon's pool of
//! `RAYON_NUM_THREADS` when the GEMM splits):
//! `cargo run --release -p benches --no-default-features --features flex --example f32_probe -- ROWS COLS TOKENS RUNS`.
use quant::encoder::Linear;
use quant::kernels::F32Gemm;

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let (rows, cols, n, runs) = (a[0], a[1], a[2], a[3]);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let x: Vec<f32> = (0..n * cols)
        .map(|i| ((i * 104729 % 997) as f32 - 498.0) / 498.0)
        .collect();
    let gemms = [F32Gemm::Packed, F32Gemm::Crate];
    let linears: Vec<Linear> = gemms
        .iter()
        .map(|&g| Linear::f32_on(g, &w, vec![0.0; rows], rows, cols).unwrap())
        .collect();
    let mut ys = vec![vec![]; 2];
    let mut times = vec![vec![]; 2];
    for _ in 0..runs {
        for (i, lin) in linears.iter().enumerate() {
            let s = std::time::Instant::now();
            lin.forward_into(&x, n, &mut ys[i]).unwrap();
            times[i].push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let gflop = 2.0 * (rows * cols * n) as f64 / 1e9;
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let (packed, krate) = (median(&mut times[0]), median(&mut times[1]));
    let peak = fma_peak();
    println!(
        "{rows}x{cols}, {n} tokens: packed {packed:.3} ms ({:.1} GFLOP/s), gemm crate {krate:.3} ms ({:.1} GFLOP/s), \
         ratio {:.2}; max diff {}",
        gflop / packed * 1e3,
        gflop / krate * 1e3,
        packed / krate,
        ys[0]
            .iter()
            .zip(&ys[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    );
    if let (Some(a), Some(b)) = (peak, fma_peak()) {
        let peak = (a + b) / 2.0;
        println!(
            "  FMA peak of one thread {peak:.1} GFLOP/s (before {a:.1}, after {b:.1}): packed at {:.0}%, crate at {:.0}%",
            100.0 * gflop / packed * 1e3 / peak,
            100.0 * gflop / krate * 1e3 / peak
        );
    }
}

/// GFLOP/s of 12 independent chains of 256-bit fused multiply-adds on this thread (two flops per lane), or `None`
/// without AVX2 + FMA.
fn fma_peak() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return Some(unsafe { fma_chains() });
    }
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains() -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    let iters = 20_000_000u64;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    (iters * 12 * 16) as f64 / seconds / 1e9
}
