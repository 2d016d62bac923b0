//! `cargo xtask quantize`: quantize a saved classifier (uniform bits, or mixed precision from a Hessian
//! sensitivity report under a size budget), write the quantized directory, and report bits, bytes, compression
//! against the fp32 teacher and accuracy before and after. With `compare`, the same budget is also spent
//! uniformly, in a random order and in the reverse order of sensitivity, so the Hessian's contribution is
//! measured rather than assumed.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use quant::mixed::{self, Allocator, CostKind, Unit, UnitCosts};
use quant::{Granularity, NamedTensors, QuantPlan, QuantizedModel, QUANT_FILE};
use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;
use student_arch::weights::{copy_tokenizer_files, CONFIG_FILE, TOKENIZER_FILES, WEIGHTS_FILE};
use student_arch::BertConfig;

use crate::classifier::{SequenceClassifier, CLASSIFIER_FILE};
use crate::compress::report::{quantize_markdown, QatSummary, QuantizeReport, Variant};
use crate::data::labelled::Columns;
use crate::error::{io_err, PipelineError, Result};
use crate::eval::evaluate_saved;

student_arch::config_defaults! {
    /// Settings of [`quantize`].
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct QuantizeOptions {
        /// Every layer at these bits; `None` for mixed precision (needs `sensitivity` and a budget).
        pub bits: Option<u32> = Some(8),
        /// Groups of the encoder matrices.
        pub granularity: Granularity = Granularity::Head,
        /// Asymmetric ranges (a zero point per group) instead of symmetric ones.
        pub asymmetric: bool = false,
        /// Bits of the word and position embeddings.
        pub embedding_bits: u32 = 8,
        /// Groups of the embedding tables: channel (one range per token row) or block:K.
        pub embedding_granularity: Granularity = Granularity::Channel,
        /// A report from `cargo xtask sensitivity --block layer|matrix`.
        pub sensitivity: Option<PathBuf> = None,
        /// Budget as average bits over the encoder matrices.
        pub avg_bits: Option<f64> = None,
        /// Budget as the size of the quantized file in MB (10⁶ bytes).
        pub budget_mb: Option<f64> = None,
        /// Bit options of mixed precision.
        pub bit_options: Vec<u32> = vec![2, 3, 4, 8],
        /// Mixed-precision rule.
        pub allocator: Allocator = Allocator::Qbert,
        /// Also spend the same budget uniformly, randomly and in reverse sensitivity order, and score each.
        pub compare: bool = false,
        /// Dataset to score on (test split of a built-in one, or all of a file).
        pub dataset: String = "rotten-tomatoes".into(),
        /// Columns of a file dataset.
        pub columns: Columns = Columns::default(),
        /// Seed of the split and of the random baseline.
        pub seed: u64 = 42,
        /// The fp32 teacher directory the compression ratio is measured against; when it is a fine-tuned
        /// classifier, QAT also distils from it.
        pub teacher: Option<PathBuf> = None,
        /// Quantization-aware fine-tuning of the chosen plan before export; `None`: off.
        #[serde(default)]
        pub qat: Option<crate::compress::qat::QatConfig> = None,
        /// Continue an interrupted QAT stage.
        #[serde(default)]
        pub resume: bool = false,
    }
}

/// Sum of the sizes of a model directory's shipped files.
pub fn artifact_bytes(dir: &Path) -> u64 {
    let mut names = vec![QUANT_FILE, WEIGHTS_FILE, CONFIG_FILE, CLASSIFIER_FILE];
    names.extend(TOKENIZER_FILES);
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .sum()
}

