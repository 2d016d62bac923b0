//! General distillation on plain text, before any task: an MLM head fitted on the frozen teacher when it has
//! none; DistilBERT's triple loss (MLM + Hinton on the MLM logits at masked positions + cosine on the hidden
//! states) for a student copied from every other teacher layer; TinyBERT's embedding + attention + hidden losses
//! for a narrower, randomly initialised student.
//!
//! Writes `general/student/` (a Hugging Face BERT directory; with `cls.predictions.*` for DistilBERT) and
//! `general/report.json`, and `teacher-mlm/` (the teacher with its fitted head) when a head was fitted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use kd_losses::{DistillInputs, LayerMap, Logits, LossMixConfig, LossTerms};
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::weights::{copy_tokenizer_files, save_pretrained};
use student_arch::{BertInput, BertModel, BertTokenizer, LayerSelection, MlmHead, StudentSpec};

use crate::config::general::StudentInit;
use crate::config::{DistillConfig, LossTerm, Method};
use crate::data::corpus::Corpus;
use crate::data::masking::{batch_seed, mask_batch, MaskingConfig, Vocabulary};
use crate::distill::mlm_head::{
    labels_tensor, masked_accuracy, mlm_logits, sequences_of, teacher_with_head,
};
use crate::error::{io_err, Result};
use crate::train::{run_stage, Encoded, RunOptions, StageOutcome};

/// What general distillation did: `general/report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneralReport {
    /// The method.
    pub method: Method,
    /// Words and sources of the corpus (after the passage limit).
    pub corpus_words: usize,
    /// Each source and its words (before the limit).
    pub corpus_sources: Vec<(String, usize)>,
    /// Lines dropped because they equal a task's dev or test example.
    pub excluded_lines: usize,
    /// Training and held-out passages.
    pub passages: [usize; 2],
    /// Whether the MLM head was fitted here (false: the teacher brought one, or an earlier run fitted it).
    pub head_fitted: bool,
    /// Masked-token accuracy of the teacher with its head on the held-out passages.
    pub teacher_mlm_accuracy: f64,
    /// The same for the student (DistilBERT).
    pub student_mlm_accuracy: Option<f64>,
    /// The stages run.
    pub stages: Vec<StageOutcome>,
    /// The student's directory.
    pub student: PathBuf,
    /// Wall seconds in this process.
    pub seconds: f64,
}

/// The student trained by general distillation, with its MLM head (DistilBERT) and the loss mix.
#[derive(Module, Debug)]
pub struct GeneralStudent {
    /// The encoder.
    pub encoder: BertModel,
    /// DistilBERT's MLM head (a copy of the teacher's, tied to the student's word embeddings).
    pub head: Option<MlmHead>,
    /// The loss mix and its projections.
    pub mix: kd_losses::LossMix,
}

/// The loss mix of general distillation with the ablated terms removed.
pub fn general_mix(config: &DistillConfig) -> LossMixConfig {
    let base = match config.method {
        Method::Distilbert => LossMixConfig {
            temperature: config.general.temperature,
            ..LossMixConfig::distilbert()
        },
        Method::Tinybert => LossMixConfig {
            attention_target: config.attention_target,
            ..LossMixConfig::tinybert_intermediate()
        },
    };
    LossTerm::apply(&base, &config.drop_terms, config.seed)
}

/// Where general distillation writes its student.
pub fn general_student_dir(out: &Path) -> PathBuf {
    out.join("general").join("student")
}

/// The corpus of general distillation, tokenised.
pub(crate) struct Prepared {
    pub(crate) teacher_dir: PathBuf,
    pub(crate) tokenizer: BertTokenizer,
    pub(crate) vocab: Vocabulary,
    pub(crate) train: Vec<Encoded>,
    pub(crate) held: Vec<Encoded>,
    pub(crate) sources: Vec<(String, usize)>,
    pub(crate) excluded: usize,
    pub(crate) words: usize,
}

