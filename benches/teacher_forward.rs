//! Teacher forward pass, batch 32, seq 128, on each device compiled in.
//! Run: `cargo bench -p benches --bench teacher_forward`. PyTorch's figure: `scripts/bench_teacher_forward.py`.

use benches::{bench_devices, random_batch, teacher_or_same_shape};
use criterion::{criterion_group, criterion_main, Criterion};

fn teacher_forward(c: &mut Criterion) {
    let (batch_size, seq_length) = (32, 128);
    let mut group = c.benchmark_group("teacher_forward");
    group.sample_size(10);
    for (name, device) in bench_devices() {
        if name == "wgpu" && std::env::var_os("BENCH_WGPU").is_none() {
            continue; // lavapipe is 50-100x slower than the CPU backends; opt in with BENCH_WGPU=1.
        }
        let (model, source) = teacher_or_same_shape(&device);
        eprintln!("{name}: {source} weights");
        let input = random_batch(batch_size, seq_length, model.config.vocab_size, &device);
        group.bench_function(format!("{name}/forward/b{batch_size}xs{seq_length}"), |b| {
            b.iter(|| {
                let out = model.forward(input.clone());
                // Reading one scalar back forces the whole computation on lazy backends.
                out.last_hidden_state().sum().into_data()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, teacher_forward);
criterion_main!(benches);
