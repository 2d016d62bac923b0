//! Fake quantization on Burn tensors for quantization-aware fine-tuning: the forward pass sees the quantized
//! weights (quantize, then dequantize), the backward pass the identity (a straight-through estimator):
//! `w + (deq(q(w)) − w).detach()`. Burn's own quantization cuts the autodiff graph (../shared/BURN_NOTES.md), so
//! the rounding is done here, with the same group-wise quantizer as the exported file, so that what QAT trains
//! against is exactly what [`crate::model`] writes.
//!
//! The fake-quantized model is a *view*: it keeps the parameter ids of the model it came from, so gradients of a
//! loss computed through it are gradients of the original model's parameters
//! (`GradientsParams::from_grads(grads, &original)`), and the optimizer updates the full-precision weights.

use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use student_arch::transpose;
use student_arch::BertModel;

use crate::error::{QuantError, Result};
use crate::format::{HeadAxis, QuantSpec, QuantizedTensor};
use crate::model::{layer_ranges, shared_range, spec_for, QuantPlan};

fn host(t: Tensor<2>, name: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| QuantError::Shape {
            op: "fake_quantize",
            message: format!("`{name}`: {e:?}"),
        })
}

/// `w + (deq(q(w)) − w).detach()` for a Burn `Linear` weight `w: [d_in, d_out]` (the transpose of Hugging
/// Face's `[out, in]`, which is the layout `spec` and `head` refer to).
///
/// # Shapes
/// - `weight`: `[d_in, d_out]` → the same.
pub fn fake_quantize_weight(
    name: &str,
    weight: Tensor<2>,
    spec: QuantSpec,
    head: Option<(HeadAxis, usize)>,
) -> Result<Tensor<2>> {
    fake_quantize_weight_in_range(name, weight, spec, head, None)
}

/// [`fake_quantize_weight`] with a range shared beyond the tensor ([`crate::Granularity::Layer`]).
pub fn fake_quantize_weight_in_range(
    name: &str,
    weight: Tensor<2>,
    spec: QuantSpec,
    head: Option<(HeadAxis, usize)>,
    range: Option<[f32; 2]>,
) -> Result<Tensor<2>> {
    let [d_in, d_out] = weight.dims();
    let device = weight.device();
    let values = host(weight.clone().detach(), name)?;
    let hf = transpose(&values, d_in, d_out);
    let deq_hf = QuantizedTensor::quantize_in_range(name, &hf, [d_out, d_in], spec, head, range)?
        .dequantize();
    let deq = transpose(&deq_hf, d_out, d_in);
    let deq = Tensor::<2>::from_data(TensorData::new(deq, [d_in, d_out]), &device);
    Ok(weight.clone() + (deq - weight).detach())
}

/// Symmetric 8-bit (or `bits`) fake quantization of activations with one dynamic range per tensor
/// (max |x| / qmax), straight-through in backward.
///
/// # Shapes
/// - `x`: any → the same.
pub fn fake_quantize_activations<const D: usize>(x: Tensor<D>, bits: u32) -> Tensor<D> {
    let qmax = ((1u32 << (bits - 1)) - 1) as f32;
    let detached = x.clone().detach();
    let amax = detached
        .clone()
        .abs()
        .max()
        .into_scalar::<f32>()
        .max(f32::MIN_POSITIVE);
    let scale = amax / qmax;
    let q = detached
        .clone()
        .div_scalar(scale)
        .round()
        .clamp(-qmax, qmax)
        .mul_scalar(scale);
    x + (q - detached).detach()
}

fn fake_linear(
    linear: &Linear,
    name: &str,
    plan: &QuantPlan,
    model: &BertModel,
    shared: &[[f32; 2]],
) -> Result<Linear> {
    let [d_in, d_out] = linear.weight.dims();
    let Some((spec, head)) = spec_for(name, &[d_out, d_in], plan, &model.config) else {
        return Ok(linear.clone());
    };
    let range = shared_range(shared, name);
    let fake = fake_quantize_weight_in_range(name, linear.weight.val(), spec, head, range)?;
    let mut out = linear.clone();
    // Same parameter id, fake-quantized value (a function of the original parameter, so gradients reach it).
    out.weight = linear.weight.clone().map(|_| fake);
    Ok(out)
}

/// An embedding table `[rows, hidden]` (Hugging Face's layout already) fake-quantized as the export quantizes it.
fn fake_embedding(
    table: &burn::nn::Embedding,
    name: &str,
    plan: &QuantPlan,
    model: &BertModel,
) -> Result<burn::nn::Embedding> {
    let weight = table.weight.val();
    let [rows, hidden] = weight.dims();
    let Some((spec, head)) = spec_for(name, &[rows, hidden], plan, &model.config) else {
        return Ok(table.clone());
    };
    let device = weight.device();
    let values = host(weight.clone().detach(), name)?;
    let deq = QuantizedTensor::quantize(name, &values, [rows, hidden], spec, head)?.dequantize();
    let deq = Tensor::<2>::from_data(TensorData::new(deq, [rows, hidden]), &device);
    let fake = weight.clone() + (deq - weight).detach();
    let mut out = table.clone();
    out.weight = table.weight.clone().map(|_| fake);
    Ok(out)
}

