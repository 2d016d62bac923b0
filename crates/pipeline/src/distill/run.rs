//! The distillation recipe end to end: fine-tune the teacher on the task, build the student, distil it
//! (TinyBERT's two task stages or DistilBERT's triple loss), evaluate both, and write the report.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use kd_losses::{classification_cross_entropy, LayerMap, LossMix, LossMixConfig, LossTerms};
use student_arch::io::write_atomic;
use student_arch::weights::copy_tokenizer_files;
use student_arch::{
    load_pretrained, model_size, BertModel, BertTokenizer, LayerSelection, MlmHead, StudentSpec,
};

use crate::classifier::{ClassifierMeta, Pooling, SequenceClassifier, CLASSIFIER_FILE};
use crate::config::{DistillConfig, Stage};
use crate::data::augment::{augment, load_augmented, save_augmented};
use crate::data::labelled::{Dataset, Splits};
use crate::data::tasks::load_dataset;
use crate::distill::general::{general_distill, general_student_dir, mlm_teacher, GeneralReport};
use crate::distill::report::{distill_markdown, ModelReport, Report};
use crate::distill::task::{cached_logit_loss, task_distill_loss, task_phases, StudentWithMix};
use crate::error::{PipelineError, Result};
use crate::eval::{evaluate, latency_ms, Scores};
use crate::predict::logits;
use crate::train::{encode, run_stage, Encoded, RunOptions, StageContext, StageOutcome};

