//! The readers of a classifier directory, a quantized file and a checkpoint, fed mutated copies of valid files
//! (truncations, flipped bits, lying header lengths and JSON numbers): no read may panic. A short seeded run;
//! `cargo xtask fuzz --minutes 10` is the long one (docs/RELIABILITY.md).

use std::time::Duration;

#[test]
fn mutated_files_are_refused_without_a_panic() {
    let work_dir = std::env::temp_dir().join(format!("pipeline-fuzz-{}", std::process::id()));
    let config = pipeline::FuzzConfig {
        seed: 20261130,
        iterations: 600,
        budget: Duration::from_secs(120),
        work_dir: work_dir.clone(),
    };
    let report = pipeline::fuzz_readers(&config, &burn::tensor::Device::flex()).unwrap();
    let _ = std::fs::remove_dir_all(&work_dir);
    eprintln!("{report:?}");
    assert!(report.panics.is_empty(), "{:#?}", report.panics);
    for (reader, reads) in pipeline::READERS.iter().zip(report.reads) {
        assert!(reads >= 20, "{reader}: only {reads} reads");
    }
    // Most mutations must be caught: a flipped bit inside a float can pass a reader, but the checksums of our
    // own files catch it (a checkpoint whose manifest was rewritten to match is the exception left).
    let errors: usize = report.errors.iter().sum();
    let reads: usize = report.reads.iter().sum();
    assert!(
        errors * 10 >= reads * 7,
        "only {errors} of {reads} mutated files were refused"
    );
}