fn write_quantized(q: &QuantizedModel, from: &Path, to: &Path) -> Result<u64> {
    std::fs::create_dir_all(to).map_err(io_err("creating", to))?;
    crate::checkpoint::remove_manifest(to)?;
    let bytes = q.write(&to.join(QUANT_FILE))?;
    write_atomic(&to.join(CONFIG_FILE), q.config.to_hf_json().as_bytes())?;
    copy_tokenizer_files(from, to)?;
    let meta = from.join(CLASSIFIER_FILE);
    let text = std::fs::read(&meta).map_err(io_err("reading", &meta))?;
    write_atomic(&to.join(CLASSIFIER_FILE), &text)?;
    // A stale fp32 file would be loaded by tools that do not know the quantized one.
    let stale = to.join(WEIGHTS_FILE);
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(io_err("removing", &stale))?;
    }
    crate::checkpoint::write_manifest(to, &[QUANT_FILE, CONFIG_FILE, CLASSIFIER_FILE])?;
    Ok(bytes)
}

impl QuantizeOptions {
    /// Checks every option before anything is loaded or scored.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &'static str, message: String| Err(PipelineError::Config { field, message });
        if self.bit_options.is_empty() {
            return bad(
                "bit_options",
                "no bit widths to choose from; give e.g. --bit-options 2,3,4,8".into(),
            );
        }
        for b in self.bits.iter().chain(&self.bit_options) {
            quant::format::check_bits(*b, "--bits / --bit-options")?;
        }
        quant::format::check_bits(self.embedding_bits, "--embedding-bits")?;
        let lowest = *self.bit_options.iter().min().expect("checked non-empty") as f64;
        let highest = *self.bit_options.iter().max().expect("checked non-empty") as f64;
        if let Some(b) = self.avg_bits {
            let why = if b < lowest {
                "is below the smallest possible size"
            } else if b > highest {
                "is above the largest possible size"
            } else {
                "is not a number of bits"
            };
            if !(b.is_finite() && (lowest..=highest).contains(&b)) {
                return bad(
                    "avg_bits",
                    format!(
                        "--avg-bits {b} {why} of the --bit-options; give a number of bits in {lowest}..={highest}"
                    ),
                );
            }
        }
        if let Some(mb) = self.budget_mb {
            if !(mb.is_finite() && mb > 0.0) {
                return bad(
                    "budget_mb",
                    format!("--budget-mb {mb}: give a positive size in MB"),
                );
            }
        }
        if let Some(q) = &self.qat {
            q.stage.validate("qat")?;
        }
        Ok(())
    }
}

/// Refuses a model directory that is already quantized, and an `out` that is the model's directory or
/// anything but a new directory or an earlier `quantize` output; then claims `out`.
fn check_model_and_out(model_dir: &Path, out: &Path) -> Result<()> {
    if model_dir.join(QUANT_FILE).exists() {
        return Err(PipelineError::Config {
            field: "model",
            message: format!(
                "{} is already quantized ({QUANT_FILE}); quantize its full-precision source (e.g. runs/distill/student)",
                model_dir.display()
            ),
        });
    }
    let same = match (model_dir.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(PipelineError::Config {
            field: "out",
            message: format!(
                "--out {} is the model being quantized; its files are never rewritten: choose a new directory",
                out.display()
            ),
        });
    }
    student_arch::io::claim_output_dir(out, "quantize", &["quant_report.json"])?;
    Ok(())
}

/// Refuses a sensitivity report measured on another model than `model_dir`'s (its `model_sha256`); warns when
/// the report is too old to say.
fn check_report_model(path: &Path, model_dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    let reported = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("model_sha256")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        });
    let actual = crate::classifier::weights_sha256(model_dir)?;
    match reported {
        Some(sha) if sha == actual => Ok(()),
        Some(sha) => Err(PipelineError::Config {
            field: "sensitivity",
            message: format!(
                "{} was measured on another model (weights sha256 {}…, this one's is {}…); run `cargo xtask \
                 sensitivity --model {}` first",
                path.display(),
                &sha[..sha.len().min(12)],
                &actual[..12],
                model_dir.display()
            ),
        }),
        None => {
            eprintln!(
                "warning: {} does not say which model it was measured on (written before reports named it); \
                 assuming {}",
                path.display(),
                model_dir.display()
            );
            Ok(())
        }
    }
}