/// The encoder with every matrix and embedding table that `plan` quantizes replaced by its fake-quantized view
/// (same parameter ids), as the export will quantize them.
pub fn fake_quantize_model(model: &BertModel, plan: &QuantPlan) -> Result<BertModel> {
    plan.validate(&model.config)?;
    // Under layer-wise granularity each layer's Q, K, V and O share one range (min and max do not depend on
    // the layout, so Burn's [in, out] weights give the same range as Hugging Face's).
    let shared = layer_ranges(plan, &model.config, |name| {
        let rest = name.strip_prefix("encoder.layer.")?;
        let (l, m) = rest.split_once('.')?;
        let a = &model.layers.get(l.parse::<usize>().ok()?)?.attention;
        let linear = match m.strip_suffix(".weight")? {
            "attention.self.query" => &a.query,
            "attention.self.key" => &a.key,
            "attention.self.value" => &a.value,
            "attention.output.dense" => &a.output,
            _ => return None,
        };
        host(linear.weight.val().detach(), name).ok()
    });
    let mut out = model.clone();
    for (l, layer) in out.layers.iter_mut().enumerate() {
        let p = format!("encoder.layer.{l}");
        let a = &mut layer.attention;
        a.query = fake_linear(
            &a.query,
            &format!("{p}.attention.self.query.weight"),
            plan,
            model,
            &shared,
        )?;
        a.key = fake_linear(
            &a.key,
            &format!("{p}.attention.self.key.weight"),
            plan,
            model,
            &shared,
        )?;
        a.value = fake_linear(
            &a.value,
            &format!("{p}.attention.self.value.weight"),
            plan,
            model,
            &shared,
        )?;
        a.output = fake_linear(
            &a.output,
            &format!("{p}.attention.output.dense.weight"),
            plan,
            model,
            &shared,
        )?;
        layer.intermediate = fake_linear(
            &layer.intermediate,
            &format!("{p}.intermediate.dense.weight"),
            plan,
            model,
            &shared,
        )?;
        layer.output = fake_linear(
            &layer.output,
            &format!("{p}.output.dense.weight"),
            plan,
            model,
            &shared,
        )?;
    }
    let e = &mut out.embeddings;
    e.word_embeddings = fake_embedding(
        &e.word_embeddings,
        "embeddings.word_embeddings.weight",
        plan,
        model,
    )?;
    e.position_embeddings = fake_embedding(
        &e.position_embeddings,
        "embeddings.position_embeddings.weight",
        plan,
        model,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Granularity;
    use burn::tensor::Device;

    #[test]
    fn forward_is_quantized_and_gradient_is_straight_through() {
        let device = Device::flex().autodiff();
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 32.0) / 50.0)
            .collect();
        let w =
            Tensor::<2>::from_data(TensorData::new(values.clone(), [8, 8]), &device).require_grad();
        let spec = QuantSpec::symmetric(2, Granularity::Channel);
        let fq = fake_quantize_weight("w", w.clone(), spec, None).unwrap();
        // Forward: the dequantized values of the transposed (Hugging Face) matrix.
        let mut hf = vec![0.0; 64];
        for i in 0..8 {
            for o in 0..8 {
                hf[o * 8 + i] = values[i * 8 + o];
            }
        }
        let deq = QuantizedTensor::quantize("w", &hf, [8, 8], spec, None)
            .unwrap()
            .dequantize();
        let got = fq.clone().into_data().try_to_vec::<f32>().unwrap();
        for i in 0..8 {
            for o in 0..8 {
                assert!((got[i * 8 + o] - deq[o * 8 + i]).abs() < 1e-6);
            }
        }
        // Backward: d(Σ c ⊙ fq(w)) / dw = c exactly.
        let c: Vec<f32> = (0..64).map(|i| i as f32 * 0.1 - 3.0).collect();
        let ct = Tensor::<2>::from_data(TensorData::new(c.clone(), [8, 8]), &device);
        let grads = (fq * ct).sum().backward();
        let g = w
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (a, b) in g.iter().zip(&c) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn fake_quantized_model_trains_the_original_parameters() {
        use burn::optim::GradientsParams;
        let device = Device::flex().autodiff();
        let config = student_arch::BertConfig::new(50, 64, 1, 2, 128);
        let model = config.init_random(false, 3, &device).unwrap();
        let fake = fake_quantize_model(&model, &QuantPlan::uniform(1, 2)).unwrap();
        // Forward values are quantized: 2-bit symmetric weights take at most 3 values per group. Burn's layout
        // is [in, out]; the first 32 outputs of input 0 are in head 0's group.
        let w = fake.layers[0]
            .attention
            .query
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut distinct: Vec<f32> = w[..32].to_vec();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        assert!(distinct.len() <= 3, "{distinct:?}");
        assert_eq!(
            fake.layers[0].attention.query.weight.id,
            model.layers[0].attention.query.weight.id
        );
        let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
            TensorData::new(vec![1i64, 2, 3], [1, 3]),
            &device,
        );
        let out = fake.forward(student_arch::BertInput {
            attention_mask: ids.ones_like(),
            input_ids: ids,
            token_type_ids: None,
        });
        let grads = out.last_hidden_state().powi_scalar(2).sum().backward();
        let params = GradientsParams::from_grads(grads, &model);
        assert!(params
            .get::<2>(model.layers[0].attention.query.weight.id)
            .is_some());
    }

    #[test]
    fn activations_round_to_eight_bits_with_identity_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(
            TensorData::new(vec![1.0f32, -0.5, 0.004, 0.3], [4]),
            &device,
        )
        .require_grad();
        let y = fake_quantize_activations(x.clone(), 8);
        let got = y.clone().into_data().try_to_vec::<f32>().unwrap();
        // scale = 1/127: 0.004 → round(0.508) = 1 → 1/127; 0.3 → round(38.1) = 38 → 38/127.
        let want = [1.0, -64.0 / 127.0, 1.0 / 127.0, 38.0 / 127.0];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?}");
        }
        let g = x
            .grad(&y.sum().backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(g, vec![1.0; 4]);
    }
}
