//! Building students from the real teacher: DistilBERT's copied layers reproduce the teacher's layers exactly,
//! sizes are counted from the tensors, and students are valid HF checkpoints.

mod common;

use std::path::PathBuf;

use common::{cpu_devices, max_abs_diff, scratch, values};
use student_arch::model::additive_attention_mask;
use student_arch::weights::named_tensors;
use student_arch::{
    load_pretrained, model_size, save_pretrained, BertConfig, LayerSelection, SentenceEncoder,
    StudentSpec,
};

fn teacher_dir() -> PathBuf {
    std::env::var_os("BERT_COMPRESS_TEACHER")
        .map(PathBuf::from)
        .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`, or set it to the directory `cargo xtask fetch` prints")
}

/// Parameters of a BERT with `config`, from the architecture's formula (independent of the tensors).
fn formula_params(c: &BertConfig, pooler: bool) -> usize {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h;
    let layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h;
    embeddings + c.num_hidden_layers * layer + if pooler { h * h + h } else { 0 }
}

#[test]
fn copied_student_layers_reproduce_the_teacher_layers_exactly() {
    let device = cpu_devices()[0].1.clone();
    let encoder = SentenceEncoder::load(&teacher_dir(), &device).unwrap();
    let teacher = &encoder.model;
    let student = StudentSpec::default().build(teacher, &device).unwrap();
    assert_eq!(student.num_layers(), 3);
    assert!(student.embeddings.token_type_embeddings.is_none() && student.pooler.is_none());

    let input = encoder
        .batch(&[
            "The teacher and the student read the same words.",
            "Short one.",
        ])
        .unwrap();
    let mask = additive_attention_mask(input.attention_mask.clone());
    let t_out = teacher.forward(input.clone());
    let s_out = student.forward(input);
    // Token types are folded into the positions: the embedding output is the teacher's.
    let d = max_abs_diff(
        &values(s_out.embedding_output.clone()),
        &values(t_out.embedding_output.clone()),
    );
    assert!(d < 1e-5, "embedding output differs by {d:e}");
    // Student layer i is teacher layer 2i: fed the teacher's input to that layer, it gives the teacher's output.
    for (i, teacher_layer) in [0usize, 2, 4].into_iter().enumerate() {
        let layer_input = if teacher_layer == 0 {
            t_out.embedding_output.clone()
        } else {
            t_out.hidden_states[teacher_layer - 1].clone()
        };
        let ours = student.layers[i].forward(layer_input, mask.clone());
        let d = max_abs_diff(
            &values(ours.hidden),
            &values(t_out.hidden_states[teacher_layer].clone()),
        );
        assert!(
            d < 1e-6,
            "student layer {i} differs from teacher layer {teacher_layer} by {d:e}"
        );
    }
    // And the first student layer sees exactly the teacher's first-layer output.
    let d = max_abs_diff(
        &values(s_out.hidden_states[0].clone()),
        &values(t_out.hidden_states[0].clone()),
    );
    assert!(d < 1e-5, "{d:e}");
}

#[test]
fn sizes_are_counted_from_tensors_and_agree_with_the_formula() {
    let device = cpu_devices()[0].1.clone();
    let (teacher, _) = load_pretrained(&teacher_dir(), &device).unwrap();
    let student = StudentSpec::default().build(&teacher, &device).unwrap();
    let t = model_size(&teacher);
    let s = model_size(&student);
    assert_eq!(t.params, formula_params(&teacher.config, true));
    assert_eq!(s.params, formula_params(&student.config, false));
    assert_eq!(s.bytes, 4 * s.params);
    // The tensors written to disk are the same count, plus the one zero token-type row written for
    // `transformers` (which loading drops again).
    let on_disk: usize = named_tensors(&student)
        .unwrap()
        .values()
        .map(|(_, v)| v.len())
        .sum();
    assert_eq!(on_disk, s.params + student.config.hidden_size);
    eprintln!(
        "teacher {} params, 3-layer student {} params ({:.1}% of the teacher)",
        t.params,
        s.params,
        100.0 * s.params as f64 / t.params as f64
    );
}

#[test]
fn narrow_student_is_random_seeded_and_valid() {
    let device = cpu_devices()[0].1.clone();
    let teacher = BertConfig::new(100, 32, 4, 4, 64)
        .init_random(true, 1, &device)
        .unwrap();
    let spec = StudentSpec {
        layers: LayerSelection::Count(2),
        hidden_size: Some(24),
        num_attention_heads: Some(4),
        intermediate_size: Some(48),
        seed: 9,
        ..StudentSpec::default()
    };
    let a = spec.build(&teacher, &device).unwrap();
    let b = spec.build(&teacher, &device).unwrap();
    assert_eq!(a.config.hidden_size, 24);
    assert_eq!(named_tensors(&a).unwrap(), named_tensors(&b).unwrap());
    let c = StudentSpec {
        seed: 10,
        ..spec.clone()
    }
    .build(&teacher, &device)
    .unwrap();
    assert_ne!(named_tensors(&a).unwrap(), named_tensors(&c).unwrap());
}

#[test]
fn impossible_specs_are_errors_naming_the_field() {
    let device = cpu_devices()[0].1.clone();
    let teacher = BertConfig::new(100, 32, 4, 4, 64)
        .init_random(false, 1, &device)
        .unwrap();
    let err = StudentSpec {
        layers: LayerSelection::Explicit(vec![0, 7]),
        ..Default::default()
    }
    .build(&teacher, &device)
    .unwrap_err();
    assert!(
        err.to_string().contains("student layer 1") && err.to_string().contains("teacher layer 7"),
        "{err}"
    );
    let err = StudentSpec {
        hidden_size: Some(30),
        ..Default::default()
    }
    .build(&teacher, &device)
    .unwrap_err();
    assert!(err.to_string().contains("hidden_size"), "{err}");
}

#[test]
fn a_student_is_a_valid_teacher_checkpoint() {
    let device = cpu_devices()[0].1.clone();
    let teacher = BertConfig::new(100, 32, 4, 4, 64)
        .init_random(true, 1, &device)
        .unwrap();
    let student = StudentSpec::default().build(&teacher, &device).unwrap();
    let dir = scratch("student-ckpt");
    save_pretrained(&student, &dir).unwrap();
    let (loaded, _) = load_pretrained(&dir, &device).unwrap();
    assert_eq!(
        named_tensors(&loaded).unwrap(),
        named_tensors(&student).unwrap()
    );
    // Without token types in memory, but saved as `transformers` needs: one zero token-type row.
    assert!(student.embeddings.token_type_embeddings.is_none());
    assert!(loaded.embeddings.token_type_embeddings.is_none());
    assert_eq!(loaded.config, student.config);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(on_disk["type_vocab_size"], 1);
    let (shape, values) =
        &named_tensors(&student).unwrap()["embeddings.token_type_embeddings.weight"];
    assert_eq!(shape, &vec![1, 32]);
    assert!(values.iter().all(|v| *v == 0.0));
    let grandchild = StudentSpec::default().build(&loaded, &device).unwrap();
    assert_eq!(grandchild.num_layers(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}
