//! Checkpoint sets that are written whole or not at all, and checked on load.
//!
//! A stage's checkpoints live in `checkpoints/<stage>/`. Each set (the model, the optimizer and the stage's
//! state; or a best model with its score) is a directory, written under a temporary name, with a
//! `manifest.json` holding the sha256 of every file written last, every file and the directory fsynced, and
//! renamed into place in one step. The file `LATEST` names the newest complete set; it is replaced atomically
//! after the set is in place, so a kill at any moment leaves the previous set named and intact. Opening the
//! directory removes temporaries and sets that `LATEST` does not reach (see [`CheckpointDir::open`]); loading a
//! set checks every file against its manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use student_arch::io::write_atomic;

use crate::error::{io_err, PipelineError, Result};

/// The manifest of a set: every file's sha256.
pub const MANIFEST: &str = "manifest.json";
/// The pointer to the newest complete set.
pub const LATEST: &str = "LATEST";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    files: BTreeMap<String, String>,
}

/// A stage's checkpoint directory.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    root: PathBuf,
}

fn corrupt(path: &Path, message: String) -> PipelineError {
    PipelineError::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// The sha256 of a file, as hex (read in chunks, see [`crate::fetch::sha256_file`]).
pub fn file_sha256(path: &Path) -> Result<String> {
    Ok(crate::fetch::sha256_file(path)?)
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir).map_err(io_err("opening", dir))?;
        d.sync_all().map_err(io_err("syncing", dir))?;
    }
    Ok(())
}

