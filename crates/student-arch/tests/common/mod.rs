//! Helpers shared by the integration tests of `student-arch`.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor};

/// Every device these tests run on: the CPU backends always, wgpu when the feature is on.
pub fn test_devices() -> Vec<(&'static str, Device)> {
    #[allow(deprecated, unused_mut)]
    let mut devices = vec![("flex", Device::flex()), ("ndarray", Device::ndarray())];
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    devices.push(("tch", Device::libtorch()));
    #[cfg(feature = "wgpu")]
    devices.push((
        "wgpu",
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    ));
    devices
}

/// The CPU devices.
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    test_devices()
        .into_iter()
        .filter(|(n, _)| *n != "wgpu")
        .collect()
}

/// A tensor's values on the host.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("student-arch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
