//! `cargo xtask bench`: every workload that bounds a recipe's time, on our backends and — when `torch` imports —
//! in PyTorch, in one run on one machine with the same thread count; medians and ratios as a table
//! (`bench.md`) and every timing as JSON (`bench.json`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use benches::cpu::CpuInfo;
use benches::suite::{run_backend, run_quantized, Measurement, SuiteConfig};

use crate::flags;
use serde::{Deserialize, Serialize};

/// What `bench.json` holds; a copy under `docs/records/bench-*.json` is rendered by `cargo xtask results`.
#[derive(Serialize, Deserialize)]
pub struct BenchReport {
    /// The command, commit, CPU and date (absent in files written before it was recorded).
    #[serde(default)]
    provenance: Option<pipeline::Provenance>,
    date: String,
    cpu: CpuInfo,
    threads: usize,
    command: String,
    torch: Option<String>,
    /// ONNX Runtime's version, when it timed our exported student (`scripts/bench_onnx.py`).
    #[serde(default)]
    onnxruntime: Option<String>,
    python_skipped: Option<String>,
    measurements: Vec<Measurement>,
}

/// The workloads in table order.
const ROWS: [(&str, &str); 8] = [
    ("teacher_forward", "b1s64"),
    ("teacher_forward", "b32s64"),
    ("teacher_forward", "b32s128"),
    ("tinybert_intermediate_step", "b32s64"),
    ("prediction_step", "b32s64"),
    ("hvp", "layer_b16s48"),
    ("student_forward", "b1s64"),
    ("student_forward", "b32s64"),
];

const MARKER: &str = "bench.json";

