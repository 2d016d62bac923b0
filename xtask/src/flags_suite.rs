//! The flags of `suite` and `results`, the commands that produce and render records. Kept beside `flags.rs`
//! (which names these types in its command list) so that each file holds one idea; the values are typed here
//! through their `FromStr` as everywhere else.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Suite {
    /// Tasks, comma-separated: rotten-tomatoes, bbc-news, convention-party, debates-2016, spam-assassin, or
    /// labelled files (default: the five built-in tasks).
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Seeds of every task's runs; the first also seeds the split (default: 42,43,44; with --quick: 42).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Screening: every task capped at 1,200 training and 400 dev/test examples.
    #[arg(long)]
    pub quick: bool,
    /// A TOML or JSON recipe (fields as in a run's config.json; its dataset is replaced by each task).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A preset recipe when no --config: default, short, full or small.
    #[arg(long, default_value = "default")]
    pub preset: String,
    /// What TinyBERT's attention loss compares: probs or scores (overrides the recipe).
    #[arg(long)]
    pub attention_target: Option<kd_losses::AttentionTarget>,
    /// tinybert or distilbert (overrides the recipe).
    #[arg(long)]
    pub method: Option<pipeline::Method>,
    /// The recipe's name in the record (default: the config file's stem, else the preset).
    #[arg(long)]
    pub recipe_name: Option<String>,
    /// Other suites' output directories whose fine-tuned teachers to reuse (same task, split and teacher
    /// recipe), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub teachers_from: Vec<PathBuf>,
    /// Run nothing: write the record of the runs already finished under --out (made by earlier invocations),
    /// leaving out the missing ones.
    #[arg(long)]
    pub record_only: bool,
    /// An earlier suite record (e.g. docs/records/suite-default.json) whose rows stand, marked as carried, for
    /// the tasks where this recipe makes the same runs: it differs only in stage floors or token ceilings that
    /// change no stage's steps there. The other tasks run.
    #[arg(long)]
    pub carry_from: Option<PathBuf>,
    /// Output directory (one subdirectory per task and seed); rerun to continue.
    #[arg(long, default_value = "runs/suite")]
    pub out: PathBuf,
    /// Device among those compiled in (flex, ndarray, wgpu, tch).
    #[arg(long, default_value_t = student_arch::device::default_device_name().to_string())]
    pub device: String,
}

#[derive(clap::Args, Debug)]
pub struct Results {
    /// Compare instead of writing: fail naming every table that differs from its record's rendering.
    #[arg(long)]
    pub check: bool,
}