pub(crate) fn prepare(
    config: &DistillConfig,
    held_out_texts: &[String],
    options: &RunOptions,
) -> Result<Prepared> {
    let g = &config.general;
    g.validate()?;
    let teacher_dir = match &g.teacher {
        Some(dir) => dir.clone(),
        None => crate::fetch::fetch_asset(&crate::fetch::MINILM_TEACHER, &options.cache)?,
    };
    let tokenizer = BertTokenizer::from_dir(&teacher_dir)?;
    let vocab = Vocabulary::of(&tokenizer);
    let corpus = Corpus::load(
        &g.corpus,
        held_out_texts,
        g.words_per_passage,
        g.max_passages,
        g.skip_passages,
        // The corpus is data: every seed of an ablation samples the same passages.
        config.split_seed(),
        &options.cache,
    )?;
    let (sources, excluded, words) = (corpus.sources.clone(), corpus.excluded_lines, corpus.words);
    let (corpus, held) = corpus.split_held_out(g.held_out_passages);
    let encode = |texts: &[String]| -> Result<Vec<Encoded>> {
        texts
            .iter()
            .map(|t| {
                Ok(Encoded {
                    ids: tokenizer.encode(t, g.max_length)?,
                    label: 0,
                })
            })
            .collect()
    };
    let train = encode(&corpus.passages)?;
    let held = encode(&held)?;
    Ok(Prepared {
        teacher_dir,
        tokenizer,
        vocab,
        train,
        held,
        sources,
        excluded,
        words,
    })
}

/// The pre-trained teacher of general distillation (`general.teacher`) with its MLM head: its own, one fitted
/// earlier in this output directory (with resume), or one fitted now on the corpus.
pub fn mlm_teacher(
    config: &DistillConfig,
    held_out_texts: &[String],
    options: &RunOptions,
) -> Result<(BertModel, MlmHead, Vec<StageOutcome>)> {
    let p = prepare(config, held_out_texts, options)?;
    teacher_with_head(
        &p.teacher_dir,
        &p.train,
        &p.held,
        &config.general,
        &p.vocab,
        p.tokenizer.pad_id,
        config.seed,
        options,
    )
}

/// Runs general distillation for `config.method`, writes `general/`, and returns the report with the teacher
/// and its MLM head (for augmentation).
pub fn general_distill(
    config: &DistillConfig,
    held_out_texts: &[String],
    options: &RunOptions,
) -> Result<(GeneralReport, BertModel, MlmHead)> {
    let g = &config.general;
    let started = Instant::now();
    let out = options.out_dir.join("general");
    let report_path = out.join("report.json");
    let Prepared {
        teacher_dir,
        tokenizer,
        vocab,
        train,
        held,
        sources,
        excluded,
        words,
    } = prepare(config, held_out_texts, options)?;
    let pad = tokenizer.pad_id;
    let (teacher, teacher_head, fit) = teacher_with_head(
        &teacher_dir,
        &train,
        &held,
        g,
        &vocab,
        pad,
        config.seed,
        options,
    )?;
    if let Some(report) = finished_report(&report_path, options.resume)? {
        return Ok((report, teacher, teacher_head));
    }
    std::fs::create_dir_all(&out).map_err(io_err("creating", &out))?;
    let plain = options.device.clone();
    let teacher_mlm_accuracy = masked_accuracy(
        &teacher,
        &teacher_head,
        &held,
        &vocab,
        &g.masking,
        pad,
        &plain,
    )?;
    let mut stages = fit;

    let ad = plain.clone().autodiff();
    let (spec, name) = general_student_spec(config, teacher.num_layers());
    let encoder = spec.build(&teacher, &ad)?;
    let head =
        (config.method == Method::Distilbert).then(|| teacher_head.clone().fork(&ad).train());
    let mix_config = general_mix(config);
    let mix = mix_config.init(encoder.config.hidden_size, teacher.config.hidden_size, &ad)?;
    let map = LayerMap::spread(encoder.num_layers(), teacher.num_layers())?;
    let student = GeneralStudent { encoder, head, mix };
    let ctx = options.stage(name, config.seed, pad, teacher.config.vocab_size, &ad);
    let n = g
        .distill_passages
        .unwrap_or(train.len())
        .min(train.len())
        .max(1);
    let step = GeneralStep {
        teacher: &teacher,
        teacher_head: &teacher_head,
        vocab: &vocab,
        masking: (config.method == Method::Distilbert).then_some(&g.masking),
        seed: config.seed,
        map: &map,
        pad,
        plain: &plain,
        ad: &ad,
    };
    let (student, outcome) = run_stage(
        &ctx,
        student,
        &train[..n],
        &g.distill,
        |m: &GeneralStudent, input, _, _| step.loss(m, input),
        |_| Ok(None),
    )?;
    stages.push(outcome);
    let student = student.valid();
    let student_mlm_accuracy = match &student.head {
        Some(head) => Some(masked_accuracy(
            &student.encoder,
            head,
            &held,
            &vocab,
            &g.masking,
            pad,
            &plain,
        )?),
        None => None,
    };
    let dir = general_student_dir(&options.out_dir);
    save_general_student(&student, &dir, &teacher_dir)?;
    let report = GeneralReport {
        method: config.method,
        corpus_words: words,
        corpus_sources: sources,
        excluded_lines: excluded,
        passages: [n, held.len()],
        head_fitted: stages.iter().any(|s| s.name == "mlm-head"),
        teacher_mlm_accuracy,
        student_mlm_accuracy,
        stages,
        student: dir,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    Ok((report, teacher, teacher_head))
}

/// The student of general distillation for `config.method` (of a teacher with `teacher_layers`), and the
/// stage's name.
fn general_student_spec(
    config: &DistillConfig,
    teacher_layers: usize,
) -> (StudentSpec, &'static str) {
    let g = &config.general;
    match config.method {
        Method::Distilbert => (
            match g.distilbert_init {
                StudentInit::Copy => StudentSpec {
                    layers: LayerSelection::EveryOther,
                    seed: config.seed,
                    ..Default::default()
                },
                StudentInit::Random => StudentSpec {
                    layers: LayerSelection::Count(teacher_layers.div_ceil(2)),
                    seed: config.seed,
                    ..Default::default()
                },
            },
            "distilbert-general",
        ),
        Method::Tinybert => (g.tinybert_student.spec(config.seed), "tinybert-general"),
    }
}

/// Writes the general student as a Hugging Face directory (with its MLM head for DistilBERT) and the
/// teacher's tokenizer beside it.
fn save_general_student(student: &GeneralStudent, dir: &Path, teacher_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    match &student.head {
        Some(head) => head.save_with_encoder(&student.encoder, dir)?,
        None => save_pretrained(&student.encoder, dir)?,
    }
    copy_tokenizer_files(teacher_dir, dir)?;
    Ok(())
}

/// One step of general distillation: what the loss of a batch needs besides the student.
struct GeneralStep<'a> {
    teacher: &'a BertModel,
    teacher_head: &'a MlmHead,
    vocab: &'a Vocabulary,
    /// BERT's masking (DistilBERT's MLM and Hinton terms); `None`: unmasked passages (TinyBERT).
    masking: Option<&'a MaskingConfig>,
    seed: u64,
    map: &'a LayerMap,
    pad: u32,
    plain: &'a Device,
    ad: &'a Device,
}