impl CheckpointDir {
    /// Opens (creating) `root` and removes the temporaries of killed writes.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(io_err("creating", root))?;
        let dir = Self {
            root: root.to_path_buf(),
        };
        for entry in std::fs::read_dir(root).map_err(io_err("reading", root))? {
            let path = entry.map_err(io_err("reading", root))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(".tmp-") {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(io_err("removing a stale temporary", &path))?;
            }
        }
        Ok(dir)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every set directory under the root, with its name (in no particular order).
    fn sets(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut sets = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io_err("reading", &self.root))? {
            let path = entry.map_err(io_err("reading", &self.root))?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() && is_set_name(&name) {
                sets.push((path, name));
            }
        }
        Ok(sets)
    }

    /// Removes every set but those named in `keep` (names of directories under the root).
    pub fn retain(&self, keep: &[&str]) -> Result<()> {
        for (path, name) in self.sets()? {
            if !keep.contains(&name.as_str()) {
                std::fs::remove_dir_all(&path)
                    .map_err(io_err("removing an old checkpoint", &path))?;
            }
        }
        Ok(())
    }

    /// Removes every set and `LATEST`: a stage that starts again from step 0.
    pub fn clear(&self) -> Result<()> {
        self.retain(&[])?;
        let pointer = self.root.join(LATEST);
        if pointer.exists() {
            std::fs::remove_file(&pointer).map_err(io_err("removing", &pointer))?;
        }
        Ok(())
    }

    /// Writes the set `name`: `write` puts its files into the (temporary) directory it is given; then the
    /// manifest, fsyncs and the rename into place. With `latest`, `LATEST` then names it.
    pub fn write(
        &self,
        name: &str,
        latest: bool,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let tmp = self
            .root
            .join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err("removing", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
        write(&tmp)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&tmp).map_err(io_err("reading", &tmp))? {
            let path = entry.map_err(io_err("reading", &tmp))?.path();
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let f = std::fs::File::open(&path).map_err(io_err("opening", &path))?;
            f.sync_all().map_err(io_err("syncing", &path))?;
            files.insert(file, file_sha256(&path)?);
        }
        write_atomic(
            &tmp.join(MANIFEST),
            serde_json::to_string_pretty(&Manifest { files })
                .expect("a manifest serialises")
                .as_bytes(),
        )?;
        sync_dir(&tmp)?;
        let dest = self.root.join(name);
        let pointer = self.root.join(LATEST);
        if std::fs::read_to_string(&pointer).is_ok_and(|n| n.trim() == name) {
            return Err(corrupt(
                &dest,
                "is the newest checkpoint and is never rewritten in place".into(),
            ));
        }
        if dest.exists() {
            // A set that a killed run renamed into place but never named in LATEST.
            std::fs::remove_dir_all(&dest).map_err(io_err("replacing", &dest))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io_err("renaming into place", &dest))?;
        sync_dir(&self.root)?;
        if latest {
            write_atomic(&self.root.join(LATEST), name.as_bytes())?;
            sync_dir(&self.root)?;
        }
        Ok(dest)
    }

    /// The newest complete set, checked against its manifest; `None` when none was written.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        let pointer = self.root.join(LATEST);
        if !pointer.exists() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&pointer).map_err(io_err("reading", &pointer))?;
        let name = name.trim();
        if !is_set_name(name) {
            return Err(corrupt(
                &pointer,
                format!(
                    "names {name:?}, not a checkpoint; the directory is damaged: remove {} to start the stage again",
                    self.root.display()
                ),
            ));
        }
        let set = self.root.join(name);
        self.verify(&set)?;
        Ok(Some(set))
    }

    /// The step sets under the root, `(step, name)` in step order.
    pub fn step_sets(&self) -> Result<Vec<(usize, String)>> {
        let mut sets: Vec<(usize, String)> = self
            .sets()?
            .into_iter()
            .filter_map(|(_, name)| Some((name.strip_prefix("step-")?.parse().ok()?, name)))
            .collect();
        sets.sort();
        Ok(sets)
    }

    /// The newest complete set that passes its manifest: the one `LATEST` names, or, when that one is damaged,
    /// the newest older step set that is whole (kept by `keep_checkpoints`), which `LATEST` then names and the
    /// damaged newer ones are removed. The error of the newest set when none is whole.
    pub fn latest_usable(&self) -> Result<Option<PathBuf>> {
        let newest = match self.latest() {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        for (_, name) in self.step_sets()?.into_iter().rev() {
            let set = self.root.join(&name);
            if self.verify(&set).is_err() {
                continue;
            }
            eprintln!(
                "checkpoints: the newest set in {} is damaged ({newest}); continuing from {name}, the newest whole one",
                self.root.display()
            );
            for (_, newer) in self.step_sets()?.into_iter().filter(|(_, n)| n > &name) {
                let path = self.root.join(newer);
                std::fs::remove_dir_all(&path)
                    .map_err(io_err("removing a damaged checkpoint", &path))?;
            }
            write_atomic(&self.root.join(LATEST), name.as_bytes())?;
            sync_dir(&self.root)?;
            return Ok(Some(set));
        }
        Err(newest)
    }

    /// Bytes of the files of the set `set`.
    pub fn set_bytes(set: &Path) -> u64 {
        std::fs::read_dir(set)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Checks every file of the set `set` against its manifest (and that nothing is missing or added).
    pub fn verify(&self, set: &Path) -> Result<()> {
        let fix = format!("remove {} to start the stage again", self.root.display());
        let manifest_path = set.join(MANIFEST);
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            corrupt(
                &manifest_path,
                format!("cannot be read ({e}); the checkpoint is incomplete: {fix}"),
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| corrupt(&manifest_path, format!("is not a manifest ({e}): {fix}")))?;
        for (file, sha) in &manifest.files {
            let path = set.join(file);
            if !path.exists() {
                return Err(corrupt(
                    &path,
                    format!("is missing from its checkpoint: {fix}"),
                ));
            }
            if &file_sha256(&path)? != sha {
                return Err(corrupt(
                    &path,
                    format!("does not match its sha256 in {MANIFEST}: the file is corrupt: {fix}"),
                ));
            }
        }
        Ok(())
    }
}

/// Writes `dir/manifest.json` with the sha256 of each of `files` (names in `dir`), atomically: the last step of
/// an export, so that [`verify_manifest`] can tell a whole export from a torn or corrupted one.
pub fn write_manifest(dir: &Path, files: &[&str]) -> Result<()> {
    let mut sums = BTreeMap::new();
    for f in files {
        sums.insert(f.to_string(), file_sha256(&dir.join(f))?);
    }
    write_atomic(
        &dir.join(MANIFEST),
        serde_json::to_string_pretty(&Manifest { files: sums })
            .expect("a manifest serialises")
            .as_bytes(),
    )?;
    sync_dir(dir)
}

/// Removes `dir/manifest.json` before an export rewrites the directory's files.
pub fn remove_manifest(dir: &Path) -> Result<()> {
    let path = dir.join(MANIFEST);
    if path.exists() {
        std::fs::remove_file(&path).map_err(io_err("removing", &path))?;
    }
    Ok(())
}

/// Checks the files that `dir/manifest.json` lists, when there is one (directories from elsewhere have none).
pub fn verify_manifest(dir: &Path) -> Result<()> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        corrupt(
            &path,
            format!("is not a manifest ({e}); export the model again"),
        )
    })?;
    for (file, sha) in &manifest.files {
        let f = dir.join(file);
        if !f.exists() || &file_sha256(&f)? != sha {
            return Err(corrupt(
                &f,
                format!(
                    "{} its sha256 in {MANIFEST}: the export is corrupt or incomplete; export the model again",
                    if f.exists() { "does not match" } else { "is missing, listed with" }
                ),
            ));
        }
    }
    Ok(())
}

