//! Times `quant::encoder::Linear::f32` (one `gemm` call) against the same product with the operands swapped:
//! `cargo run -p benches --no-default-features --features flex --example f32_probe -- ROWS COLS TOKENS RUNS`.
use quant::encoder::Linear;

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
    let lin = Linear::f32(&w, vec![0.0; rows], rows, cols).unwrap();
    let mut y = vec![];
    let time = |f: &mut dyn FnMut()| {
        let mut t = vec![];
        for _ in 0..runs {
            let s = std::time::Instant::now();
            f();
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let ms = time(&mut || lin.forward_into(&x, n, &mut y).unwrap());
    // W [rows, cols] row-major as lhs: y^T = W x^T, written into y [n, rows].
    let mut y2 = vec![0.0f32; n * rows];
    let ms2 = time(&mut || unsafe {
        gemm::gemm(
            rows,
            n,
            cols,
            y2.as_mut_ptr(),
            rows as isize,
            1,
            false,
            w.as_ptr(),
            1,
            cols as isize,
            x.as_ptr(),
            cols as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    });
    let gflop = 2.0 * (rows * cols * n) as f64 / 1e9;
    println!(
        "{rows}x{cols}, {n} tokens: Linear::f32 {ms:.3} ms ({:.1} GFLOP/s); W as lhs {ms2:.3} ms ({:.1} GFLOP/s); max diff {}",
        gflop / ms * 1e3,
        gflop / ms2 * 1e3,
        y.iter().zip(&y2).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
    );
}
