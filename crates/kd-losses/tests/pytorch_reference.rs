//! Every loss and the gradients of the cosine, Hinton and attention losses, against PyTorch to 1e-5 relative.
//!
//! Reference: `tests/data/loss_reference.json`, written by `scripts/reference_losses.py`, which also stores the
//! inputs. Run on each CPU device, with autodiff for the gradients.

use burn::module::Param;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_losses::*;
use serde_json::Value;

const RELATIVE: f32 = 1e-5;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/loss_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn float_tensor<const D: usize>(v: &Value, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(floats(v), shape), device)
}

fn int_tensor<const D: usize>(
    values: Vec<i64>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[allow(deprecated)]
fn devices() -> Vec<(&'static str, Device)> {
    vec![
        ("flex", Device::flex().autodiff()),
        ("ndarray", Device::ndarray().autodiff()),
    ]
}

fn assert_scalar(name: &str, ours: Tensor<1>, expected: &Value) {
    let ours = host(ours)[0];
    let expected = expected["loss"].as_f64().unwrap() as f32;
    let rel = (ours - expected).abs() / expected.abs().max(1e-12);
    assert!(
        rel <= RELATIVE,
        "{name}: {ours} vs PyTorch {expected} (relative error {rel:e})"
    );
}

fn assert_vector(name: &str, ours: Vec<f32>, expected: &Value) {
    let expected = floats(expected);
    assert_eq!(ours.len(), expected.len(), "{name}: length");
    let scale = expected
        .iter()
        .fold(0.0f32, |m, x| m.max(x.abs()))
        .max(1e-12);
    let worst = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        worst / scale <= RELATIVE,
        "{name}: max error {worst:e} relative to max |grad| {scale:e}"
    );
}

struct Dims {
    b: usize,
    s: usize,
    h: usize,
    ht: usize,
    heads: usize,
    v: usize,
    c: usize,
}

fn dims(r: &Value) -> Dims {
    let d = &r["dims"];
    let g = |k: &str| d[k].as_u64().unwrap() as usize;
    Dims {
        b: g("batch"),
        s: g("seq"),
        h: g("hidden"),
        ht: g("teacher_hidden"),
        heads: g("heads"),
        v: g("vocab"),
        c: g("classes"),
    }
}

#[test]
fn hinton_and_soft_cross_entropy_match_pytorch_with_gradients() {
    let r = reference();
    let d = dims(&r);
    let t = r["temperature"].as_f64().unwrap();
    for (name, device) in devices() {
        let s = float_tensor(&r["rows"]["student"], [4, d.c], &device).require_grad();
        let te = float_tensor(&r["rows"]["teacher"], [4, d.c], &device);
        let loss = SoftTargetLoss::new(t)
            .unwrap()
            .forward(s.clone(), te.clone(), burn::nn::loss::Reduction::Mean)
            .unwrap();
        let grads = loss.backward();
        assert_vector(
            &format!("{name} hinton grad"),
            host(s.grad(&grads).unwrap()),
            &r["hinton_rows"]["grad_student"],
        );
        assert_scalar(&format!("{name} hinton"), loss, &r["hinton_rows"]);
        let soft = SoftCrossEntropyLoss::new(t)
            .unwrap()
            .forward(s.clone(), te, burn::nn::loss::Reduction::Mean)
            .unwrap();
        assert_scalar(&format!("{name} soft ce"), soft, &r["soft_ce_rows"]);
        let labels = int_tensor(ints(&r["class_labels"]), [4], &device);
        assert_scalar(
            &format!("{name} class ce"),
            classification_cross_entropy(s, labels).unwrap(),
            &r["class_ce"],
        );

        // Token logits restricted to the MLM-masked positions.
        let s = float_tensor(&r["tokens"]["student"], [d.b, d.s, d.v], &device).require_grad();
        let te = float_tensor(&r["tokens"]["teacher"], [d.b, d.s, d.v], &device);
        let labels = int_tensor(ints(&r["tokens"]["mlm_labels"]), [d.b, d.s], &device);
        let selected = labels.clone().not_equal_elem(IGNORE_INDEX).int();
        let loss = SoftTargetLoss::new(t)
            .unwrap()
            .forward_masked(s.clone(), te.clone(), selected.clone())
            .unwrap();
        let grads = loss.backward();
        assert_vector(
            &format!("{name} masked hinton grad"),
            host(s.grad(&grads).unwrap()),
            &r["hinton_masked"]["grad_student"],
        );
        assert_scalar(&format!("{name} masked hinton"), loss, &r["hinton_masked"]);
        let soft = SoftCrossEntropyLoss::new(t)
            .unwrap()
            .forward_masked(s.clone(), te, selected)
            .unwrap();
        assert_scalar(
            &format!("{name} masked soft ce"),
            soft,
            &r["soft_ce_masked"],
        );
        assert_scalar(
            &format!("{name} mlm ce"),
            mlm_cross_entropy(s, labels).unwrap(),
            &r["mlm_ce"],
        );
    }
}

