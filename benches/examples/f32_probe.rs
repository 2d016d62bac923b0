//! Times `quant::encoder::Linear`'s two f32 GEMMs side by side, one run of each in turn (so a noisy machine
//! slows both alike): the weight packed at load (`F32Gemm::Packed`) and the `gemm` crate, which packs it at
//! every call (`F32Gemm::Crate`). On the calling thread (rayon's pool of `RAYON_NUM_THREADS` when the GEMM
//! splits):
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
}
