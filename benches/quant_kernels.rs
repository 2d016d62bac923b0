//! Quantized linear kernels against the f32 matmul of the Burn CPU backends, on BERT shapes
//! (384×384 attention, 384→1536 and 1536→384 FFN), batch 1 (matrix × vector) and 32 (matrix × matrix).
//! Run: `cargo bench -p benches --bench quant_kernels`. Names: `{backend}/linear/{out}x{in}/b{n}`, where the
//! backend is flex or ndarray (Burn f32 `x.matmul(w) + b`), q8_0 or q4_0 (ours: rayon, AVX-512 VNNI or AVX2 when present), or
//! q8_0-ref / q4_0-ref (the plain reference loops, one thread).

use benches::bench_devices;
use burn::tensor::{Tensor, TensorData};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use quant::{BlockQ4_0, BlockQ8_0, QuantBlock, QuantLinear};

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = student_arch::model::SeededRng::new(seed);
    (0..n).map(|_| (rng.normal() * 0.05) as f32).collect()
}

fn ours<B: QuantBlock>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    w: &[f32],
    x: &[f32],
    out: usize,
    inp: usize,
    n: usize,
) {
    let layer = QuantLinear::<B>::from_f32(w, out, inp, Some(vec![0.0; out]))
        .expect("BERT shapes are multiples of 32");
    c.bench_function(
        BenchmarkId::new(B::NAME, format!("{out}x{inp}/b{n}")),
        |b| b.iter(|| layer.forward(x, n).unwrap()),
    );
    if n == 1 {
        c.bench_function(
            BenchmarkId::new(format!("{}-ref", B::NAME), format!("{out}x{inp}/b{n}")),
            |b| b.iter(|| layer.forward_unopt(x, n).unwrap()),
        );
    }
}

fn linear(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear");
    group.sample_size(20);
    for (out, inp) in [(384, 384), (1536, 384), (384, 1536)] {
        let w = gaussian(out * inp, 1);
        for n in [1usize, 32] {
            let x = gaussian(n * inp, 2);
            for (name, device) in bench_devices() {
                if name == "wgpu" {
                    continue;
                }
                // Burn's Linear layout: weight [in, out].
                let mut wt = vec![0.0; w.len()];
                for o in 0..out {
                    for i in 0..inp {
                        wt[i * out + o] = w[o * inp + i];
                    }
                }
                let wt = Tensor::<2>::from_data(TensorData::new(wt, [inp, out]), &device);
                let bias = Tensor::<2>::zeros([1, out], &device);
                let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, inp]), &device);
                group.bench_function(BenchmarkId::new(name, format!("{out}x{inp}/b{n}")), |b| {
                    b.iter(|| (xt.clone().matmul(wt.clone()) + bias.clone()).into_data())
                });
            }
            ours::<BlockQ8_0>(&mut group, &w, &x, out, inp, n);
            ours::<BlockQ4_0>(&mut group, &w, &x, out, inp, n);
        }
    }
    group.finish();
}

criterion_group!(benches, linear);
criterion_main!(benches);
