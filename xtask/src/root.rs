//! Where the workspace is, and the provenance every record carries (the command line, the commit, the CPU and
//! the date). Imports nothing of this crate, so every command module may use it.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (xtask's parent directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// This command line, the commit it runs at (`+dirty` with uncommitted changes), the CPU and today's date.
pub fn provenance() -> pipeline::Provenance {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}+dirty")
            } else {
                c
            }
        }
        None => "unknown (not a git checkout)".into(),
    };
    pipeline::Provenance::now(format!("cargo xtask {}", args.join(" ")), commit)
}
