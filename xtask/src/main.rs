//! `cargo xtask`: the project's only task runner. A thin front door: [`flags`] parses every flag, and one module
//! per command turns them into the library crates' options, so that everything it does can be done from Rust by
//! depending on them.

use anyhow::Result;
use clap::Parser;

mod bench;
mod ci;
mod compress;
mod distill;
mod export;
mod features;
mod fetch;
mod first_build;
mod flags;
mod flags_apply;
mod flags_student;
mod flags_suite;
mod fuzz;
mod layout;
mod results;
mod root;
mod suite;

use flags::{Cli, Cmd};
pub use root::workspace_root;

/// glibc hands every allocation above its mmap threshold back to the OS when it is freed, so each tensor of a
/// forward or backward pass page-faults fresh zeroed memory in again: 8% of the teacher's forward pass in
/// `perf` (docs/archive/BENCHMARKS-2026-11.md). Keep freed memory for reuse instead: tensors up to 32 MiB (glibc's largest
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
        Cmd::Fetch => println!("{}", fetch::fetch()?.display()),
        Cmd::Embed(args) => args.run()?,
        Cmd::Distill(args) => args.run()?,
        Cmd::Compress(args) => args.run()?,
        Cmd::Ablate(args) => args.run()?,
        Cmd::Suite(args) => args.run()?,
        Cmd::Results(args) => args.run()?,
        Cmd::FitMlm(args) => args.run()?,
        Cmd::Eval(args) => args.run()?,
        Cmd::Predict(args) => args.run()?,
        Cmd::Export(args) => args.run()?,
        Cmd::Quantize(args) => args.run()?,
        Cmd::PruneVocab(args) => args.run()?,
        Cmd::Sensitivity(args) => args.run()?,
        Cmd::Bench(args) => bench::bench(args)?,
        Cmd::Fuzz(args) => args.run()?,
        Cmd::FirstBuild(args) => args.run()?,
        Cmd::CheckFeatures => features::check()?,
        Cmd::CheckLayout => layout::check(&workspace_root())?,
        Cmd::Ci(args) => args.run()?,
    }
    Ok(())
}