/// The directory name of a stage's checkpoint after `step` steps.
pub fn step_set(step: usize) -> String {
    format!("step-{step:09}")
}

/// The directory name of the best model, found after `step` steps.
pub fn best_set(step: usize) -> String {
    format!("best-{step:09}")
}

fn is_set_name(name: &str) -> bool {
    let digits = name
        .strip_prefix("step-")
        .or_else(|| name.strip_prefix("best-"));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Copies the files of `from` and of its subdirectories into a fresh `to` (whatever stood at `to` is removed
/// first: only for directories this process writes).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(io_err("clearing", to))?;
    }
    std::fs::create_dir_all(to).map_err(io_err("creating", to))?;
    for entry in std::fs::read_dir(from).map_err(io_err("reading", from))? {
        let path = entry.map_err(io_err("reading", from))?.path();
        let dest = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(io_err("copying", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pipeline-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_set_is_found_whole_and_a_flipped_byte_is_named() {
        let root = scratch("flip");
        let dir = CheckpointDir::open(&root).unwrap();
        assert!(dir.latest().unwrap().is_none());
        for step in [1, 2] {
            dir.write(&step_set(step), true, |tmp| {
                std::fs::write(tmp.join("model.bpk"), vec![step as u8; 64]).unwrap();
                std::fs::write(tmp.join("state.json"), format!("{{\"step\": {step}}}")).unwrap();
                Ok(())
            })
            .unwrap();
        }
        let latest = dir.latest().unwrap().unwrap();
        assert!(latest.ends_with(step_set(2)));
        dir.retain(&[&step_set(2)]).unwrap();
        assert!(!root.join(step_set(1)).exists());
        let model = latest.join("model.bpk");
        let mut bytes = std::fs::read(&model).unwrap();
        bytes[10] ^= 0x01;
        std::fs::write(&model, bytes).unwrap();
        let err = dir.latest().unwrap_err().to_string();
        assert!(err.contains("model.bpk") && err.contains("sha256"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_damaged_newest_set_falls_back_to_the_newest_whole_one() {
        let root = scratch("fallback");
        let dir = CheckpointDir::open(&root).unwrap();
        for step in [1, 2, 3] {
            dir.write(&step_set(step), true, |tmp| {
                std::fs::write(tmp.join("model.bpk"), vec![step as u8; 64]).unwrap();
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(dir.step_sets().unwrap().len(), 3);
        let model = root.join(step_set(3)).join("model.bpk");
        let mut bytes = std::fs::read(&model).unwrap();
        bytes[0] ^= 0x01;
        std::fs::write(&model, bytes).unwrap();
        assert!(dir.latest().is_err());
        let usable = dir.latest_usable().unwrap().unwrap();
        assert!(usable.ends_with(step_set(2)));
        assert!(
            !root.join(step_set(3)).exists(),
            "the damaged set is removed"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(LATEST)).unwrap(),
            step_set(2)
        );
        assert!(CheckpointDir::set_bytes(&usable) >= 64);
        // With every set damaged, the newest's error stands.
        for step in [1, 2] {
            std::fs::write(root.join(step_set(step)).join("model.bpk"), b"x").unwrap();
        }
        let err = dir.latest_usable().unwrap_err().to_string();
        assert!(
            err.contains(&step_set(2)) && err.contains("sha256"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_killed_write_leaves_the_previous_set_named_and_its_temporary_is_removed() {
        let root = scratch("kill");
        let dir = CheckpointDir::open(&root).unwrap();
        dir.write(&step_set(1), true, |tmp| {
            std::fs::write(tmp.join("model.bpk"), b"one").unwrap();
            Ok(())
        })
        .unwrap();
        // A write that dies half-way: its temporary directory stays behind, LATEST is untouched.
        let stale = root.join(format!(".tmp-{}-99999", step_set(2)));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("model.bpk"), b"tw").unwrap();
        let dir = CheckpointDir::open(&root).unwrap();
        assert!(!stale.exists());
        let latest = dir.latest().unwrap().unwrap();
        assert_eq!(std::fs::read(latest.join("model.bpk")).unwrap(), b"one");
        std::fs::write(root.join(LATEST), "../../etc").unwrap();
        assert!(dir.latest().is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
