//! The committed reader `scripts/read_quant.py` (numpy + safetensors only, docs/FORMAT.md) reads what the Rust
//! writer writes: every bit width (2, 3, 4, 8), symmetric and asymmetric, per head, channel, tensor and block,
//! dequantized to the same values as `QuantizedModel::dequantize`. CI installs numpy and safetensors; elsewhere
//! the test says what is missing and stops (it fails under CI=true).

use std::path::PathBuf;
use std::process::Command;

use quant::{quantize_tensors, Granularity, QuantPlan};
use student_arch::BertConfig;

fn python_has_numpy() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_python_reader_dequantizes_what_rust_writes() {
    if !python_has_numpy() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install numpy and safetensors for scripts/read_quant.py"
        );
        eprintln!("skipped: python3 with numpy and safetensors is not available");
        return;
    }
    let dir = std::env::temp_dir().join(format!("quant-python-reader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = BertConfig::new(64, 64, 4, 2, 128);
    config.max_position_embeddings = 32;
    let device = burn::tensor::Device::flex();
    let model = config.init_random(false, 11, &device).unwrap();
    let tensors = student_arch::weights::named_tensors(&model).unwrap();
    let plans = [
        (vec![2, 3, 4, 8], Granularity::Head, true),
        (vec![4, 8, 3, 2], Granularity::Block(32), false),
        (vec![8, 4, 4, 8], Granularity::Channel, true),
        (vec![3, 3, 2, 2], Granularity::Tensor, false),
    ];
    for (i, (bits, granularity, symmetric)) in plans.into_iter().enumerate() {
        let mut plan = QuantPlan::uniform(4, 8);
        plan.layer_bits = bits;
        plan.granularity = granularity;
        plan.symmetric = symmetric;
        plan.embedding_bits = 4;
        let q = quantize_tensors(&tensors, &config, &plan).unwrap();
        let file = dir.join(format!("model-{i}.quant.safetensors"));
        q.write(&file).unwrap();
        let out = dir.join(format!("dequantized-{i}.safetensors"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/read_quant.py");
        let run = Command::new("python3")
            .arg(&script)
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let bytes = std::fs::read(&out).unwrap();
        let read = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let expected = q.dequantize();
        assert_eq!(read.names().len(), expected.len(), "plan {i}");
        for (name, (shape, values)) in &expected {
            let view = read.tensor(name).unwrap();
            assert_eq!(view.shape(), shape.as_slice(), "{name}");
            let got: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(&got, values, "plan {i}: {name}");
        }
        // A flipped bit is refused by the reader too.
        let mut corrupt = std::fs::read(&file).unwrap();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        std::fs::write(&file, corrupt).unwrap();
        let run = Command::new("python3")
            .arg(&script)
            .arg(&file)
            .output()
            .unwrap();
        assert!(!run.status.success());
        assert!(String::from_utf8_lossy(&run.stderr).contains("data_sha256"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
