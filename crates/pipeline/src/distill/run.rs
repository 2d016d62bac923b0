//! The distillation recipe end to end: fine-tune the teacher on the task, build the student, distil it
//! (TinyBERT's two task stages or DistilBERT's triple loss), evaluate both, and write the report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use kd_losses::{
    classification_cross_entropy, DistillInputs, LayerMap, Logits, LossMixConfig, LossTerms,
};
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::weights::copy_tokenizer_files;
use student_arch::{load_pretrained, model_size, BertTokenizer, LayerSelection, StudentSpec};

use crate::classifier::{ClassifierMeta, SequenceClassifier, CLASSIFIER_FILE};
use crate::data::labelled::{load_dataset, Dataset, Splits};
use crate::distill::general::{general_distill, general_student_dir, GeneralReport};
use crate::error::{io_err, PipelineError, Result};
use crate::eval::{evaluate, latency_ms, Scores};
use crate::train::{encode, run_stage, RunOptions, StageConfig, StageOutcome};

use crate::config::{DistillConfig, LossTerm, Method, Stage};

/// Accuracy, size and speed of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// Test accuracy.
    pub accuracy: f64,
    /// Test macro-F1.
    pub macro_f1: f64,
    /// Parameters.
    pub params: usize,
    /// Bytes of the parameters in f32.
    pub bytes: usize,
    /// Layers.
    pub layers: usize,
    /// Median milliseconds of one forward pass of `eval_batch_size` test examples.
    pub latency_ms: f64,
    /// Where it was saved.
    pub path: PathBuf,
}

/// The report of a run: `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The dataset.
    pub dataset: String,
    /// The labels.
    pub labels: Vec<String>,
    /// The method.
    pub method: Method,
    /// The device name.
    pub device: String,
    /// Train, dev and test sizes.
    pub split_sizes: [usize; 3],
    /// The fine-tuned teacher.
    pub teacher: ModelReport,
    /// The student.
    pub student: ModelReport,
    /// Student accuracy / teacher accuracy.
    pub accuracy_ratio: f64,
    /// Every stage with its throughput.
    pub stages: Vec<StageOutcome>,
    /// Wall seconds of the whole run in this process.
    pub seconds: f64,
    /// General distillation, when the run did it.
    pub general: Option<GeneralReport>,
    /// Training examples after augmentation, when augmented.
    pub augmented_train: Option<usize>,
}

fn finetuned_or_new(
    dir: &Path,
    labels: &[String],
    seed: u64,
    device: &Device,
) -> Result<(SequenceClassifier, bool)> {
    if dir.join(CLASSIFIER_FILE).exists() {
        let (model, meta) = SequenceClassifier::load(dir, device)?;
        if meta.labels != labels {
            return Err(PipelineError::Config {
                field: "teacher",
                message: format!(
                    "{} was fine-tuned for labels {:?}, the dataset has {labels:?}",
                    dir.display(),
                    meta.labels
                ),
            });
        }
        return Ok((model, true));
    }
    let (encoder, _) = load_pretrained(dir, device)?;
    Ok((
        SequenceClassifier::new(encoder, labels.len(), seed, device),
        false,
    ))
}

/// The texts of the dev and test splits, which general distillation keeps out of its corpus.
fn held_out_texts(splits: &Splits) -> Vec<String> {
    splits
        .dev
        .iter()
        .chain(&splits.test)
        .map(|e| e.text.clone())
        .collect()
}

/// The task's splits, as [`distill`] makes them.
fn task_splits(config: &DistillConfig, cache: &Path) -> Result<(Dataset, Splits)> {
    let dataset: Dataset = load_dataset(&config.dataset, &config.columns, None, cache)?;
    let mut splits = config.splits().split(&dataset.examples, config.seed)?;
    if let Some(n) = config.max_train_examples {
        splits.train.truncate(n);
    }
    if let Some(n) = config.max_eval_examples {
        splits.dev.truncate(n);
        splits.test.truncate(n);
    }
    Ok((dataset, splits))
}

