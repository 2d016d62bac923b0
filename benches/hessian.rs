//! Q-BERT's inner loop on the 3-layer MiniLM-shaped student with a 2-class head, batch 16, seq 48: one
//! finite-difference Hessian-vector product on a layer block (two gradient passes), and 5 steps of power
//! iteration for that layer's top eigenvalue. Run: `cargo bench -p benches --bench hessian`.
//! PyTorch's figure (exact HVPs by double backward): `scripts/bench_hessian.py`.

use benches::{bench_devices, random_batch, teacher_or_same_shape};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion};
use hessian::{
    bert_blocks, parameters, top_eigenpairs, BlockGranularity, FiniteDifferenceHvp,
    HessianVectorProduct, PowerIterationConfig,
};
use student_arch::pooling::mean_pool;
use student_arch::{BertInput, BertModel, StudentSpec};

#[derive(Module, Debug)]
struct Classifier {
    encoder: BertModel,
    head: Linear,
}

fn loss(m: &Classifier, input: &BertInput, labels: &Tensor<1, Int>) -> Result<Tensor<1>, String> {
    let mask = input.attention_mask.clone();
    let pooled = mean_pool(m.encoder.forward(input.clone()).last_hidden_state(), mask);
    let n = labels.dims()[0];
    let logp = log_softmax(m.head.forward(pooled), 1);
    Ok(logp.gather(1, labels.clone().reshape([n, 1])).mean().neg())
}

fn hessian(c: &mut Criterion) {
    let (batch_size, seq_length) = (16, 48);
    let mut group = c.benchmark_group("hessian");
    group.sample_size(10);
    for (name, plain) in bench_devices() {
        if name == "wgpu" && std::env::var_os("BENCH_WGPU").is_none() {
            continue;
        }
        let device = plain.clone().autodiff();
        let (teacher, source) = teacher_or_same_shape(&plain);
        eprintln!("{name}: {source} weights");
        let model = Classifier {
            encoder: StudentSpec::default().build(&teacher, &device).unwrap(),
            head: LinearConfig::new(384, 2).init(&device),
        }
        .train();
        let input = random_batch(batch_size, seq_length, 30522, &device);
        let labels: Vec<i64> = (0..batch_size as i64).map(|i| i % 2).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch_size]), &device);
        let params = parameters(&model);
        let block = bert_blocks(&params, "encoder", 12, BlockGranularity::Layer).unwrap()[1]
            .resolve(&params)
            .unwrap();
        let f = |m: &Classifier| loss(m, &input, &labels);
        let mut hvp = FiniteDifferenceHvp::new(model.clone(), block.clone(), f, 1e-4).unwrap();
        let v = hessian::power::random_vector(block.dim(), 0);
        group.bench_function(
            format!("{name}/hvp/layer_b{batch_size}s{seq_length}"),
            |b| b.iter(|| hvp.hvp(&v).unwrap()),
        );
        let config = PowerIterationConfig {
            max_iterations: 5,
            tolerance: 1e-12,
            ..Default::default()
        };
        group.bench_function(
            format!("{name}/top_eigenvalue_5_steps/layer_b{batch_size}s{seq_length}"),
            |b| b.iter(|| top_eigenpairs(&mut hvp, &config).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, hessian);
criterion_main!(benches);
