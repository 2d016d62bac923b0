//! Crash-safe file writing: a temporary file beside the target, flushed, then renamed over it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ArchError, Result};

/// The temporary name used while `path` is being written.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| ArchError::io("creating directory", parent, e))?;
    }
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ArchError::io("writing", &tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ArchError::io("renaming into place", path, e)
    })
}

/// Removes, under `dir` (recursively), the temporaries of writes that a killed process never finished: files and
/// directories named like [`temporary_path`]'s (`.name.tmp-PID`) or a checkpoint's (`.tmp-…`). Only for a
/// directory that a command owns, before it writes there.
pub fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ArchError::io("reading", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| ArchError::io("reading", dir, e))?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stale = name.starts_with('.') && name.contains(".tmp-");
        if stale && path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| ArchError::io("removing", &path, e))?;
        } else if stale {
            std::fs::remove_file(&path).map_err(|e| ArchError::io("removing", &path, e))?;
        } else if path.is_dir() {
            remove_stale_temporaries(&path)?;
        }
    }
    Ok(())
}

/// The file that marks a directory as written by a bert-compress command.
pub const OUTPUT_MARKER: &str = ".bert-compress-output.json";

/// Makes `dir` the output directory of `command`: creates it when it does not exist, and claims it (writes
/// [`OUTPUT_MARKER`]) when it is empty or already ours. A non-empty directory without the marker is someone
/// else's (a model, a user's folder) and is refused, unless it holds one of `legacy` (files that only an
/// earlier version of the same command writes). Nothing is deleted or rewritten before this check.
pub fn claim_output_dir(dir: &Path, command: &str, legacy: &[&str]) -> Result<()> {
    let refuse = |message: String| ArchError::Output {
        path: dir.to_path_buf(),
        message,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(refuse(
            "is a file, not a directory; choose a new --out".into(),
        ));
    }
    let marker = dir.join(OUTPUT_MARKER);
    if dir.is_dir() && !marker.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| ArchError::io("reading", dir, e))?;
        let empty = entries.next().is_none();
        let ours = legacy.iter().any(|f| dir.join(f).exists());
        if !empty && !ours {
            return Err(refuse(format!(
                "exists and was not written by `cargo xtask {command}` (no {OUTPUT_MARKER}); it may be a model \
                 or your own files, which are never overwritten: choose a new --out"
            )));
        }
    }
    if marker.exists() {
        let text =
            std::fs::read_to_string(&marker).map_err(|e| ArchError::io("reading", &marker, e))?;
        let owner = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("command")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            });
        if owner.as_deref() != Some(command) {
            return Err(refuse(format!(
                "was written by `cargo xtask {}`, not `{command}`; choose a new --out",
                owner.unwrap_or_else(|| "?".into())
            )));
        }
        remove_stale_temporaries(dir)?;
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| ArchError::io("creating", dir, e))?;
    write_atomic(
        &marker,
        serde_json::json!({"command": command, "version": env!("CARGO_PKG_VERSION")})
            .to_string()
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_without_leaving_temporaries() {
        let dir = std::env::temp_dir().join(format!("student-arch-io-{}", std::process::id()));
        let path = dir.join("a.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn output_directories_are_claimed_only_when_new_empty_or_ours() {
        let root = std::env::temp_dir().join(format!("student-arch-claim-{}", std::process::id()));
        let fresh = root.join("fresh");
        claim_output_dir(&fresh, "quantize", &[]).unwrap();
        claim_output_dir(&fresh, "quantize", &[]).unwrap();
        let err = claim_output_dir(&fresh, "distill", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("quantize") && err.contains("--out"), "{err}");
        let model = root.join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("model.safetensors"), b"weights").unwrap();
        let err = claim_output_dir(&model, "quantize", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("model") && err.contains("new --out"), "{err}");
        assert_eq!(
            std::fs::read(model.join("model.safetensors")).unwrap(),
            b"weights"
        );
        assert!(!model.join(OUTPUT_MARKER).exists());
        claim_output_dir(&model, "quantize", &["model.safetensors"]).unwrap();
        let file = root.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(claim_output_dir(&file, "distill", &[]).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