/// General distillation alone (`--stage general`): the task's dev and test texts are kept out of the corpus.
pub fn general_only(config: &DistillConfig, options: &RunOptions) -> Result<GeneralReport> {
    config.validate()?;
    std::fs::create_dir_all(&options.out_dir).map_err(io_err("creating", &options.out_dir))?;
    write_atomic(
        &options.out_dir.join("config.json"),
        serde_json::to_string_pretty(config)
            .expect("config serialises")
            .as_bytes(),
    )?;
    let (_, splits) = task_splits(config, &options.cache)?;
    Ok(general_distill(config, &held_out_texts(&splits), options)?.0)
}

/// Runs the whole recipe and writes the output directory.
pub fn distill(config: &DistillConfig, options: &RunOptions) -> Result<Report> {
    config.validate()?;
    if config.stage == Stage::General {
        return Err(PipelineError::Config {
            field: "stage",
            message: "general distillation alone writes no task report; call run::general_only"
                .into(),
        });
    }
    let started = Instant::now();
    let out = &options.out_dir;
    std::fs::create_dir_all(out).map_err(io_err("creating", out))?;
    write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(config)
            .expect("config serialises")
            .as_bytes(),
    )?;
    let teacher_dir = match &config.teacher {
        Some(dir) => dir.clone(),
        None => crate::fetch::fetch_asset(&crate::fetch::MINILM_TEACHER, &options.cache)?,
    };
    let tokenizer = BertTokenizer::from_dir(&teacher_dir)?;
    let (dataset, splits) = task_splits(config, &options.cache)?;
    let train = encode(&tokenizer, &splits.train, config.max_length)?;
    let dev = encode(&tokenizer, &splits.dev, config.max_length)?;
    let test = encode(&tokenizer, &splits.test, config.max_length)?;
    let plain = options.device.clone();
    let held_out_texts = held_out_texts(&splits);

    // 0. General distillation, and the augmented training set.
    let (general_report, mut mlm) = if config.stage == Stage::Both {
        let (report, teacher, head) = general_distill(config, &held_out_texts, options)?;
        (Some(report), Some((teacher, head)))
    } else {
        (None, None)
    };
    let student_train = match &config.augment {
        None => None,
        Some(augment_config) => {
            let path = out.join("augmented.jsonl");
            let examples = if options.resume && path.exists() {
                crate::data::augment::load_augmented(&path)?
            } else {
                let (teacher, head) = match mlm.take() {
                    Some(pair) => pair,
                    None => {
                        let (t, h, _) =
                            crate::distill::general::mlm_teacher(config, &held_out_texts, options)?;
                        (t, h)
                    }
                };
                let examples = crate::data::augment::augment(
                    &splits.train,
                    &tokenizer,
                    &teacher,
                    &head,
                    augment_config,
                    config.max_length,
                    config.seed,
                    &plain,
                )?;
                crate::data::augment::save_augmented(&path, &examples)?;
                examples
            };
            Some(encode(&tokenizer, &examples, config.max_length)?)
        }
    };
    drop(mlm);
    let augmented_train = student_train.as_ref().map(Vec::len);
    let student_train = student_train.unwrap_or_else(|| train.clone());
    let ad = plain.clone().autodiff();
    let labels = dataset.label_names.clone();
    let meta = ClassifierMeta {
        labels: labels.clone(),
        pooling: "mean".into(),
        max_length: config.max_length,
    };
    let ctx = |name: &str, vocab_size: usize| {
        options.stage(name, config.seed, tokenizer.pad_id, vocab_size, &ad)
    };
    let dev_score = |m: &SequenceClassifier| -> Result<Option<f64>> {
        if dev.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            evaluate(
                &m.valid(),
                &dev,
                labels.len(),
                config.eval_batch_size,
                tokenizer.pad_id,
                &plain,
            )?
            .accuracy,
        ))
    };
    let mut stages = Vec::new();

    // 1. The teacher, fine-tuned on the task unless it already is.
    let (teacher, already) = finetuned_or_new(&teacher_dir, &labels, config.seed, &ad)?;
    let teacher_out = out.join("teacher");
    let teacher = if already {
        teacher
    } else {
        let vocab = teacher.encoder.config.vocab_size;
        let (t, outcome) = run_stage(
            &ctx("teacher-finetune", vocab),
            teacher,
            &train,
            &config.teacher_finetune,
            |m, input, y, _| {
                let out = m.forward(input);
                Ok(LossTerms::label_only(classification_cross_entropy(
                    out.logits, y,
                )?))
            },
            dev_score,
        )?;
        stages.push(outcome);
        t
    };
    let teacher = teacher.valid();
    teacher.save(&teacher_out, &meta)?;
    copy_tokenizer_files(&teacher_dir, &teacher_out)?;

    // 2. The student.
    let spec = StudentSpec {
        layers: config
            .student_layers
            .clone()
            .map(LayerSelection::Explicit)
            .unwrap_or(LayerSelection::EveryOther),
        seed: config.seed,
        ..Default::default()
    };
    let init_dir = config
        .student_init
        .clone()
        .or_else(|| (config.stage == Stage::Both).then(|| general_student_dir(out)));
    let student_encoder = match (&init_dir, &config.narrow_student) {
        (Some(dir), _) => load_pretrained(dir, &plain)?.0,
        (None, Some(narrow)) => narrow.spec(config.seed).build(&teacher.encoder, &plain)?,
        (None, None) => spec.build(&teacher.encoder, &plain)?,
    };
    let head = if student_encoder.config.hidden_size == teacher.encoder.config.hidden_size {
        teacher.head.clone()
    } else {
        SequenceClassifier::new(student_encoder.clone(), labels.len(), config.seed, &plain).head
    };
    let mut student = SequenceClassifier {
        encoder: student_encoder,
        head,
    }
    .fork(&ad)
    .train();
    let vocab = student.encoder.config.vocab_size;
    let n_student = student.encoder.num_layers();
    let n_teacher = teacher.encoder.num_layers();
    let map = LayerMap::spread(n_student, n_teacher)?;
    let hidden = (
        student.encoder.config.hidden_size,
        teacher.encoder.config.hidden_size,
    );
    let mix_loss = |mix_config: LossMixConfig| -> Result<kd_losses::LossMix> {
        let seeded = LossMixConfig {
            seed: config.seed,
            ..mix_config
        };
        Ok(seeded.init(hidden.0, hidden.1, &ad)?)
    };

    // 3./4. Task distillation.
    let phases: Vec<(&str, LossMixConfig, &StageConfig)> = match config.method {
        Method::Tinybert => {
            let drop = &config.drop_terms;
            let intermediate =
                LossTerm::apply(&LossMixConfig::tinybert_intermediate(), drop, config.seed);
            let mut prediction = LossTerm::apply(
                &LossMixConfig {
                    temperature: config.temperature,
                    ..LossMixConfig::tinybert_prediction()
                },
                drop,
                config.seed,
            );
            if prediction.alpha_pred == 0.0 {
                // Without prediction-layer distillation the classifier still has to learn: hard labels.
                prediction.alpha_label = 1.0;
            }
            let mut phases = Vec::new();
            if intermediate.validate().is_ok() {
                phases.push(("tinybert-intermediate", intermediate, &config.intermediate));
            }
            phases.push(("tinybert-prediction", prediction, &config.prediction));
            phases
        }
        Method::Distilbert => vec![(
            "distilbert-task",
            LossMixConfig {
                alpha_ce: 1.0,
                alpha_label: 1.0,
                alpha_cos: 1.0,
                temperature: config.temperature.max(1.0),
                ..Default::default()
            },
            &config.prediction,
        )],
    };
    for (name, mix_config, stage_config) in phases {
        // A stage that learns from the teacher's logits alone (TinyBERT's prediction stage) gets them once,
        // before its first step, instead of a teacher forward pass per step and epoch; a resumed stage that
        // had already finished takes no step and computes none.
        let logit_terms_only = !mix_config.needs_teacher_states();
        let cached_logits: std::cell::OnceCell<Vec<Vec<f32>>> = std::cell::OnceCell::new();
        let teacher_logits = || -> Result<&Vec<Vec<f32>>> {
            if cached_logits.get().is_none() {
                let started = Instant::now();
                let logits = crate::eval::logits(
                    &teacher,
                    &student_train,
                    config.eval_batch_size,
                    tokenizer.pad_id,
                    &plain,
                )?;
                eprintln!(
                    "{name}: the teacher's logits on {} training examples in {:.0} s",
                    student_train.len(),
                    started.elapsed().as_secs_f64()
                );
                let _ = cached_logits.set(logits);
            }
            Ok(cached_logits.get().expect("set just above"))
        };
        let mix = mix_loss(mix_config)?;
        let pair = StudentWithMix { student, mix };
        let eval_pred = name != "tinybert-intermediate";
        let (trained, outcome) = run_stage(
            &ctx(name, vocab),
            pair,
            &student_train,
            stage_config,
            |m, input, y, indices| {
                if logit_terms_only {
                    cached_logit_loss(m, teacher_logits()?, input, y, indices)
                } else {
                    task_distill_loss(&teacher, m, input, y, &map)
                }
            },
            |m| {
                if eval_pred {
                    dev_score(&m.student)
                } else {
                    Ok(None)
                }
            },
        )?;
        stages.push(outcome);
        student = trained.student;
    }
    let student = student.valid();
    let student_out = out.join("student");
    student.save(&student_out, &meta)?;
    copy_tokenizer_files(&teacher_dir, &student_out)?;

    // 5. Evaluation on the test split.
    let report_of = |m: &SequenceClassifier, path: PathBuf| -> Result<ModelReport> {
        let Scores { accuracy, macro_f1 } = evaluate(
            m,
            &test,
            labels.len(),
            config.eval_batch_size,
            tokenizer.pad_id,
            &plain,
        )?;
        let size = model_size(m);
        Ok(ModelReport {
            accuracy,
            macro_f1,
            params: size.params,
            bytes: size.bytes,
            layers: m.encoder.num_layers(),
            latency_ms: latency_ms(m, &test, config.eval_batch_size, tokenizer.pad_id, &plain)?,
            path,
        })
    };
    let teacher_report = report_of(&teacher, teacher_out)?;
    let student_report = report_of(&student, student_out)?;
    let report = Report {
        dataset: dataset.name.clone(),
        labels: labels.clone(),
        method: config.method,
        device: options.device_name.clone(),
        split_sizes: [train.len(), dev.len(), test.len()],
        accuracy_ratio: student_report.accuracy / teacher_report.accuracy.max(1e-12),
        teacher: teacher_report,
        student: student_report,
        stages,
        seconds: started.elapsed().as_secs_f64(),
        general: general_report,
        augmented_train,
    };
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    write_atomic(&out.join("report.md"), distill_markdown(&report).as_bytes())?;
    Ok(report)
}

