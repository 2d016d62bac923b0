//! `cargo xtask distill` on a tiny configuration of the real code path (a user CSV, a TOML config, the real
//! teacher): the run is killed mid-way with SIGKILL, resumed with `--resume`, and must end with the same
//! metrics as an uninterrupted run with the same seed. Also checks that every stage's loss falls and that the
//! output files are written. Needs the teacher (`BERT_COMPRESS_TEACHER`, set by `cargo xtask ci`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const GOOD: [&str; 4] = [
    "a wonderful, moving film",
    "great acting and a clever story",
    "I loved every minute",
    "a delight from start to end",
];
const BAD: [&str; 4] = [
    "a dull, lifeless mess",
    "boring and far too long",
    "I hated every minute",
    "a tedious waste of time",
];

fn write_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let mut text = String::from("review,verdict\n");
    for i in 0..6 {
        for g in GOOD {
            text += &format!("\"{g}, take {i}\",fresh\n");
        }
        for b in BAD {
            text += &format!("\"{b}, take {i}\",rotten\n");
        }
    }
    let csv = dir.join("reviews.csv");
    std::fs::write(&csv, text).unwrap();
    let stage = "epochs = 2\nbatch_size = 8\nlearning_rate = 1e-4\ncheckpoint_every = 1\n";
    let config = format!(
        "dataset = \"{}\"\nmax_length = 16\nmax_train_examples = 32\n\n[columns]\ntext = \"review\"\nlabel = \"verdict\"\n\n[teacher_finetune]\n{stage}\n[intermediate]\n{stage}\n[prediction]\n{stage}",
        csv.display()
    );
    let toml = dir.join("tiny.toml");
    std::fs::write(&toml, config).unwrap();
    (csv, toml)
}

fn distill(teacher: &Path, config: &Path, out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["distill", "--device", "flex", "--config"])
        .arg(config)
        .arg("--teacher")
        .arg(teacher)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        cmd.arg("--resume");
    }
    cmd
}

