//! A loop of the quantized student's forward pass, for `perf record`:
//! `cargo run -p benches --example quant_probe -- BITS BATCH SEQ RUNS` (BITS 32: full precision; the teacher from `BERT_COMPRESS_TEACHER`);
//! prints the median time of a pass.

use burn::tensor::Device;
use quant::encoder::QuantEncoder;
use quant::{quantize_tensors, QuantPlan};
use student_arch::{BertConfig, StudentSpec};

fn main() -> Result<(), String> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().map_err(|_| format!("`{a}` is not a number")))
        .collect::<Result<_, _>>()?;
    let [bits, batch, seq, runs] = args[..] else {
        return Err("usage: quant_probe BITS BATCH SEQ RUNS".into());
    };
    let dir = std::env::var("BERT_COMPRESS_TEACHER").map_err(|_| "set BERT_COMPRESS_TEACHER")?;
    let (teacher, _) =
        student_arch::load_pretrained(dir.as_ref(), &Device::flex()).map_err(|e| e.to_string())?;
    let student = StudentSpec::default()
        .build(&teacher, &Device::flex())
        .map_err(|e| e.to_string())?;
    let tensors = student_arch::weights::named_tensors(&student).map_err(|e| e.to_string())?;
    let config = BertConfig::from_json(&student.config.to_hf_json()).map_err(|e| e.to_string())?;
    // 32 bits: the full-precision student on the same encoder (f32 GEMMs).
    let encoder = if bits == 32 {
        QuantEncoder::full_precision(&config, &tensors).map_err(|e| e.to_string())?
    } else {
        let plan = QuantPlan::uniform(config.num_hidden_layers, bits as u32);
        let q = quantize_tensors(&tensors, &config, &plan).map_err(|e| e.to_string())?;
        QuantEncoder::new(&q).map_err(|e| e.to_string())?
    };
    let ids = benches::random_ids(batch, seq, teacher.config.vocab_size);
    let mut times = vec![];
    for _ in 0..runs {
        let start = std::time::Instant::now();
        encoder.forward(&ids).map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:?} {bits}-bit {batch}x{seq}: median {:.2} ms over {runs} runs",
        encoder.kernels()[0],
        times[runs / 2]
    );
    Ok(())
}