/// Quantizes the classifier in `model_dir` into `out` and scores it.
pub fn quantize(
    model_dir: &Path,
    options: &QuantizeOptions,
    out: &Path,
    cache: &Path,
    device: &Device,
) -> Result<QuantizeReport> {
    options.validate()?;
    check_model_and_out(model_dir, out)?;
    let (model, _) = SequenceClassifier::load(model_dir, device)?;
    if let Some(path) = &options.sensitivity {
        check_report_model(path, model_dir)?;
    }
    let tensors = model.named_tensors()?;
    // The Hugging Face form of the config (one zero token-type row for encoders without types), which is how
    // the tensors are laid out.
    let config = BertConfig::from_json(&model.encoder.config.to_hf_json())?;
    let layers = config.num_hidden_layers;
    let mut base = QuantPlan::uniform(layers, options.bits.unwrap_or(options.bit_options[0]));
    base.granularity = options.granularity;
    base.embedding_bits = options.embedding_bits;
    base.embedding_granularity = options.embedding_granularity;
    base.symmetric = !options.asymmetric;
    let (units, mut candidates) = candidates(options, &tensors, &config, &base)?;

    let fp32 = evaluate_saved(
        model_dir,
        &options.dataset,
        &options.columns,
        options.seed,
        cache,
        device,
    )?;
    // Quantization-aware fine-tuning of the written plan: its weights replace the fp32 ones for that variant,
    // and the plan without QAT is scored as a baseline.
    let mut qat_tensors = None;
    let mut qat_outcome = None;
    let kd_teacher = options
        .teacher
        .clone()
        .filter(|t| t.join(CLASSIFIER_FILE).exists());
    if let Some(qat_config) = &options.qat {
        let (trained, outcome) = crate::compress::qat::quantization_aware_finetune(
            model_dir,
            kd_teacher.as_deref(),
            &candidates[0].1,
            &options.dataset,
            &options.columns,
            options.seed,
            qat_config,
            out,
            options.resume,
            cache,
            device,
        )?;
        qat_tensors = Some(trained.named_tensors()?);
        qat_outcome = Some(outcome);
        let (name, plan, bits) = candidates[0].clone();
        candidates.insert(1, (format!("{name} without-QAT"), plan, bits));
        candidates[0].0 = format!("{name} + QAT");
    }
    let source = |i: usize| match (&qat_tensors, i) {
        (Some(t), 0) => t,
        _ => &tensors,
    };
    let (variants, q) = write_variants(
        &candidates,
        source,
        &config,
        model_dir,
        out,
        options,
        cache,
        device,
    )?;
    let artifact = artifact_bytes(out);
    let input = artifact_bytes(model_dir);
    let teacher_bytes = teacher_bytes(options.teacher.clone());
    let report = QuantizeReport {
        provenance: None,
        model: model_dir.display().to_string(),
        out: out.display().to_string(),
        plan: q.plan.clone(),
        units,
        matrix_bits: matrix_bits(&q),
        avg_layer_bits: q.average_layer_bits(),
        file_bytes: variants[0].file_bytes,
        artifact_bytes: artifact,
        input_bytes: input,
        teacher_bytes,
        compression_vs_teacher: teacher_bytes.map(|t| t as f64 / artifact as f64),
        compression_vs_input: input as f64 / artifact as f64,
        fp32_accuracy: fp32.accuracy,
        fp32_macro_f1: fp32.macro_f1,
        qat: qat_outcome.map(|outcome| QatSummary {
            teacher_kd: kd_teacher.is_some(),
            outcome,
            accuracy_without_qat: variants[1].accuracy,
        }),
        variants,
        examples: fp32.examples,
    };
    write_atomic(
        &out.join("quant_report.json"),
        serde_json::to_string_pretty(&report)
            .expect("report serialises")
            .as_bytes(),
    )?;
    let figures: Vec<_> =
        crate::figures::bits_chart(&report.matrix_bits, report.avg_layer_bits, out)
            .into_iter()
            .chain(crate::figures::loss_curves(out))
            .collect();
    let markdown = quantize_markdown(&report) + &crate::figures::markdown(&figures);
    write_atomic(&out.join("quant_report.md"), markdown.as_bytes())?;
    Ok(report)
}