fn run_to_end(mut cmd: Command) {
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "distill failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The step of a stage's last checkpoint, if one was written.
fn checkpointed_step(out: &Path, stage: &str) -> Option<u64> {
    let dir = out.join("checkpoints").join(stage);
    let latest = std::fs::read_to_string(dir.join("LATEST")).ok()?;
    let text = std::fs::read_to_string(dir.join(latest.trim()).join("state.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["step"].as_u64()
}

/// Where a run is killed.
#[derive(Clone, Debug)]
enum KillPoint {
    /// Once the stage has a checkpoint at this step or later.
    Checkpointed(&'static str, u64),
    /// While a checkpoint set of the stage is being written.
    WritingCheckpoint(&'static str),
    /// While the student is exported and the models scored (after the last stage).
    Exporting,
}

impl KillPoint {
    fn reached(&self, out: &Path) -> bool {
        match self {
            Self::Checkpointed(stage, step) => {
                checkpointed_step(out, stage).is_some_and(|s| s >= *step)
            }
            Self::WritingCheckpoint(stage) => {
                std::fs::read_dir(out.join("checkpoints").join(stage))
                    .map(|d| {
                        d.flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                    })
                    .unwrap_or(false)
            }
            Self::Exporting => out.join("student").exists(),
        }
    }

    /// The position in the run, to put the points in order.
    fn order(&self) -> (usize, u64) {
        let stage = |s: &str| STAGES.iter().position(|x| *x == s).unwrap();
        match self {
            Self::Checkpointed(s, step) => (stage(s), *step),
            Self::WritingCheckpoint(s) => (stage(s), 0),
            Self::Exporting => (STAGES.len(), 0),
        }
    }
}

/// The stages of the tiny TinyBERT run, in order; each has 8 steps.
const STAGES: [&str; 3] = [
    "teacher-finetune",
    "tinybert-intermediate",
    "tinybert-prediction",
];

/// Five kill points drawn with `seed`, in run order: one during a checkpoint write, one during the export, and
/// three after checkpoints at seeded steps of seeded stages (distinct, so each resume makes progress).
fn kill_points(seed: u64) -> Vec<KillPoint> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let write_stage = STAGES[(next() % 3) as usize];
    let mut points = vec![
        KillPoint::WritingCheckpoint(write_stage),
        KillPoint::Exporting,
    ];
    while points.len() < 5 {
        let p = KillPoint::Checkpointed(STAGES[(next() % 3) as usize], 2 + next() % 5);
        if points.iter().all(|q| q.order() != p.order()) {
            points.push(p);
        }
    }
    points.sort_by_key(KillPoint::order);
    points
}

/// Files and directories whose names mark a write that never finished.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") || name.contains(".partial-") {
                found.push(e.path());
            } else if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

/// The last logged total loss of each (stage, step): a killed run logs the steps it repeats twice.
fn losses(out: &Path) -> BTreeMap<(String, u64), f64> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let mut by_step = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(total) = v["total"].as_f64() {
            by_step.insert(
                (
                    v["stage"].as_str().unwrap().to_string(),
                    v["step"].as_u64().unwrap(),
                ),
                total,
            );
        }
    }
    by_step
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn killed_run_resumes_to_the_same_metrics_as_an_uninterrupted_one() {
    let teacher = PathBuf::from(
        std::env::var_os("BERT_COMPRESS_TEACHER")
            .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
    );
    let dir = std::env::temp_dir().join(format!("xtask-kill-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_, config) = write_inputs(&dir);

    // The uninterrupted reference.
    let whole = dir.join("whole");
    run_to_end(distill(&teacher, &config, &whole, false));

    // Killed with SIGKILL (no chance to clean up) at five points drawn with a fixed seed from the whole run,
    // each resumed with --resume until the next: after a stage's checkpoints, while a checkpoint set is being
    // written (its temporary directory exists), and while the models are exported and scored.
    let killed = dir.join("killed");
    for point in kill_points(20261130) {
        let mut child = distill(&teacher, &config, &killed, killed.exists())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if point.reached(&killed) {
                child.kill().unwrap();
                child.wait().unwrap();
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the run ended ({status}) before it reached {point:?}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the run made no progress toward {point:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            !killed.join("report.json").exists(),
            "the kill at {point:?} came too late"
        );
    }
    run_to_end(distill(&teacher, &config, &killed, true));
    let leftovers = temporaries(&killed);
    assert!(
        leftovers.is_empty(),
        "temporaries left behind: {leftovers:?}"
    );

    // Same losses at every step, same accuracies.
    let (a, b) = (losses(&whole), losses(&killed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, x) in &a {
        let y = b[key];
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1.0),
            "{key:?}: uninterrupted {x}, resumed {y}"
        );
    }
    let (ra, rb) = (report(&whole), report(&killed));
    for model in ["teacher", "student"] {
        for field in ["accuracy", "macro_f1", "params", "bytes"] {
            assert_eq!(ra[model][field], rb[model][field], "{model}.{field}");
        }
    }

    // Every stage learns something: the mean loss of its last steps is below that of its first steps.
    for stage in ra["stages"].as_array().unwrap() {
        let (first, last) = (
            stage["first_loss"].as_f64().unwrap(),
            stage["last_loss"].as_f64().unwrap(),
        );
        assert!(
            last < first,
            "stage {}: loss went from {first} to {last}",
            stage["name"]
        );
    }
    for f in [
        "config.json",
        "metrics.jsonl",
        "report.json",
        "report.md",
        "teacher/model.safetensors",
        "teacher/classifier.json",
        "student/model.safetensors",
        "student/classifier.json",
        "student/tokenizer.json",
    ] {
        assert!(killed.join(f).exists(), "{f} missing");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two `distill` processes on one output directory: the second is refused while the first runs, naming the
/// first's pid and command, and writes nothing; the first finishes untouched.
#[test]
fn a_second_process_on_the_same_output_is_refused_naming_the_first() {
    let teacher = PathBuf::from(
        std::env::var_os("BERT_COMPRESS_TEACHER")
            .expect("BERT_COMPRESS_TEACHER is not set: run `cargo xtask ci`"),
    );
    let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_, toml) = write_inputs(&dir);
    let out = dir.join("run");
    let mut first = distill(&teacher, &toml, &out, false).spawn().unwrap();
    let holder = format!("pid {}: cargo xtask distill", first.id());
    let lock = out.join(".bert-compress.lock");
    let started = Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |t| t.trim() != holder) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before its lock was seen"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no lock after 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = distill(&teacher, &toml, &out, true).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second run was not refused");
    assert!(
        err.contains("in use by another command") && err.contains(&holder),
        "{err}"
    );
    let status = first.wait().unwrap();
    assert!(
        status.success(),
        "the first run failed beside the refused one"
    );
    assert!(out.join("report.json").exists() && out.join("student/model.safetensors").exists());
    // The refused run did not take the lock file over.
    let again = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(
        again.trim(),
        holder,
        "the refused run rewrote the lock file"
    );
    std::fs::remove_dir_all(&dir).ok();
}
