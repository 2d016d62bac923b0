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

/// The file whose advisory lock a command holds on its output directory for as long as it runs.
pub const LOCK_FILE: &str = ".bert-compress.lock";

/// Directories this process holds the lock of, with the open lock files (the kernel releases the locks when
/// the process exits or is killed).
static HELD_LOCKS: std::sync::Mutex<Vec<(PathBuf, std::fs::File)>> =
    std::sync::Mutex::new(Vec::new());

/// Takes the exclusive advisory lock on `dir` (its [`LOCK_FILE`]) for the rest of this process, or refuses,
/// naming the process that holds it: two commands writing one directory would remove each other's temporaries
/// and interleave their checkpoints. A directory this process already holds is fine.
pub fn lock_output_dir(dir: &Path, command: &str) -> Result<()> {
    let key = dir
        .canonicalize()
        .map_err(|e| ArchError::io("resolving", dir, e))?;
    let mut held = HELD_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    if held.iter().any(|(d, _)| *d == key) {
        return Ok(());
    }
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| ArchError::io("opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(ArchError::Output {
                path: dir.to_path_buf(),
                message: format!(
                    "is in use by another command ({}); wait for it to finish or choose another --out",
                    match holder.trim() {
                        "" => "its pid is not written yet",
                        h => h,
                    }
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(ArchError::io("locking", &path, e)),
    }
    let who = format!("pid {}: cargo xtask {command}", std::process::id());
    let written = (|| {
        use std::io::Seek;
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        file.write_all(who.as_bytes())?;
        file.sync_all()
    })();
    written.map_err(|e| ArchError::io("writing", &path, e))?;
    held.push((key, file));
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
        // A lock file alone is what a claim interrupted before its marker leaves.
        let empty = entries.all(|e| e.is_ok_and(|e| e.file_name() == LOCK_FILE));
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
        lock_output_dir(dir, command)?;
        remove_stale_temporaries(dir)?;
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| ArchError::io("creating", dir, e))?;
    lock_output_dir(dir, command)?;
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
    fn a_directory_locked_by_another_holder_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("student-arch-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Another process's lock: an open file description of its own holding the lock, with its pid written.
        let other = std::fs::File::create(dir.join(LOCK_FILE)).unwrap();
        other.try_lock().unwrap();
        std::fs::write(dir.join(LOCK_FILE), "pid 4242: cargo xtask distill").unwrap();
        let err = claim_output_dir(&dir, "distill", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use") && err.contains("pid 4242: cargo xtask distill"),
            "{err}"
        );
        assert!(
            !dir.join(OUTPUT_MARKER).exists(),
            "nothing is written into a locked directory"
        );
        // Released (the other process ended): claimed, and claimed again by the same process.
        drop(other);
        claim_output_dir(&dir, "distill", &[]).unwrap();
        claim_output_dir(&dir, "distill", &[]).unwrap();
        let who = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(
            who,
            format!("pid {}: cargo xtask distill", std::process::id())
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