use student_arch::BertInput;

/// The loss of one task-distillation step (TinyBERT's intermediate or prediction stage, or DistilBERT's task
/// stage, as `m.mix` weighs its terms): the teacher's forward pass on its own device without a graph, then the
/// student's forward pass and every term of the mix. `cargo xtask bench` times exactly this.
pub fn task_distill_loss(
    teacher: &SequenceClassifier,
    m: &StudentWithMix,
    input: BertInput,
    class_labels: Tensor<1, Int>,
    map: &LayerMap,
) -> Result<LossTerms> {
    let plain = teacher.head.weight.val().device();
    let plain_input = BertInput {
        input_ids: Tensor::<2, Int>::from_data(input.input_ids.to_data(), &plain),
        attention_mask: Tensor::<2, Int>::from_data(input.attention_mask.to_data(), &plain),
        token_type_ids: None,
    };
    let t_out = teacher.forward(plain_input);
    let mask = input.attention_mask.clone();
    let s_out = m.student.forward(input);
    Ok(m.mix.forward(DistillInputs {
        student: &s_out.encoder,
        teacher: &t_out.encoder,
        student_logits: Some(Logits::PerSequence(s_out.logits)),
        teacher_logits: Some(Logits::PerSequence(t_out.logits)),
        mlm_labels: None,
        class_labels: Some(class_labels),
        attention_mask: mask,
        layer_map: map,
    })?)
}