/// Refuses an output directory that holds anything but an earlier bench's files.
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("reading the output directory {}", out.display()))?;
        let empty = entries.next().is_none();
        if !empty && !out.join(MARKER).exists() {
            bail!(
                "{} exists and was not written by `xtask bench` (no {MARKER}); pass a new --out directory",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

pub fn bench(args: flags::Bench) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    prepare_out(&args.out)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("setting the thread count of the Rust side")?;
    let cpu = CpuInfo::detect();
    eprintln!(
        "bench: {} — {} threads for every side",
        cpu.summary(),
        args.threads
    );
    let teacher_dir = match args.teacher.clone() {
        Some(dir) => dir,
        None => {
            eprintln!(
                "bench: fetching the teacher into {} ...",
                pipeline::cache_dir().display()
            );
            pipeline::fetch_teacher()?
        }
    };
    let config = SuiteConfig {
        runs: args.runs,
        budget: Duration::from_secs_f64(args.budget_s),
        only: args.only.clone(),
        ..Default::default()
    };
    let compiled = student_arch::device::available_devices();
    // `quant` first: timed after flex in the same process, our encoder's 1 × 64 pass took about a millisecond
    // more than in a process of its own (`quant_probe`, 2026-12-03; 5.5 against 6.5 ms), so the forward-only
    // encoders that are compared with ONNX Runtime (a process of its own) are timed before any Burn backend.
    let wanted: Vec<String> = if args.backends.is_empty() {
        std::iter::once("quant".to_string())
            .chain(
                compiled
                    .iter()
                    .filter(|n| **n != "wgpu")
                    .map(|n| n.to_string()),
            )
            .collect()
    } else {
        args.backends.clone()
    };
    let started = Instant::now();
    let mut progress = |what: &str| {
        eprintln!("bench: [{:>5.0} s] {what}", started.elapsed().as_secs_f64());
    };
    let mut measurements = Vec::new();
    for name in &wanted {
        if name == "quant" {
            let (teacher, _) =
                student_arch::load_pretrained(&teacher_dir, &burn::tensor::Device::flex())
                    .with_context(|| format!("loading the teacher {}", teacher_dir.display()))?;
            measurements.extend(
                run_quantized(&teacher, &config, &mut progress).map_err(anyhow::Error::msg)?,
            );
            continue;
        }
        if !compiled.contains(&name.as_str()) {
            bail!(
                "--backends: `{name}` is not compiled in (compiled: {}, and quant)",
                compiled.join(", ")
            );
        }
        let device = student_arch::device::device(name)?;
        let (teacher, _) = student_arch::load_pretrained(&teacher_dir, &device)
            .with_context(|| format!("loading the teacher {}", teacher_dir.display()))?;
        measurements.extend(
            run_backend(name, &device, &teacher, &config, &mut progress)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
        );
    }
    let (torch, python_skipped) = if args.no_python {
        (None, Some("--no-python".to_string()))
    } else {
        match python_side(&args, &teacher_dir) {
            Ok((version, m)) => {
                measurements.extend(m);
                (Some(version), None)
            }
            Err(why) => {
                eprintln!("bench: PyTorch side skipped: {why}");
                (None, Some(why))
            }
        }
    };
    let onnxruntime = if args.no_python || !wanted.iter().any(|w| w == "quant") {
        None
    } else {
        onnx_side_or_skip(&args, &teacher_dir, &config, &mut measurements)
    };
    let report = BenchReport {
        provenance: Some(crate::root::provenance()),
        date: today(),
        onnxruntime,
        cpu,
        threads: args.threads,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        torch,
        python_skipped,
        measurements,
    };
    let markdown = markdown(&report);
    student_arch::io::write_atomic(
        &args.out.join(MARKER),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    student_arch::io::write_atomic(&args.out.join("bench.md"), markdown.as_bytes())?;
    println!("{markdown}");
    eprintln!(
        "bench: wrote {} and bench.md in {:.0} s",
        args.out.join(MARKER).display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `scripts/bench_torch.py`; `Err` says why the PyTorch side was skipped.
fn python_side(
    args: &flags::Bench,
    teacher: &Path,
) -> std::result::Result<(String, Vec<Measurement>), String> {
    let probe = Command::new(&args.python)
        .args(["-c", "import torch, transformers; print(torch.__version__)"])
        .output()
        .map_err(|e| format!("{} not runnable ({e})", args.python))?;
    if !probe.status.success() {
        return Err("torch or transformers not installed (pip install torch transformers)".into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_torch.py");
    eprintln!("bench: PyTorch side: {} {}", args.python, script.display());
    let threads = args.threads.to_string();
    let mut command = Command::new(&args.python);
    command
        .arg(&script)
        .arg(teacher)
        .args(["--threads", &threads, "--runs", &args.runs.to_string()])
        .args(["--budget-s", &args.budget_s.to_string()])
        .args(args.only.iter().flat_map(|o| ["--only", o.as_str()]))
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads);
    #[derive(serde::Deserialize)]
    struct PyReport {
        torch: String,
        measurements: Vec<Measurement>,
    }
    let r: PyReport = python_report(&mut command, &script)?;
    Ok((r.torch, r.measurements))
}

/// Runs a Python side of the bench (its progress on our stderr) and reads the JSON report it prints last.
fn python_report<T: serde::de::DeserializeOwned>(
    command: &mut Command,
    script: &Path,
) -> Result<T, String> {
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| format!("{} printed no report JSON ({e})", script.display()))
}

/// [`onnx_side`]'s measurements appended to `measurements`, and ONNX Runtime's version; `None` (with the reason
/// printed) when it was skipped.
fn onnx_side_or_skip(
    args: &flags::Bench,
    teacher_dir: &Path,
    config: &SuiteConfig,
    measurements: &mut Vec<Measurement>,
) -> Option<String> {
    match onnx_side(args, teacher_dir, config) {
        Ok((version, m)) => {
            measurements.extend(m);
            Some(version)
        }
        Err(why) => {
            eprintln!("bench: ONNX Runtime side skipped: {why}");
            None
        }
    }
}

/// Exports the `student_forward` student in f32, 8 and 4 bits with our ONNX writer into `out/onnx/` and times
/// each in ONNX Runtime with `scripts/bench_onnx.py`, beside ONNX Runtime's dynamic int8 quantization of the f32
/// file; `Err` says why the side was skipped.
fn onnx_side(
    args: &flags::Bench,
    teacher_dir: &Path,
    config: &SuiteConfig,
) -> std::result::Result<(String, Vec<Measurement>), String> {
    if !config.only.is_empty() && !config.only.iter().any(|o| o == "student_forward") {
        return Err("--only leaves out student_forward".into());
    }
    let probe = Command::new(&args.python)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .map_err(|e| format!("{} not runnable ({e})", args.python))?;
    if !probe.status.success() {
        return Err("onnx or onnxruntime not installed (pip install onnx onnxruntime)".into());
    }
    let (teacher, _) = student_arch::load_pretrained(teacher_dir, &burn::tensor::Device::flex())
        .map_err(|e| e.to_string())?;
    let (student, tensors) = benches::suite::bench_student(&teacher)?;
    let dir = args.out.join("onnx");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let head = onnx_export::Head::Embedding { normalize: false };
    let mut models = vec![];
    // Quantized exports both ways: as our integer engine computes (`export`'s default) and as float products
    // of the dequantized weights (MatMulNBits / DequantizeLinear).
    for (bits, matmul) in [
        (32u32, onnx_export::Matmul::Float),
        (8, onnx_export::Matmul::Integer),
        (8, onnx_export::Matmul::Float),
        (4, onnx_export::Matmul::Integer),
        (4, onnx_export::Matmul::Float),
    ] {
        let quantized;
        let source = if bits == 32 {
            onnx_export::Tensors::dense(&tensors)
        } else {
            let plan = quant::QuantPlan::uniform(student.num_hidden_layers, bits);
            quantized =
                quant::quantize_tensors(&tensors, &student, &plan).map_err(|e| e.to_string())?;
            onnx_export::Tensors::quantized(&quantized)
        };
        let exported = onnx_export::export_with(&student, source, head, matmul, vec![])
            .map_err(|e| e.to_string())?;
        let name = match (bits, matmul) {
            (32, _) => "fp32".to_string(),
            // The float form keeps the name the earlier records measured it under.
            (_, onnx_export::Matmul::Float) => format!("int{bits}"),
            (_, onnx_export::Matmul::Integer) => format!("int{bits}_integer"),
        };
        let path = dir.join(format!("student_{name}.onnx"));
        student_arch::io::write_atomic(&path, &exported.to_bytes()).map_err(|e| e.to_string())?;
        models.push(format!("ort_export_{name}={}", path.display()));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_onnx.py");
    eprintln!(
        "bench: ONNX Runtime side: {} {}",
        args.python,
        script.display()
    );
    let threads = args.threads.to_string();
    let mut command = Command::new(&args.python);
    command
        .arg(&script)
        .args(models.iter().flat_map(|m| ["--model", m.as_str()]))
        .args(["--dynamic-int8-of", "ort_export_fp32"])
        .args(["--vocab", &teacher.config.vocab_size.to_string()])
        .args(["--threads", &threads, "--runs", &args.runs.to_string()])
        .args(["--budget-s", &args.budget_s.to_string()])
        .args(["--work-dir", &dir.display().to_string()])
        .env("OMP_NUM_THREADS", &threads);
    #[derive(serde::Deserialize)]
    struct PyReport {
        onnxruntime: String,
        measurements: Vec<Measurement>,
    }
    let r: PyReport = python_report(&mut command, &script)?;
    Ok((r.onnxruntime, r.measurements))
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d %H:%M %Z")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The tables of a bench report.
pub fn markdown(r: &BenchReport) -> String {
    let mut backends: Vec<&str> = Vec::new();
    for m in &r.measurements {
        if !backends.contains(&m.backend.as_str()) {
            backends.push(&m.backend);
        }
    }
    let at: BTreeMap<(&str, &str, &str), f64> = r
        .measurements
        .iter()
        .map(|m| {
            (
                (m.op.as_str(), m.size.as_str(), m.backend.as_str()),
                m.median_ms,
            )
        })
        .collect();
    let ours: Vec<&str> = backends
        .iter()
        .copied()
        .filter(|b| *b != "torch" && !b.starts_with("ort_"))
        .collect();
    let mut s = format!(
        "Machine: {}. {} threads on every side. {}. `{}`.\n",
        r.cpu.summary(),
        r.threads,
        r.date,
        r.command
    );
    if let Some(p) = &r.provenance {
        s += &format!("Run `{}` at commit {} ({}).\n", p.command, p.commit, p.date);
    }
    match (&r.torch, &r.python_skipped) {
        (Some(v), _) => s += &format!("PyTorch {v} (`scripts/bench_torch.py`).\n"),
        (None, Some(why)) => s += &format!("PyTorch side skipped: {why}.\n"),
        _ => {}
    }
    s +=
        "\nMedians in ms; `÷ torch` is our time over PyTorch's (below 1: faster than PyTorch).\n\n";
    s += "| workload |";
    for b in &backends {
        s += &format!(" {b} |");
    }
    for b in &ours {
        s += &format!(" {b} ÷ torch |");
    }
    s += " tokens/s (best of ours) |\n|---|";
    for _ in 0..backends.len() + ours.len() + 1 {
        s += "---|";
    }
    s += "\n";
    for (op, size) in ROWS {
        let tokens = r
            .measurements
            .iter()
            .find(|m| m.op == op && m.size == size)
            .map_or(0, |m| m.tokens);
        s += &format!("| {op}/{size} |");
        for b in &backends {
            match at.get(&(op, size, *b)) {
                Some(v) => s += &format!(" {} |", fmt_ms(*v)),
                None => s += " – |",
            }
        }
        let torch = at.get(&(op, size, "torch"));
        for b in &ours {
            match (at.get(&(op, size, *b)), torch) {
                (Some(v), Some(t)) => s += &format!(" {:.2} |", v / t),
                _ => s += " – |",
            }
        }
        let best = ours
            .iter()
            .filter_map(|b| at.get(&(op, size, *b)))
            .copied()
            .fold(f64::INFINITY, f64::min);
        if best.is_finite() {
            s += &format!(" {:.0} |\n", tokens as f64 / (best / 1e3));
        } else {
            s += " – |\n";
        }
    }
    s + &compressed_table(r) + &onnx_table(r)
}

/// Issue 17's comparison: the quantized student (ours, `int8`/`int4`) against the fp32 teacher in PyTorch and
/// the same student on ONNX Runtime after its dynamic int8 quantization, at 1 × 64 and 32 × 64 tokens.
fn compressed_table(r: &BenchReport) -> String {
    let at = |op: &str, size: &str, backend: &str| {
        r.measurements
            .iter()
            .find(|m| m.op == op && m.size == size && m.backend == backend)
            .map(|m| m.median_ms)
    };
    let ours = ["int8", "int4"];
    let columns: [(&str, &str, &str); 7] = [
        ("teacher fp32, PyTorch", "teacher_forward", "torch"),
        ("student fp32, PyTorch", "student_forward", "torch"),
        ("student fp32, flex", "student_forward", "flex"),
        ("student fp32, ONNX Runtime", "student_forward", "ort_fp32"),
        ("student int8, ONNX Runtime", "student_forward", "ort_int8"),
        ("student int8, ours", "student_forward", "int8"),
        ("student int4, ours", "student_forward", "int4"),
    ];
    let mut s = String::from(
        "\n### The quantized student against the PyTorch teacher and ONNX Runtime\n\nMedians in ms. \
         `× teacher`: the PyTorch teacher's time over our faster quantized student's (issue 17's target: ≥ 6); \
         `vs ONNX Runtime int8`: its time over ours (above 1: ours is faster).\n\n| tokens |",
    );
    for (name, _, _) in columns {
        s += &format!(" {name} |");
    }
    s += " × teacher | vs ONNX Runtime int8 |\n|---|";
    for _ in 0..columns.len() + 2 {
        s += "---|";
    }
    s += "\n";
    for size in ["b1s64", "b32s64"] {
        s += &format!("| {size} |");
        for (_, op, backend) in columns {
            match at(op, size, backend) {
                Some(v) => s += &format!(" {} |", fmt_ms(v)),
                None => s += " – |",
            }
        }
        let best = ours
            .iter()
            .filter_map(|b| at("student_forward", size, b))
            .fold(f64::INFINITY, f64::min);
        let ratio = |other: Option<f64>| match other {
            Some(o) if best.is_finite() => format!(" {:.2} |", o / best),
            _ => " – |".to_string(),
        };
        s += &ratio(at("teacher_forward", size, "torch"));
        s += &ratio(at("student_forward", size, "ort_int8"));
        s += "\n";
    }
    s
}

/// Issue 28/30's comparison: ONNX Runtime running the student as our writer exports it (f32; quantized both as
/// float products of the dequantized weights, 8-bit as DequantizeLinear → MatMul and 4-bit as MatMulNBits, and
/// as our integer engine computes, MatMulInteger on per-token 8-bit activations) beside our engines, and ONNX
/// Runtime's own dynamic int8 quantization of the f32 export. Empty when ONNX Runtime did not run; a record made
/// before the integer form existed shows – there.
fn onnx_table(r: &BenchReport) -> String {
    let Some(version) = &r.onnxruntime else {
        return String::new();
    };
    let at = |size: &str, backend: &str| {
        r.measurements
            .iter()
            .find(|m| m.op == "student_forward" && m.size == size && m.backend == backend)
            .map(|m| m.median_ms)
    };
    let mut s = format!(
        "\n### The student on ONNX Runtime {version}, from our ONNX export\n\nMedians in ms of the student's forward \
         pass (last hidden states). `fp32 native`: our forward-only encoder on f32 weights (`predict`'s default on a \
         CPU). `÷ ORT`: our time over ONNX Runtime's on the same bits and the same export (below 1: ours is faster). Quantized exports: `float`, the dequantized weights in float products (8-bit: \
         DequantizeLinear → MatMul, 4-bit: MatMulNBits); `integer`, as our integer engine computes (MatMulInteger \
         on per-token 8-bit activations, `export`'s default). `ORT dynamic int8`: \
         `onnxruntime.quantization.quantize_dynamic` of our f32 export.\n\n\
         | tokens | fp32 flex | fp32 native | fp32 ORT | flex ÷ ORT | native ÷ ORT | int8 ours | int8 ORT float | int8 ORT integer | ours ÷ ORT \
         integer | int4 ours | int4 ORT float | int4 ORT integer | ours ÷ ORT integer | ORT dynamic int8 | int8 ours \
         ÷ ORT dynamic |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for size in ["b1s64", "b32s64"] {
        let cell = |v: Option<f64>| v.map_or(" – |".to_string(), |v| format!(" {} |", fmt_ms(v)));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!(" {:.2} |", a / b),
            _ => " – |".to_string(),
        };
        s += &format!("| {size} |");
        let ort = at(size, "ort_export_fp32");
        s += &cell(at(size, "flex"));
        s += &cell(at(size, "fp32"));
        s += &cell(ort);
        s += &ratio(at(size, "flex"), ort);
        s += &ratio(at(size, "fp32"), ort);
        for bits in ["int8", "int4"] {
            let float = at(size, &format!("ort_export_{bits}"));
            let integer = at(size, &format!("ort_export_{bits}_integer"));
            s += &cell(at(size, bits));
            s += &cell(float);
            s += &cell(integer);
            s += &ratio(at(size, bits), integer);
        }
        s += &cell(at(size, "ort_dynamic_int8"));
        s += &ratio(at(size, "int8"), at(size, "ort_dynamic_int8"));
        s += "\n";
    }
    s
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: &str, size: &str, backend: &str, ms: f64) -> Measurement {
        Measurement::new(op, size.into(), backend, vec![ms], 64)
    }

    #[test]
    fn table_has_ratios_against_torch_and_dashes_for_missing() {
        let r = BenchReport {
            provenance: None,
            date: "2026-11-30".into(),
            onnxruntime: None,
            cpu: CpuInfo {
                model: "X".into(),
                cores: 2,
                extensions: vec!["AVX2".into()],
            },
            threads: 2,
            command: "cargo xtask bench".into(),
            torch: Some("2.9.0".into()),
            python_skipped: None,
            measurements: vec![
                m("teacher_forward", "b1s64", "flex", 30.0),
                m("teacher_forward", "b1s64", "torch", 20.0),
                m("student_forward", "b1s64", "int8", 5.0),
                m("student_forward", "b1s64", "int4", 4.0),
                m("student_forward", "b1s64", "ort_int8", 6.0),
            ],
        };
        let md = markdown(&r);
        assert!(md.contains("X (2 cores; AVX2)"), "{md}");
        assert!(
            md.contains(
                "| teacher_forward/b1s64 | 30.0 | 20.0 | – | – | – | 1.50 | – | – | 2133 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| student_forward/b1s64 | – | – | 5.00 | 4.00 | 6.00 | – | – | – | 16000 |"
            ),
            "{md}"
        );
        // The comparison table: 20 ms teacher over our best 4 ms; ONNX Runtime's 6 ms over 4.
        assert!(
            md.contains("| b1s64 | 20.0 | – | – | – | 6.00 | 5.00 | 4.00 | 5.00 | 1.50 |"),
            "{md}"
        );
    }

    #[test]
    fn refuses_a_directory_it_did_not_write() {
        let dir = std::env::temp_dir().join(format!("bench-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let err = prepare_out(&dir).unwrap_err().to_string();
        assert!(err.contains("not written by `xtask bench`"), "{err}");
        std::fs::write(dir.join(MARKER), "{}").unwrap();
        assert!(prepare_out(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