/// The bytes of the fp32 teacher's files (`teacher`, else the fetched teacher when present).
fn teacher_bytes(teacher: Option<PathBuf>) -> Option<u64> {
    teacher
        .or_else(crate::fetch::teacher_dir_if_present)
        .as_deref()
        .map(artifact_bytes)
        .filter(|b| *b > 0)
}

/// The bits of every encoder matrix, in layer order.
fn matrix_bits(q: &QuantizedModel) -> Vec<(String, u32)> {
    let mut bits: Vec<(String, u32)> = q
        .quantized
        .iter()
        .filter(|(n, _)| n.starts_with("encoder."))
        .map(|(n, t)| (n.clone(), t.spec.bits))
        .collect();
    bits.sort_by_key(|(n, _)| layer_order(n));
    bits
}

fn layer_order(name: &str) -> (usize, String) {
    let layer = name
        .strip_prefix("encoder.layer.")
        .and_then(|r| r.split('.').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    (layer, name.to_string())
}

fn add_baselines(
    candidates: &mut Vec<(String, QuantPlan, Vec<u32>)>,
    units: &[Unit],
    costs: &UnitCosts,
    chosen: &[usize],
    base: &QuantPlan,
    budget: f64,
    seed: u64,
) -> Result<()> {
    let bits = |o: &[usize]| o.iter().map(|i| costs.bits[*i]).collect::<Vec<_>>();
    // Uniform: the largest single width that fits the budget.
    if let Some(o) = (0..costs.bits.len())
        .rev()
        .find(|o| costs.total(&vec![*o; units.len()]) <= budget * (1.0 + 1e-12))
    {
        let all = vec![o; units.len()];
        candidates.push((
            format!("uniform {}-bit", costs.bits[o]),
            mixed::plan_for(units, costs, &all, base),
            bits(&all),
        ));
    }
    let random = mixed::shuffled(chosen, costs, seed);
    candidates.push((
        "random order (same size)".into(),
        mixed::plan_for(units, costs, &random, base),
        bits(&random),
    ));
    // Reverse: the Q-BERT rule with the ranking turned upside down.
    let reversed: Vec<Unit> = units
        .iter()
        .map(|u| Unit {
            score: -u.score,
            ..u.clone()
        })
        .collect();
    let reverse = mixed::rank_greedy_rule(&reversed, costs, budget)?;
    candidates.push((
        "reverse sensitivity".into(),
        mixed::plan_for(units, costs, &reverse, base),
        bits(&reverse),
    ));
    Ok(())
}

/// A variant to write: its name, plan, and bits per layer.
type Candidate = (String, QuantPlan, Vec<u32>);

/// The mixed-precision units (none for uniform bits) and the variants to write: the chosen plan first, then
/// the baselines of `--compare`.
fn candidates(
    options: &QuantizeOptions,
    tensors: &NamedTensors,
    config: &BertConfig,
    base: &QuantPlan,
) -> Result<(Vec<Unit>, Vec<Candidate>)> {
    let layers = config.num_hidden_layers;
    let cfg_err = |field: &'static str, message: String| PipelineError::Config { field, message };

    let mut units = vec![];
    let mut candidates: Vec<Candidate> = vec![];
    match options.bits {
        Some(bits) => {
            if options.avg_bits.is_some() || options.budget_mb.is_some() {
                return Err(cfg_err(
                    "bits",
                    format!("--bits {bits} sets every layer; a budget (--avg-bits, --budget-mb) needs --bits mixed"),
                ));
            }
            candidates.push((
                format!("uniform {bits}-bit"),
                base.clone(),
                vec![bits; layers],
            ));
        }
        None => {
            let path = options.sensitivity.as_ref().ok_or_else(|| {
                cfg_err(
                    "sensitivity",
                    "--bits mixed needs --sensitivity FILE (from `cargo xtask sensitivity --block layer`)".into(),
                )
            })?;
            let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
            units = mixed::units_from_report(path, &text, layers)?;
            let (kind, budget) = match (options.avg_bits, options.budget_mb) {
                (Some(b), None) => (CostKind::CodeBits, b),
                (None, Some(mb)) => (CostKind::Bytes, mb),
                _ => {
                    return Err(cfg_err(
                        "budget",
                        "--bits mixed needs exactly one of --avg-bits B or --budget-mb X".into(),
                    ))
                }
            };
            let costs =
                mixed::unit_costs(&units, tensors, config, base, &options.bit_options, kind)?;
            let budget = match kind {
                CostKind::CodeBits => {
                    let params: f64 = units
                        .iter()
                        .flat_map(|u| &u.tensors)
                        .map(|t| tensors[t].1.len() as f64)
                        .sum();
                    budget * params
                }
                CostKind::Bytes => {
                    // The file minus the units at their smallest option is the fixed part.
                    let lowest: Vec<usize> = vec![0; units.len()];
                    let plan = mixed::plan_for(&units, &costs, &lowest, base);
                    let q = quant::quantize_tensors(tensors, config, &plan)?;
                    let fixed = q.to_bytes()?.len() as f64 - costs.total(&lowest);
                    budget * 1e6 - fixed
                }
            };
            let chosen = options.allocator.allocate(&units, &costs, budget)?;
            let bits = |o: &[usize]| o.iter().map(|i| costs.bits[*i]).collect::<Vec<_>>();
            let name = options.allocator.label();
            candidates.push((
                name.into(),
                mixed::plan_for(&units, &costs, &chosen, base),
                bits(&chosen),
            ));
            if options.compare {
                add_baselines(
                    &mut candidates,
                    &units,
                    &costs,
                    &chosen,
                    base,
                    budget,
                    options.seed,
                )?;
            }
        }
    }
    Ok((units, candidates))
}

/// Writes every candidate (the first into `out`, the others under `out/baselines/`) from the tensors
/// `source(i)` and scores each; returns the variants and the quantized model written into `out`.
#[allow(clippy::too_many_arguments)]
fn write_variants<'t>(
    candidates: &[Candidate],
    source: impl Fn(usize) -> &'t NamedTensors,
    config: &BertConfig,
    model_dir: &Path,
    out: &Path,
    options: &QuantizeOptions,
    cache: &Path,
    device: &Device,
) -> Result<(Vec<Variant>, QuantizedModel)> {
    let mut variants = vec![];
    let mut written = None;
    for (i, (name, plan, bits)) in candidates.iter().enumerate() {
        let q = quant::quantize_tensors(source(i), config, plan)?;
        let dir = if i == 0 {
            out.to_path_buf()
        } else {
            out.join("baselines")
                .join(if name.ends_with("without-QAT") {
                    "no-qat"
                } else {
                    name.split_whitespace().next().unwrap_or("variant")
                })
        };
        let file_bytes = write_quantized(&q, model_dir, &dir)?;
        let scored = evaluate_saved(
            &dir,
            &options.dataset,
            &options.columns,
            options.seed,
            cache,
            device,
        )?;
        variants.push(Variant {
            name: name.clone(),
            bits: bits.clone(),
            avg_layer_bits: q.average_layer_bits(),
            file_bytes,
            accuracy: scored.accuracy,
            macro_f1: scored.macro_f1,
            engine: scored.engine.clone(),
            dequantized_accuracy: scored.dequantized.map(|d| d.accuracy),
        });
        if i == 0 {
            written = Some(q);
        }
    }
    let q = written.ok_or_else(|| PipelineError::Config {
        field: "bits",
        message: "no variant to write".into(),
    })?;
    Ok((variants, q))
}