fn finetuned_or_new(
    dir: &Path,
    labels: &[String],
    head: Pooling,
    seed: u64,
    device: &Device,
) -> Result<(SequenceClassifier, Option<String>)> {
    // A directory of ours (classifier.json) or a `BertForSequenceClassification` saved by transformers.
    if dir.join(CLASSIFIER_FILE).exists() || ClassifierMeta::from_hf_config(dir)?.is_some() {
        let (model, meta) = SequenceClassifier::load(dir, device)?;
        let order = meta.label_order(labels, dir)?;
        let mapped = order.iter().enumerate().any(|(i, &o)| i != o);
        let model = model.reorder_labels(&order)?;
        let note =
            format!(
            "{} is already a fine-tuned classifier ({} head, labels {:?}{}): not fine-tuned again",
            dir.display(),
            meta.pooling,
            meta.labels,
            if mapped { ", mapped to the dataset's by name" } else { "" }
        );
        return Ok((model, Some(note)));
    }
    let (encoder, _) = load_pretrained(dir, device)?;
    Ok((
        SequenceClassifier::new(encoder, labels.len(), seed, device).with_pooling(head)?,
        None,
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
    let mut splits = config
        .splits()
        .split(&dataset.examples, config.split_seed())?;
    if let Some(n) = config.max_train_examples {
        splits.train.truncate(n);
    }
    if let Some(n) = config.max_eval_examples {
        splits.dev.truncate(n);
        splits.test.truncate(n);
    }
    Ok((dataset, splits))
}

/// The base teacher's directory (fetched when the config names none) and its tokenizer, checked against it.
fn base_teacher(config: &DistillConfig, cache: &Path) -> Result<(PathBuf, BertTokenizer)> {
    let teacher_dir = match &config.teacher {
        Some(dir) => dir.clone(),
        None => crate::fetch::fetch_asset(&crate::fetch::MINILM_TEACHER, cache)?,
    };
    let teacher_config =
        student_arch::BertConfig::from_file(&teacher_dir.join(student_arch::weights::CONFIG_FILE))?;
    config.validate_for_teacher(&teacher_config)?;
    let tokenizer = crate::classifier::checked_tokenizer(&teacher_dir, teacher_config.vocab_size)?;
    Ok((teacher_dir, tokenizer))
}

/// One pass over the training split of a run of `config`, as [`distill`] encodes it: its examples and real
/// tokens (the counts the stages' step and token floors are measured in).
pub fn train_pass(config: &DistillConfig, cache: &Path) -> Result<(usize, usize)> {
    let (_, tokenizer) = base_teacher(config, cache)?;
    let (_, splits) = task_splits(config, cache)?;
    let train = encode(&tokenizer, &splits.train, config.max_length)?;
    Ok((train.len(), train.iter().map(|e| e.ids.len()).sum()))
}

/// General distillation alone (`--stage general`): the task's dev and test texts are kept out of the corpus.
pub fn general_only(config: &DistillConfig, options: &RunOptions) -> Result<GeneralReport> {
    config.validate()?;
    write_config(config, &options.out_dir)?;
    let (_, splits) = task_splits(config, &options.cache)?;
    Ok(general_distill(config, &held_out_texts(&splits), options)?.0)
}

/// Runs the whole recipe and writes the output directory.
pub fn distill(config: &DistillConfig, options: &RunOptions) -> Result<Report> {
    config.validate()?;
    if config.stage == Stage::General {
        return Err(PipelineError::Config {
            field: "stage",
            message: "general distillation alone writes no task report; call general_only".into(),
        });
    }
    let started = Instant::now();
    let out = &options.out_dir;
    write_config(config, out)?;
    let run = TaskRun::prepare(config, options)?;

    // 0. General distillation, and the augmented training set.
    let (general_report, mlm) = if config.stage == Stage::Both {
        let (report, teacher, head) = general_distill(config, &run.held_out_texts(), options)?;
        (Some(report), Some((teacher, head)))
    } else {
        (None, None)
    };
    let augmented = run.augmented_train(mlm)?;
    let augmented_train = augmented.as_ref().map(Vec::len);
    let student_train = augmented.unwrap_or_else(|| run.train.clone());
    let mut stages = Vec::new();

    // 1. The teacher, fine-tuned on the task unless it already is.
    let (teacher, teacher_note) = run.finetuned_teacher(&mut stages)?;
    let teacher_out = out.join("teacher");
    teacher.save(&teacher_out, &run.meta())?;
    copy_tokenizer_files(&run.teacher_dir, &teacher_out)?;

    // 2./3./4. The student, distilled on the task.
    let student = run.initial_student(&teacher)?;
    let student = run.distil_task(&teacher, student, &student_train, &mut stages)?;
    let student_out = out.join("student");
    student.save(&student_out, &run.meta())?;
    copy_tokenizer_files(&run.teacher_dir, &student_out)?;

    // 5. Evaluation on the test split.
    let teacher_report = run.model_report(&teacher, teacher_out)?;
    let student_report = run.model_report(&student, student_out)?;
    let report = Report {
        dataset: run.dataset.name.clone(),
        labels: run.dataset.label_names.clone(),
        method: config.method,
        device: options.device_name.clone(),
        split_sizes: [run.train.len(), run.dev.len(), run.test.len()],
        accuracy_ratio: student_report.accuracy / teacher_report.accuracy.max(1e-12),
        teacher: teacher_report,
        student: student_report,
        stages,
        seconds: started.elapsed().as_secs_f64(),
        general: general_report,
        augmented_train,
        teacher_note,
        provenance: None,
    };
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    let figures = crate::figures::loss_curves(out);
    let markdown = distill_markdown(&report) + &crate::figures::markdown(&figures);
    write_atomic(&out.join("report.md"), markdown.as_bytes())?;
    Ok(report)
}

/// Creates the output directory and writes the run's `config.json`.
fn write_config(config: &DistillConfig, out: &Path) -> Result<()> {
    student_arch::io::claim_output_dir(out, "distill", &["report.json", "checkpoints", "general"])?;
    write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(config)
            .expect("config serialises")
            .as_bytes(),
    )?;
    Ok(())
}

/// One task-distillation run: its settings, the task's data tokenised, and the devices.
struct TaskRun<'a> {
    config: &'a DistillConfig,
    options: &'a RunOptions,
    teacher_dir: PathBuf,
    tokenizer: BertTokenizer,
    dataset: Dataset,
    splits: Splits,
    train: Vec<Encoded>,
    dev: Vec<Encoded>,
    test: Vec<Encoded>,
    /// The device of evaluation and of the teacher's passes without a graph.
    plain: Device,
    /// The autodiff device the stages train on.
    ad: Device,
}

impl<'a> TaskRun<'a> {
    /// Fetches the teacher if needed, reads and splits the task's data and tokenises it.
    fn prepare(config: &'a DistillConfig, options: &'a RunOptions) -> Result<Self> {
        let (teacher_dir, tokenizer) = base_teacher(config, &options.cache)?;
        let (dataset, splits) = task_splits(config, &options.cache)?;
        let train = encode(&tokenizer, &splits.train, config.max_length)?;
        let dev = encode(&tokenizer, &splits.dev, config.max_length)?;
        let test = encode(&tokenizer, &splits.test, config.max_length)?;
        let plain = options.device.clone();
        Ok(Self {
            config,
            options,
            teacher_dir,
            tokenizer,
            dataset,
            splits,
            train,
            dev,
            test,
            ad: plain.clone().autodiff(),
            plain,
        })
    }