/// The loss of one step of a stage whose mix needs only the teacher's logits (see
/// [`LossMixConfig::needs_teacher_states`]), with the teacher's logits of every training example computed
/// ahead (`all[i]` for example `i`; `indices` are the batch's examples).
pub fn cached_logit_loss(
    m: &StudentWithMix,
    all: &[Vec<f32>],
    input: BertInput,
    class_labels: Tensor<1, Int>,
    indices: &[usize],
) -> Result<LossTerms> {
    let device = class_labels.device();
    let num_labels = all.first().map_or(0, Vec::len);
    let rows: Vec<f32> = indices
        .iter()
        .flat_map(|&i| all[i].iter().copied())
        .collect();
    let teacher_logits = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(rows, [indices.len(), num_labels]),
        &device,
    );
    let s_out = m.student.forward(input);
    Ok(m.mix
        .forward_logits(s_out.logits, teacher_logits, class_labels)?)
}

/// The student and the loss mix (with W_h, W_e) trained together.
#[derive(Module, Debug)]
pub struct StudentWithMix {
    /// The student classifier.
    pub student: SequenceClassifier,
    /// The loss mix and its projections.
    pub mix: kd_losses::LossMix,
}

/// The report as a Markdown page.
pub fn distill_markdown(r: &Report) -> String {
    let mut s = format!(
        "# Distillation report: {} ({:?})\n\nDevice: {}. Split sizes (train/dev/test): {}/{}/{}. Labels: {:?}.\n\n",
        r.dataset, r.method, r.device, r.split_sizes[0], r.split_sizes[1], r.split_sizes[2], r.labels
    );
    s += "| model | layers | test accuracy | macro-F1 | params | MB (f32) | latency (ms / batch) |\n|---|---|---|---|---|---|---|\n";
    for (name, m) in [("teacher", &r.teacher), ("student", &r.student)] {
        s += &format!(
            "| {name} | {} | {:.4} | {:.4} | {} | {:.1} | {:.1} |\n",
            m.layers,
            m.accuracy,
            m.macro_f1,
            m.params,
            m.bytes as f64 / 1e6,
            m.latency_ms
        );
    }
    s += &format!(
        "\nStudent / teacher accuracy: {:.2}%. Speed-up: {:.2}x. Size: {:.1}% of the teacher.\n\n",
        100.0 * r.accuracy_ratio,
        r.teacher.latency_ms / r.student.latency_ms.max(1e-9),
        100.0 * r.student.params as f64 / r.teacher.params as f64
    );
    s += "| stage | steps | first loss | last loss | best dev | tokens/s | seconds |\n|---|---|---|---|---|---|---|\n";
    for st in &r.stages {
        s += &format!(
            "| {} | {} | {:.4} | {:.4} | {} | {:.0} | {:.0} |\n",
            st.name,
            st.steps,
            st.first_loss,
            st.last_loss,
            st.best_dev
                .map(|d| format!("{d:.4}"))
                .unwrap_or_else(|| "-".into()),
            st.tokens_per_second,
            st.seconds
        );
    }
    s
}
