//! Fixtures of the malformed-input tests: a tiny random BERT classifier directory (a vocabulary of a few hundred
//! word pieces, 2 layers of width 32), a labelled CSV it can read, and a way to run `cargo xtask` and check
//! that no file it was given changed.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub const GOOD: [&str; 4] = [
    "a wonderful moving film",
    "great acting and a clever story",
    "i loved every minute",
    "a delight from start to end",
];
pub const BAD: [&str; 4] = [
    "a dull lifeless mess",
    "boring and far too long",
    "i hated every minute",
    "a tedious waste of time",
];

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "bert-compress-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The words of the fixture's texts.
fn words() -> Vec<String> {
    let mut w: Vec<String> = GOOD
        .iter()
        .chain(BAD.iter())
        .flat_map(|s| s.split_whitespace().map(str::to_string))
        .collect();
    w.extend((0..10).map(|i| i.to_string()));
    w.sort();
    w.dedup();
    w
}

/// Writes a tiny random BERT classifier (labels `fresh`, `rotten`) into `dir` (a Hugging Face directory with
/// `vocab.txt` and `classifier.json`).
pub fn tiny_classifier(dir: &Path) {
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    vocab.extend(words());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let mut config = student_arch::BertConfig::new(vocab.len(), 32, 2, 4, 64);
    config.max_position_embeddings = 32;
    config.type_vocab_size = 0;
    let device = student_arch::device::device("flex").unwrap();
    let encoder = config.init_random(false, 7, &device).unwrap();
    let model = pipeline::SequenceClassifier::new(encoder, 2, 7, &device);
    let meta = pipeline::ClassifierMeta {
        labels: vec!["fresh".into(), "rotten".into()],
        pooling: "mean".into(),
        max_length: 16,
        split: None,
    };
    model.save(dir, &meta).unwrap();
}

/// The tiny classifier of [`tiny_classifier`] with Hugging Face's head: [CLS] → pooler → classifier.
pub fn tiny_cls_classifier(dir: &Path) {
    let config = tiny_config(dir);
    let device = student_arch::device::device("flex").unwrap();
    let encoder = config.init_random(true, 11, &device).unwrap();
    let model = pipeline::SequenceClassifier::new(encoder, 2, 11, &device)
        .with_pooling(pipeline::Pooling::Cls)
        .unwrap();
    let meta = pipeline::ClassifierMeta {
        labels: vec!["fresh".into(), "rotten".into()],
        pooling: "cls".into(),
        max_length: 16,
        split: None,
    };
    model.save(dir, &meta).unwrap();
}

/// A tiny random encoder without a classifier (config.json, model.safetensors, vocab.txt), with a token-type
/// table (the classifiers have none).
pub fn tiny_encoder(dir: &Path) {
    let mut config = tiny_config(dir);
    config.type_vocab_size = 2;
    let device = student_arch::device::device("flex").unwrap();
    let encoder = config.init_random(false, 13, &device).unwrap();
    student_arch::save_pretrained(&encoder, dir).unwrap();
}

/// Writes the fixture's vocab.txt into `dir` and returns the tiny config that reads it.
pub fn tiny_config(dir: &Path) -> student_arch::BertConfig {
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    vocab.extend(words());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let mut config = student_arch::BertConfig::new(vocab.len(), 32, 2, 4, 64);
    config.max_position_embeddings = 32;
    config.type_vocab_size = 0;
    config
}

/// A labelled CSV with columns `review` and `verdict`: `copies` of each fixture sentence per label.
pub fn reviews_csv(path: &Path, copies: usize) {
    let mut text = String::from("review,verdict\n");
    for i in 0..copies {
        for g in GOOD {
            text += &format!("\"{g} {i}\",fresh\n");
        }
        for b in BAD {
            text += &format!("\"{b} {i}\",rotten\n");
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Runs `cargo xtask ARGS` with `stdin` as its input.
pub fn xtask(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("xtask runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).ok();
    drop(input);
    child.wait_with_output().unwrap()
}

/// The sha256 of every file under `dir`, by relative path.
pub fn hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            // The lock a command holds on its output directory names its pid: bookkeeping, not content.
            if p.file_name()
                .is_some_and(|n| n == student_arch::io::LOCK_FILE)
            {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    format!("{:x}", Sha256::digest(&bytes)),
                );
            }
        }
    }
    out
}

/// One malformed input: what to run, and what must hold.
pub struct Case {
    /// A short name for failures.
    pub name: &'static str,
    /// The xtask arguments.
    pub args: Vec<String>,
    /// Standard input.
    pub stdin: Option<String>,
    /// Words the message must contain (the file or field, and the fix), all lower-cased.
    pub expect: Vec<&'static str>,
    /// The directories whose files must not change.
    pub keep: Vec<PathBuf>,
    /// Whether the command must succeed (a warning case) instead of failing.
    pub succeeds: bool,
}

/// Runs every case and collects every failure, so one run shows them all.
pub fn run_cases(cases: Vec<Case>) {
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        let before: Vec<_> = case.keep.iter().map(|d| hashes(d)).collect();
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let out = xtask(&args, case.stdin.as_deref());
        let full = String::from_utf8_lossy(&out.stderr).to_lowercase();
        // Short enough to read in a failure; an error that lists thousands of items is itself a failure.
        let stderr: String = full.chars().take(1500).collect();
        if full.len() > 4000 {
            failures.push(format!("{}: a {}-byte message", case.name, full.len()));
        }
        let after: Vec<_> = case.keep.iter().map(|d| hashes(d)).collect();
        if stderr.contains("panicked") || out.status.code().is_none() {
            failures.push(format!(
                "{}: crashed ({:?}): {stderr}",
                case.name, out.status
            ));
            continue;
        }
        if out.status.success() != case.succeeds {
            failures.push(format!(
                "{}: exit {:?}, expected {}: {stderr}",
                case.name,
                out.status.code(),
                if case.succeeds { "success" } else { "failure" }
            ));
            continue;
        }
        for word in &case.expect {
            if !full.contains(word) {
                failures.push(format!("{}: message lacks {word:?}: {stderr}", case.name));
            }
        }
        if before != after {
            failures.push(format!("{}: changed a file it was given", case.name));
        }
    }
    eprintln!("{total} malformed inputs, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Arguments as owned strings.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