    fn held_out_texts(&self) -> Vec<String> {
        held_out_texts(&self.splits)
    }

    fn labels(&self) -> &[String] {
        &self.dataset.label_names
    }

    fn meta(&self) -> ClassifierMeta {
        ClassifierMeta {
            labels: self.labels().to_vec(),
            pooling: "mean".into(),
            max_length: self.config.max_length,
            split: Some(crate::classifier::RecordedSplit {
                dataset: self.config.dataset.clone(),
                seed: self.config.split_seed(),
                dev_fraction: self.config.dev_fraction,
                test_fraction: self.config.test_fraction,
            }),
        }
    }

    /// The context of the training stage `name` of a model with `vocab_size` tokens.
    fn stage(&self, name: &str, vocab_size: usize) -> StageContext {
        self.options.stage(
            name,
            self.config.seed,
            self.tokenizer.pad_id,
            vocab_size,
            &self.ad,
        )
    }

    /// Dev accuracy (none without a dev split).
    fn dev_score(&self, m: &SequenceClassifier) -> Result<Option<f64>> {
        if self.dev.is_empty() {
            return Ok(None);
        }
        let scores = evaluate(
            &m.valid(),
            &self.dev,
            self.labels().len(),
            self.config.eval_batch_size,
            self.tokenizer.pad_id,
            &self.plain,
        )?;
        Ok(Some(scores.accuracy))
    }

    /// TinyBERT's augmented training set (`augmented.jsonl`, reused on resume), from the MLM teacher of general
    /// distillation when there was one; `None` without augmentation.
    fn augmented_train(&self, mlm: Option<(BertModel, MlmHead)>) -> Result<Option<Vec<Encoded>>> {
        let Some(augment_config) = &self.config.augment else {
            return Ok(None);
        };
        let path = self.options.out_dir.join("augmented.jsonl");
        let examples = if self.options.resume && path.exists() {
            load_augmented(&path)?
        } else {
            let (teacher, head) = match mlm {
                Some(pair) => pair,
                None => {
                    let (t, h, _) = mlm_teacher(self.config, &self.held_out_texts(), self.options)?;
                    (t, h)
                }
            };
            let examples = augment(
                &self.splits.train,
                &self.tokenizer,
                &teacher,
                &head,
                augment_config,
                self.config.max_length,
                self.config.seed,
                &self.plain,
            )?;
            save_augmented(&path, &examples)?;
            examples
        };
        Ok(Some(encode(
            &self.tokenizer,
            &examples,
            self.config.max_length,
        )?))
    }

    /// The teacher fine-tuned on the task (unless its directory already holds a classifier), without a graph.
    fn finetuned_teacher(
        &self,
        stages: &mut Vec<StageOutcome>,
    ) -> Result<(SequenceClassifier, Option<String>)> {
        let (teacher, note) = finetuned_or_new(
            &self.teacher_dir,
            self.labels(),
            self.config.head,
            self.config.seed,
            &self.ad,
        )?;
        if let Some(note) = note {
            eprintln!("teacher: {note}");
            return Ok((teacher.valid(), Some(note)));
        }
        let vocab = teacher.encoder.config.vocab_size;
        let (t, outcome) = run_stage(
            &self.stage("teacher-finetune", vocab),
            teacher,
            &self.train,
            &self.config.teacher_finetune,
            |m, input, y, _| {
                let out = m.forward(input);
                Ok(LossTerms::label_only(classification_cross_entropy(
                    out.logits, y,
                )?))
            },
            |m| self.dev_score(m),
        )?;
        stages.push(outcome);
        Ok((t.valid(), None))
    }