#[test]
fn cosine_loss_matches_pytorch_with_gradients() {
    let r = reference();
    let d = dims(&r);
    for (name, device) in devices() {
        let mask = int_tensor(ints(&r["attention_mask"]), [d.b, d.s], &device);
        let s = float_tensor(&r["hidden"]["student"], [d.b, d.s, d.h], &device).require_grad();
        let t = float_tensor(&r["hidden"]["teacher"], [d.b, d.s, d.h], &device);
        let loss = cosine_embedding_loss(s.clone(), t, mask).unwrap();
        let grads = loss.backward();
        assert_vector(
            &format!("{name} cosine grad"),
            host(s.grad(&grads).unwrap()),
            &r["cosine"]["grad_student"],
        );
        assert_scalar(&format!("{name} cosine"), loss, &r["cosine"]);
    }
}

#[test]
fn projected_mse_matches_pytorch() {
    let r = reference();
    let d = dims(&r);
    for (name, device) in devices() {
        let mask = int_tensor(ints(&r["attention_mask"]), [d.b, d.s], &device);
        let mut loss = ProjectedMseConfig::new(d.h, d.ht).init(&device);
        // PyTorch's W is [out, in]; Burn's Linear holds [in, out].
        let w = float_tensor(&r["projection"]["weight_out_in"], [d.ht, d.h], &device).transpose();
        let mut linear = LinearConfig::new(d.h, d.ht).init(&device);
        linear.weight = Param::from_tensor(w);
        linear.bias = Some(Param::from_tensor(float_tensor(
            &r["projection"]["bias"],
            [d.ht],
            &device,
        )));
        loss.projection = Some(linear);
        let s = float_tensor(&r["hidden"]["student"], [d.b, d.s, d.h], &device);
        let t = float_tensor(&r["projection"]["teacher"], [d.b, d.s, d.ht], &device);
        assert_scalar(
            &format!("{name} projected mse"),
            loss.forward(s.clone(), t.clone()).unwrap(),
            &r["projected_mse"],
        );
        assert_scalar(
            &format!("{name} projected mse masked"),
            loss.forward_masked(s, t, mask).unwrap(),
            &r["projected_mse_masked"],
        );
    }
}

#[test]
fn attention_mse_matches_pytorch_with_gradients() {
    let r = reference();
    let d = dims(&r);
    let shape = [d.b, d.heads, d.s, d.s];
    for (name, device) in devices() {
        let mask = int_tensor(ints(&r["attention_mask"]), [d.b, d.s], &device);
        let a = &r["attention"];
        let s = float_tensor(&a["student_probs"], shape, &device).require_grad();
        let t = float_tensor(&a["teacher_probs"], shape, &device);
        let loss = attention_mse(s.clone(), t.clone(), AttentionTarget::Probs, Some(mask)).unwrap();
        let grads = loss.backward();
        assert_vector(
            &format!("{name} attention grad"),
            host(s.grad(&grads).unwrap()),
            &r["attention_probs_masked"]["grad_student"],
        );
        assert_scalar(
            &format!("{name} attention masked"),
            loss,
            &r["attention_probs_masked"],
        );
        assert_scalar(
            &format!("{name} attention"),
            attention_mse(s, t, AttentionTarget::Probs, None).unwrap(),
            &r["attention_probs"],
        );
        let ss = float_tensor(&a["student_scores"], shape, &device);
        let ts = float_tensor(&a["teacher_scores"], shape, &device);
        let loss = attention_mse(ss.clone(), ts.clone(), AttentionTarget::Scores, None).unwrap();
        assert_scalar(
            &format!("{name} attention scores"),
            loss,
            &r["attention_scores_tinybert"],
        );
        // TinyBERT's default: scores, padding zeroed, over real query-key pairs only, with the gradient.
        let ss = ss.require_grad();
        let mask = int_tensor(ints(&r["attention_mask"]), [d.b, d.s], &device);
        let loss = attention_mse(ss.clone(), ts, AttentionTarget::Scores, Some(mask)).unwrap();
        let grads = loss.backward();
        assert_vector(
            &format!("{name} attention scores masked grad"),
            host(ss.grad(&grads).unwrap()),
            &r["attention_scores_masked"]["grad_student"],
        );
        assert_scalar(
            &format!("{name} attention scores masked"),
            loss,
            &r["attention_scores_masked"],
        );
    }
}

#[test]
fn shape_errors_are_errors_not_panics() {
    let device = Device::flex();
    let a = Tensor::<2>::zeros([4, 3], &device);
    let b = Tensor::<2>::zeros([4, 5], &device);
    let err = SoftTargetLoss::new(2.0)
        .unwrap()
        .forward(a.clone(), b, burn::nn::loss::Reduction::Mean)
        .unwrap_err();
    assert!(
        err.to_string().contains("[4, 3]") && err.to_string().contains("[4, 5]"),
        "{err}"
    );
    assert!(SoftTargetLoss::new(0.0)
        .unwrap_err()
        .to_string()
        .contains("temperature"));
    let wide = Tensor::<3>::zeros([1, 2, 8], &device);
    let narrow = Tensor::<3>::zeros([1, 2, 4], &device);
    let plain = ProjectedMseConfig::new(8, 8).init(&device);
    assert!(plain
        .forward(wide.clone(), narrow)
        .unwrap_err()
        .to_string()
        .contains("Projection"));
    let labels = Tensor::<1, Int>::zeros([3], &device);
    assert!(classification_cross_entropy(a, labels).is_err());
    let mask = Tensor::<2, Int>::ones([2, 2], &device);
    assert!(cosine_embedding_loss(wide.clone(), wide, mask)
        .unwrap_err()
        .to_string()
        .contains("attention_mask"));
}