impl GeneralStep<'_> {
    /// The loss of one batch: the teacher's pass without a graph, the student's, and the mix's terms (the MLM
    /// and Hinton terms on the masked positions when masking).
    fn loss(&self, m: &GeneralStudent, input: BertInput) -> Result<LossTerms> {
        let seqs = sequences_of(&input)?;
        let (ids, masked) = match self.masking {
            Some(masking) => {
                let mb = mask_batch(&seqs, self.vocab, masking, batch_seed(self.seed, &seqs))?;
                (mb.input_ids.clone(), Some(mb))
            }
            None => (seqs, None),
        };
        let vocab_size = self.teacher.config.vocab_size;
        let plain_input = BertInput::from_token_ids(&ids, self.pad, vocab_size, self.plain)?;
        let student_input = BertInput::from_token_ids(&ids, self.pad, vocab_size, self.ad)?;
        let mask = student_input.attention_mask.clone();
        let t_out = self.teacher.forward(plain_input);
        let s_out = m.encoder.forward(student_input);
        let (student_logits, teacher_logits, labels) = match (&masked, &m.head) {
            (Some(mb), Some(head)) => {
                let t = mlm_logits(
                    self.teacher,
                    self.teacher_head,
                    t_out.last_hidden_state(),
                    &mb.positions,
                )?;
                let s = mlm_logits(&m.encoder, head, s_out.last_hidden_state(), &mb.positions)?;
                (
                    Some(Logits::PerToken(s)),
                    Some(Logits::PerToken(t)),
                    Some(labels_tensor(&mb.labels, self.ad)),
                )
            }
            _ => (None, None, None),
        };
        Ok(m.mix.forward(DistillInputs {
            student: &s_out,
            teacher: &t_out,
            student_logits,
            teacher_logits,
            mlm_labels: labels,
            class_labels: None,
            attention_mask: mask,
            layer_map: self.map,
        })?)
    }
}

/// The report of a general distillation that an earlier run finished, when resuming.
fn finished_report(path: &Path, resume: bool) -> Result<Option<GeneralReport>> {
    if !(resume && path.exists()) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    Ok(serde_json::from_str::<GeneralReport>(&text).ok())
}
