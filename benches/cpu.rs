//! The machine a figure was measured on: the CPU's model and the vector extensions our kernels and Burn's can
//! use. Machines differ from session to session, so every benchmark table names them.

use serde::{Deserialize, Serialize};

/// The CPU, as `/proc/cpuinfo` and the run-time feature checks see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CpuInfo {
    /// e.g. `AMD EPYC 9R14 96-Core Processor`; `unknown` where the OS does not say.
    pub model: String,
    /// Logical cores this process may use.
    pub cores: usize,
    /// The vector extensions present, of AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-VNNI, in that order.
    pub extensions: Vec<String>,
}

impl CpuInfo {
    /// The running machine.
    pub fn detect() -> Self {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| model_name(&text))
            .unwrap_or_else(|| "unknown".into());
        Self {
            model,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            extensions: extensions().into_iter().map(String::from).collect(),
        }
    }

    /// One line: `AMD EPYC (2 cores; AVX2, FMA, AVX-512F, AVX-512 VNNI)`.
    pub fn summary(&self) -> String {
        let ext = if self.extensions.is_empty() {
            "no AVX2".to_string()
        } else {
            self.extensions.join(", ")
        };
        format!("{} ({} cores; {ext})", self.model, self.cores)
    }
}

/// The first `model name` line of a `/proc/cpuinfo` text.
pub fn model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(target_arch = "x86_64")]
fn extensions() -> Vec<&'static str> {
    let mut e = Vec::new();
    if std::arch::is_x86_feature_detected!("avx2") {
        e.push("AVX2");
    }
    if std::arch::is_x86_feature_detected!("fma") {
        e.push("FMA");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        e.push("AVX-512F");
    }
    if std::arch::is_x86_feature_detected!("avx512vnni") {
        e.push("AVX-512 VNNI");
    }
    if std::arch::is_x86_feature_detected!("avxvnni") {
        e.push("AVX-VNNI");
    }
    e
}

#[cfg(not(target_arch = "x86_64"))]
fn extensions() -> Vec<&'static str> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_model_name() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t: fpu\n";
        assert_eq!(model_name(text).as_deref(), Some("AMD EPYC 9R14"));
        assert_eq!(model_name("processor\t: 0\n"), None);
        assert_eq!(model_name("model name\t:   \n"), None);
    }

    #[test]
    fn summary_names_model_cores_and_extensions() {
        let cpu = CpuInfo {
            model: "X".into(),
            cores: 2,
            extensions: vec!["AVX2".into(), "FMA".into()],
        };
        assert_eq!(cpu.summary(), "X (2 cores; AVX2, FMA)");
        let bare = CpuInfo {
            extensions: vec![],
            ..cpu
        };
        assert_eq!(bare.summary(), "X (2 cores; no AVX2)");
    }
}
