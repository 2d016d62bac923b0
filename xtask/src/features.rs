//! `cargo xtask check-features`: Burn's speed on the CPU rests on features that `default-features = false`
//! turns off (`simd` for burn-flex's and burn-ndarray's vector kernels, `rayon` for their threads and gemm's).
//! This check reads `cargo tree -e features` and fails, naming what is missing, if any of them is off.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The features each crate must be built with.
const REQUIRED: [(&str, &[&str]); 3] = [
    ("burn-flex", &["simd", "rayon"]),
    ("burn-ndarray", &["simd", "multi-threads"]),
    ("gemm-common", &["rayon"]),
];

/// Fails if a crate of [`REQUIRED`] is built without one of its features.
pub fn check() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "tree",
            "--package",
            "xtask",
            "--edges",
            "normal",
            "--prefix",
            "none",
            // ndarray is opt-in for xtask (its default build is flex only); check it as it would be built.
            "--features",
            "ndarray",
        ])
        .args(["--format", "{p} {f}"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let missing = missing_features(&String::from_utf8_lossy(&output.stdout));
    if !missing.is_empty() {
        bail!(
            "Burn is built without features the CPU speed needs: {}. Add \"simd\" and \"rayon\" to the burn \
             features in the workspace Cargo.toml",
            missing.join("; ")
        );
    }
    eprintln!("check-features: burn-flex, burn-ndarray and gemm have simd and rayon");
    Ok(())
}

/// What is missing, as `crate: feature` (or `crate: not in the build`), from `cargo tree --format "{p} {f}"`.
fn missing_features(tree: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for (krate, features) in REQUIRED {
        let line = tree
            .lines()
            .find(|l| l.split_whitespace().next() == Some(krate));
        let Some(line) = line else {
            missing.push(format!("{krate}: not in the build"));
            continue;
        };
        let on: Vec<&str> = line
            .split_whitespace()
            .last()
            .map(|f| f.split(',').collect())
            .unwrap_or_default();
        for feature in features.iter() {
            if !on.contains(feature) {
                missing.push(format!("{krate}: {feature}"));
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_missing_feature() {
        let tree = "burn-flex v0.22.1 std\nburn-ndarray v0.22.1 multi-threads,simd,std\n";
        assert_eq!(
            missing_features(tree),
            [
                "burn-flex: simd",
                "burn-flex: rayon",
                "gemm-common: not in the build"
            ]
        );
        let good = "burn-flex v0.22.1 rayon,simd,std\nburn-ndarray v0.22.1 multi-threads,simd\n\
                    gemm-common v0.19.0 f16,rayon,std\n";
        assert!(missing_features(good).is_empty());
    }
}
