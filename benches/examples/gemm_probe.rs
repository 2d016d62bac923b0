//! Times `quant::IntLinear` alone: `cargo run -p benches --example gemm_probe -- ROWS COLS TOKENS RUNS`.
use quant::kernels::{IntLinear, Isa};
use quant::{Granularity, QuantSpec, QuantizedTensor};

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let (rows, cols, n, runs) = (a[0], a[1], a[2], a[3]);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let q = QuantizedTensor::quantize(
        "w",
        &w,
        [rows, cols],
        QuantSpec::symmetric(4, Granularity::Channel),
        None,
    )
    .unwrap();
    let lin = IntLinear::from_quantized(&q, vec![0.0; rows]).unwrap();
    let x: Vec<f32> = (0..n * cols)
        .map(|i| ((i * 104729 % 997) as f32 - 498.0) / 498.0)
        .collect();
    let isa = Isa::best();
    let mut t = vec![];
    for _ in 0..runs {
        let s = std::time::Instant::now();
        std::hint::black_box(lin.forward_on(isa, &x, n).unwrap());
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    let s = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(lin.quantize_input(&x, n, 12).unwrap());
    }
    let qt = s.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let (med, min) = (t[runs / 2], t[0]);
    let gmacs = |ms: f64| (rows * cols * n) as f64 / ms / 1e6;
    println!(
        "{isa:?} [{rows}x{cols}] x {n}: median {med:.3} ms ({:.0} GMAC/s), min {min:.3} ms ({:.0} GMAC/s); \
         quantize alone {qt:.3} ms",
        gmacs(med),
        gmacs(min)
    );
}
