//! GEMM throughput of Burn's f32 matmul on the BERT shapes (flex), in GFLOP/s: `cargo run -p benches --example
//! matmul_probe`. PyTorch's figure for the same shapes is in docs/archive/BENCHMARKS-2026-11.md.
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn main() {
    let d = Device::flex();
    for (m, k, n) in [
        (4096usize, 384usize, 384usize),
        (4096, 384, 1536),
        (4096, 1536, 384),
        (2048, 384, 384),
    ] {
        let a = Tensor::<2>::random([m, k], Distribution::Default, &d);
        let b = Tensor::<2>::random([k, n], Distribution::Default, &d);
        for _ in 0..2 {
            let _ = a.clone().matmul(b.clone()).into_data();
        }
        let mut ts = vec![];
        for _ in 0..7 {
            let t = Instant::now();
            let _ = a.clone().matmul(b.clone()).into_data();
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(f64::total_cmp);
        let t = ts[3];
        println!(
            "{m}x{k}x{n}: {:.2} ms, {:.1} GFLOP/s",
            t * 1e3,
            2.0 * (m * k * n) as f64 / t / 1e9
        );
    }
}
