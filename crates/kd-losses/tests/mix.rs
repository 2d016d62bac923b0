//! The loss mix: each weight switches its term on and off, the total is the weighted sum of the named terms,
//! and bad inputs are named errors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_losses::*;
use student_arch::{BertConfig, BertInput, BertModel, BertOutput, LayerSelection, StudentSpec};

fn models(device: &Device) -> (BertModel, BertModel, BertInput) {
    let teacher = BertConfig::new(40, 16, 4, 4, 32)
        .init_random(false, 1, device)
        .unwrap();
    let spec = StudentSpec {
        layers: LayerSelection::Count(2),
        hidden_size: Some(8),
        num_attention_heads: Some(4),
        intermediate_size: Some(16),
        ..Default::default()
    };
    let student = spec.build(&teacher, device).unwrap();
    let input =
        BertInput::from_token_ids(&[vec![1, 5, 6, 7, 2], vec![1, 9, 2]], 0, 40, device).unwrap();
    (teacher, student, input)
}

fn scalar(t: &Tensor<1>) -> f32 {
    t.clone().into_scalar::<f32>()
}

fn inputs<'a>(
    s: &'a BertOutput,
    t: &'a BertOutput,
    mask: Tensor<2, Int>,
    map: &'a LayerMap,
    logits: (Tensor<2>, Tensor<2>),
    labels: Tensor<1, Int>,
) -> DistillInputs<'a> {
    DistillInputs {
        student: s,
        teacher: t,
        student_logits: Some(Logits::PerSequence(logits.0)),
        teacher_logits: Some(Logits::PerSequence(logits.1)),
        mlm_labels: None,
        class_labels: Some(labels),
        attention_mask: mask,
        layer_map: map,
    }
}

#[test]
fn every_weight_switches_its_term_and_the_total_is_the_weighted_sum() {
    let device = Device::flex();
    let (teacher, student, input) = models(&device);
    let (t_out, s_out) = (
        teacher.forward(input.clone()),
        student.forward(input.clone()),
    );
    let map = LayerMap::uniform(2, 4).unwrap();
    let logits = (
        Tensor::<2>::from_floats([[0.1, 0.5], [0.3, -0.2]], &device),
        Tensor::<2>::from_floats([[1.0, -1.0], [0.2, 0.4]], &device),
    );
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
    let full = LossMixConfig {
        alpha_ce: 0.5,
        alpha_label: 0.5,
        alpha_cos: 0.0,
        alpha_emb: 1.0,
        alpha_att: 2.0,
        alpha_hidden: 3.0,
        alpha_pred: 0.7,
        ..Default::default()
    };
    let mix = full.init(8, 16, &device).unwrap();
    assert!(
        mix.hidden.as_ref().unwrap().projection.is_some(),
        "widths differ, so W_h is learnt"
    );
    let terms = mix
        .forward(inputs(
            &s_out,
            &t_out,
            input.attention_mask.clone(),
            &map,
            logits.clone(),
            labels.clone(),
        ))
        .unwrap();
    let names: Vec<_> = terms.named().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["ce", "label", "emb", "att", "hidden", "pred"]);
    let weighted = 0.5 * scalar(terms.ce.as_ref().unwrap())
        + 0.5 * scalar(terms.label.as_ref().unwrap())
        + scalar(terms.emb.as_ref().unwrap())
        + 2.0 * scalar(terms.att.as_ref().unwrap())
        + 3.0 * scalar(terms.hidden.as_ref().unwrap())
        + 0.7 * scalar(terms.pred.as_ref().unwrap());
    assert!((scalar(&terms.total) - weighted).abs() < 1e-5 * weighted.abs().max(1.0));

    // Ablations are a config change: each weight set to 0 removes exactly its term.
    for drop in ["ce", "label", "emb", "att", "hidden", "pred"] {
        let mut c = full.clone();
        match drop {
            "ce" => c.alpha_ce = 0.0,
            "label" => c.alpha_label = 0.0,
            "emb" => c.alpha_emb = 0.0,
            "att" => c.alpha_att = 0.0,
            "hidden" => c.alpha_hidden = 0.0,
            _ => c.alpha_pred = 0.0,
        }
        let mix = c.init(8, 16, &device).unwrap();
        let terms = mix
            .forward(inputs(
                &s_out,
                &t_out,
                input.attention_mask.clone(),
                &map,
                logits.clone(),
                labels.clone(),
            ))
            .unwrap();
        let names: Vec<_> = terms.named().into_iter().map(|(n, _)| n).collect();
        assert!(
            !names.contains(&drop) && names.len() == 5,
            "dropping {drop} left {names:?}"
        );
    }
}