    /// The student before task distillation: general distillation's (or `student_init`), a random narrow one, or
    /// every other teacher layer; with the teacher's classifier head when the widths match.
    fn initial_student(&self, teacher: &SequenceClassifier) -> Result<SequenceClassifier> {
        let config = self.config;
        let spec = StudentSpec {
            layers: config
                .student_layers
                .clone()
                .map(LayerSelection::Explicit)
                .unwrap_or(LayerSelection::EveryOther),
            seed: config.seed,
            // The cls head reads the pooler: the student keeps the teacher's.
            drop_pooler: !teacher.cls,
            ..Default::default()
        };
        let init_dir = config.student_init.clone().or_else(|| {
            (config.stage == Stage::Both).then(|| general_student_dir(&self.options.out_dir))
        });
        let encoder = match (&init_dir, &config.narrow_student) {
            (Some(dir), _) => load_pretrained(dir, &self.plain)?.0,
            (None, Some(narrow)) => narrow
                .spec(config.seed)
                .build(&teacher.encoder, &self.plain)?,
            (None, None) => spec.build(&teacher.encoder, &self.plain)?,
        };
        let head = if encoder.config.hidden_size == teacher.encoder.config.hidden_size {
            teacher.head.clone()
        } else {
            let labels = self.labels().len();
            SequenceClassifier::new(encoder.clone(), labels, config.seed, &self.plain).head
        };
        SequenceClassifier {
            encoder,
            head,
            cls: false,
        }
        .with_pooling(teacher.pooling())
    }

    /// TinyBERT's intermediate and prediction stages, or DistilBERT's task stage, on `student_train`.
    fn distil_task(
        &self,
        teacher: &SequenceClassifier,
        student: SequenceClassifier,
        student_train: &[Encoded],
        stages: &mut Vec<StageOutcome>,
    ) -> Result<SequenceClassifier> {
        let mut student = student.fork(&self.ad).train();
        let vocab = student.encoder.config.vocab_size;
        let map = LayerMap::spread(student.encoder.num_layers(), teacher.encoder.num_layers())?;
        let hidden = (
            student.encoder.config.hidden_size,
            teacher.encoder.config.hidden_size,
        );
        for (name, mix_config, stage_config) in task_phases(self.config) {
            // A stage that learns from the teacher's logits alone (TinyBERT's prediction stage) gets them once,
            // before its first step, instead of a teacher forward pass per step and epoch; a resumed stage that
            // had already finished takes no step and computes none.
            let logit_terms_only = !mix_config.needs_teacher_states();
            let cached: OnceCell<Vec<Vec<f32>>> = OnceCell::new();
            let teacher_logits = || -> Result<&Vec<Vec<f32>>> {
                if cached.get().is_none() {
                    let _ = cached.set(self.teacher_logits(name, teacher, student_train)?);
                }
                Ok(cached.get().expect("set just above"))
            };
            let mix: LossMix = LossMixConfig {
                seed: self.config.seed,
                ..mix_config
            }
            .init(hidden.0, hidden.1, &self.ad)?;
            let eval_pred = name != "tinybert-intermediate";
            let (trained, outcome) = run_stage(
                &self.stage(name, vocab),
                StudentWithMix { student, mix },
                student_train,
                stage_config,
                |m, input, y, indices| {
                    if logit_terms_only {
                        cached_logit_loss(m, teacher_logits()?, input, y, indices)
                    } else {
                        task_distill_loss(teacher, m, input, y, &map)
                    }
                },
                |m| {
                    if eval_pred {
                        self.dev_score(&m.student)
                    } else {
                        Ok(None)
                    }
                },
            )?;
            stages.push(outcome);
            student = trained.student;
        }
        Ok(student.valid())
    }

    /// The teacher's logits on every training example, for the stage `name`.
    fn teacher_logits(
        &self,
        name: &str,
        teacher: &SequenceClassifier,
        examples: &[Encoded],
    ) -> Result<Vec<Vec<f32>>> {
        let started = Instant::now();
        let all = logits(
            teacher,
            examples,
            self.config.eval_batch_size,
            self.tokenizer.pad_id,
            &self.plain,
        )?;
        eprintln!(
            "{name}: the teacher's logits on {} training examples in {:.0} s",
            examples.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(all)
    }

    /// Test accuracy, macro-F1, size and latency of a saved model.
    fn model_report(&self, m: &SequenceClassifier, path: PathBuf) -> Result<ModelReport> {
        let batch = self.config.eval_batch_size;
        let pad = self.tokenizer.pad_id;
        let Scores { accuracy, macro_f1 } =
            evaluate(m, &self.test, self.labels().len(), batch, pad, &self.plain)?;
        let size = model_size(m);
        Ok(ModelReport {
            accuracy,
            macro_f1,
            params: size.params,
            bytes: size.bytes,
            layers: m.encoder.num_layers(),
            latency_ms: latency_ms(m, &self.test, batch, pad, &self.plain)?,
            path,
        })
    }
}
