//! `cargo xtask ci`: what CI runs. The feature and layout checks, the record tables (`results --check`), the teacher fetched once, then `cargo test` on
//! the whole workspace with the teacher's directory in `BERT_COMPRESS_TEACHER`, the doctests, and a `cargo check`
//! of the CUDA backend.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{features, fetch, flags, flags_suite, layout, workspace_root};

impl flags::Ci {
    pub fn run(self) -> Result<()> {
        if self.wgpu && !cfg!(feature = "wgpu") {
            bail!("`ci --wgpu` needs xtask built with the wgpu feature: run `cargo run -p xtask --features wgpu,ndarray -- ci --wgpu`");
        }
        features::check()?;
        layout::check(&workspace_root())?;
        // Every table rendered from docs/records must match its committed rendering.
        flags_suite::Results { check: true }.run()?;
        let teacher = fetch::fetch()?;
        eprintln!("teacher: {}", teacher.display());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut test = Command::new(&cargo);
        test.args(["test", "--workspace", "--all-targets", "--no-fail-fast"]);
        if self.wgpu {
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
        // `--all-targets` leaves out doctests: README's library example lives in student-arch's crate docs.
        let mut doc = Command::new(&cargo);
        doc.args(["test", "--workspace", "--doc"]);
        if self.wgpu {
            doc.args(["--features", "xtask/wgpu"]);
        }
        let status = doc.status().context("running cargo test --doc")?;
        if !status.success() {
            bail!("cargo test --doc failed ({status})");
        }
        // The CUDA backend (`--features cuda`, `--device cuda`) is type-checked, never run here: no GPU. Its build
        // script downloads an LLVM bundle from outside the package registries, which docs.rs-style builds skip
        // (DOCS_RS), and `cargo check` links nothing.
        let mut cuda = Command::new(&cargo);
        cuda.args(["check", "-p", "xtask", "--features", "cuda"])
            .env("DOCS_RS", "1");
        let status = cuda
            .status()
            .context("running cargo check --features cuda")?;
        if !status.success() {
            bail!("cargo check --features cuda failed ({status})");
        }
        Ok(())
    }
}