#[test]
fn cosine_needs_equal_widths_and_missing_inputs_are_named() {
    let device = Device::flex();
    let (teacher, student, input) = models(&device);
    let (t_out, s_out) = (
        teacher.forward(input.clone()),
        student.forward(input.clone()),
    );
    let map = LayerMap::uniform(2, 4).unwrap();
    let mix = LossMixConfig {
        alpha_cos: 1.0,
        ..Default::default()
    }
    .init(8, 16, &device)
    .unwrap();
    let logits = (
        Tensor::<2>::zeros([2, 2], &device),
        Tensor::<2>::zeros([2, 2], &device),
    );
    let labels = Tensor::<1, Int>::zeros([2], &device);
    assert!(mix
        .forward(inputs(
            &s_out,
            &t_out,
            input.attention_mask.clone(),
            &map,
            logits,
            labels
        ))
        .is_err());
    let mix = LossMixConfig {
        alpha_mlm: 1.0,
        ..Default::default()
    }
    .init(8, 16, &device)
    .unwrap();
    let mut i = inputs(
        &s_out,
        &t_out,
        input.attention_mask.clone(),
        &map,
        (
            Tensor::zeros([2, 2], &device),
            Tensor::zeros([2, 2], &device),
        ),
        Tensor::zeros([2], &device),
    );
    i.mlm_labels = None;
    let err = mix.forward(i).unwrap_err().to_string();
    assert!(
        err.contains("mlm") && err.contains("alpha_mlm = 0"),
        "{err}"
    );
    assert!(LossMixConfig::default()
        .validate()
        .unwrap_err()
        .to_string()
        .contains("every weight is 0"));
    let bad_map = LayerMap::uniform(2, 6).unwrap();
    let mix = LossMixConfig::tinybert_intermediate()
        .init(8, 16, &device)
        .unwrap();
    let i = inputs(
        &s_out,
        &t_out,
        input.attention_mask.clone(),
        &bad_map,
        (
            Tensor::zeros([2, 2], &device),
            Tensor::zeros([2, 2], &device),
        ),
        Tensor::zeros([2], &device),
    );
    assert!(mix
        .forward(i)
        .unwrap_err()
        .to_string()
        .contains("layer map"));
}

#[test]
fn non_finite_terms_are_reported_by_name() {
    let device = Device::flex();
    let s = Tensor::<2>::from_floats([[f32::NAN, 0.0]], &device);
    let t = Tensor::<2>::from_floats([[0.0, 0.0]], &device);
    let loss = SoftTargetLoss::new(1.0)
        .unwrap()
        .forward(s, t, burn::nn::loss::Reduction::Mean)
        .unwrap();
    let terms = LossTerms {
        ce: Some(loss.clone()),
        mlm: None,
        label: None,
        cos: None,
        emb: None,
        att: None,
        hidden: None,
        pred: None,
        total: loss,
    };
    let err = terms.values().unwrap_err().to_string();
    assert!(err.contains("`ce`") && err.contains("NaN"), "{err}");
}

#[test]
fn a_student_on_an_autodiff_device_learns_from_a_plain_teacher() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (teacher, _, input) = models(&device);
    let t_out = teacher.forward(input.clone());
    // DistilBERT-style copy onto the autodiff device.
    let student = StudentSpec::default().build(&teacher, &ad).unwrap();
    let ad_input =
        BertInput::from_token_ids(&[vec![1, 5, 6, 7, 2], vec![1, 9, 2]], 0, 40, &ad).unwrap();
    let s_out = student.forward(ad_input.clone());
    let map = LayerMap::every_other(2, 4).unwrap();
    let mix = LossMixConfig {
        alpha_cos: 1.0,
        alpha_att: 1.0,
        alpha_hidden: 1.0,
        alpha_emb: 1.0,
        ..Default::default()
    }
    .init(16, 16, &ad)
    .unwrap();
    let terms = mix
        .forward(DistillInputs {
            student: &s_out,
            teacher: &t_out,
            student_logits: None,
            teacher_logits: None,
            mlm_labels: None,
            class_labels: None,
            attention_mask: ad_input.attention_mask.clone(),
            layer_map: &map,
        })
        .unwrap();
    // Copied from teacher layers 0 and 2 and compared with them: the first mapped pair is exact.
    assert!(scalar(terms.emb.as_ref().unwrap()) < 1e-10);
    let grads = terms.total.backward();
    let g = student.layers[1]
        .attention
        .query
        .weight
        .grad(&grads)
        .expect("student weights get gradients");
    let norm = g.abs().sum().into_scalar::<f32>();
    assert!(norm > 0.0 && norm.is_finite(), "gradient norm {norm}");
}

#[test]
fn logit_terms_from_cached_teacher_logits_equal_the_full_mix() {
    let device = Device::flex();
    let (teacher, student, input) = models(&device);
    let (t_out, s_out) = (
        teacher.forward(input.clone()),
        student.forward(input.clone()),
    );
    let map = LayerMap::uniform(2, 4).unwrap();
    let logits = (
        Tensor::<2>::from_floats([[0.1, 0.5], [0.3, -0.2]], &device),
        Tensor::<2>::from_floats([[1.0, -1.0], [0.2, 0.4]], &device),
    );
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device);
    for config in [
        LossMixConfig::tinybert_prediction(),
        LossMixConfig {
            alpha_ce: 0.5,
            alpha_label: 2.0,
            alpha_pred: 0.25,
            temperature: 2.0,
            ..Default::default()
        },
    ] {
        assert!(!config.needs_teacher_states());
        let mix = config.init(8, 16, &device).unwrap();
        let full = mix
            .forward(inputs(
                &s_out,
                &t_out,
                input.attention_mask.clone(),
                &map,
                logits.clone(),
                labels.clone(),
            ))
            .unwrap();
        let cached = mix
            .forward_logits(logits.0.clone(), logits.1.clone(), labels.clone())
            .unwrap();
        let (a, b) = (full.values().unwrap(), cached.values().unwrap());
        assert_eq!(a, b);
    }
    let states = LossMixConfig::tinybert_intermediate();
    assert!(states.needs_teacher_states());
    let mix = states.init(8, 16, &device).unwrap();
    let err = mix
        .forward_logits(logits.0, logits.1, labels)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoders' outputs"), "{err}");
}
