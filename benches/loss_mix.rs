//! The full loss mix on realistic shapes: batch 32, seq 128, hidden 384, 12 heads, a 6-layer teacher and a
//! 3-layer student (every other layer). Forward of the mix alone, and forward + backward through the student.
//! Run: `cargo bench -p benches --bench loss_mix`.

use benches::{bench_devices, minilm_config, random_batch};
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion};
use kd_losses::{DistillInputs, LayerMap, Logits, LossMixConfig};
use student_arch::StudentSpec;

fn loss_mix(c: &mut Criterion) {
    let (batch_size, seq_length, classes) = (32, 128, 2);
    let mut group = c.benchmark_group("loss_mix");
    group.sample_size(10);
    for (name, device) in bench_devices() {
        if name == "wgpu" && std::env::var_os("BENCH_WGPU").is_none() {
            continue;
        }
        let teacher = minilm_config().init_random(false, 0, &device).unwrap();
        let input = random_batch(batch_size, seq_length, 30522, &device);
        let t_out = teacher.forward(input.clone());
        let map = LayerMap::uniform(3, 6).unwrap();
        let labels = Tensor::<1, Int>::from_data(
            TensorData::new(vec![1i64; batch_size], [batch_size]),
            &device,
        );
        let config = LossMixConfig {
            alpha_ce: 1.0,
            alpha_label: 1.0,
            alpha_cos: 1.0,
            alpha_emb: 1.0,
            alpha_att: 1.0,
            alpha_hidden: 1.0,
            alpha_pred: 1.0,
            ..Default::default()
        };
        let logits = |seed: f64| Tensor::<2>::ones([batch_size, classes], &device).mul_scalar(seed);

        let student = StudentSpec::default().build(&teacher, &device).unwrap();
        let mix = config.init(384, 384, &device).unwrap();
        let s_out = student.forward(input.clone());
        group.bench_function(
            format!("{name}/forward/b{batch_size}xs{seq_length}-6to3"),
            |b| {
                b.iter(|| {
                    let terms = mix
                        .forward(DistillInputs {
                            student: &s_out,
                            teacher: &t_out,
                            student_logits: Some(Logits::PerSequence(logits(0.5))),
                            teacher_logits: Some(Logits::PerSequence(logits(1.0))),
                            mlm_labels: None,
                            class_labels: Some(labels.clone()),
                            attention_mask: input.attention_mask.clone(),
                            layer_map: &map,
                        })
                        .unwrap();
                    terms.total.into_data()
                })
            },
        );

        let ad = device.clone().autodiff();
        let student = StudentSpec::default().build(&teacher, &ad).unwrap();
        assert!(student.layers[0].attention.query.weight.is_require_grad());
        let mix = config.init(384, 384, &ad).unwrap();
        let ad_input = random_batch(batch_size, seq_length, 30522, &ad);
        group.bench_function(
            format!("{name}/forward_backward/b{batch_size}xs{seq_length}-6to3"),
            |b| {
                b.iter(|| {
                    let s_out = student.forward(ad_input.clone());
                    let terms = mix
                        .forward(DistillInputs {
                            student: &s_out,
                            teacher: &t_out,
                            student_logits: Some(Logits::PerSequence(logits(0.5))),
                            teacher_logits: Some(Logits::PerSequence(logits(1.0))),
                            mlm_labels: None,
                            class_labels: Some(labels.clone()),
                            attention_mask: ad_input.attention_mask.clone(),
                            layer_map: &map,
                        })
                        .unwrap();
                    terms.total.backward()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, loss_mix);
criterion_main!(benches);
