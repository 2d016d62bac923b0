//! Picking a device by name among the backends compiled in. Model code never names a backend; binaries, tests
//! and benches call this with the user's choice.

use burn::tensor::Device;

use crate::error::{ArchError, Result};

/// The device names compiled into this build, CPU first, the default first of all.
pub fn available_devices() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "tch") {
        names.push("tch");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// The CPU devices compiled in, with their names.
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    available_devices()
        .into_iter()
        .filter(|n| *n != "wgpu" && *n != "cuda")
        .filter_map(|n| device(n).ok().map(|d| (n, d)))
        .collect()
}

/// Whether `device` is one of the CPU devices compiled in ([`cpu_devices`]).
pub fn is_cpu(device: &Device) -> bool {
    cpu_devices().iter().any(|(_, d)| d == device)
}

/// The default device: the first of [`available_devices`] (flex, which was the faster CPU backend in
/// docs/archive/BENCHMARKS-2026-11.md, when compiled in).
pub fn default_device_name() -> &'static str {
    available_devices().first().copied().unwrap_or("none")
}

/// The device called `name`: `flex`, `ndarray`, `tch` (LibTorch on the CPU), `tch-cuda` (LibTorch on the
/// first CUDA GPU), `wgpu` or `cuda` (Burn's CubeCL CUDA backend on the first NVIDIA GPU).
pub fn device(name: &str) -> Result<Device> {
    #[allow(unused_variables)]
    let unavailable = |feature: &str| {
        ArchError::Device {
        name: name.to_string(),
        message: format!(
            "this build was compiled without the `{feature}` feature; rebuild with `--features {feature}` or pick one of {:?}",
            available_devices()
        ),
    }
    };
    match name {
        "flex" => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[allow(unreachable_code)]
            Err(unavailable("flex"))
        }
        "ndarray" => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok(Device::ndarray());
            #[allow(unreachable_code)]
            Err(unavailable("ndarray"))
        }
        "tch" => {
            // burn-tch is deprecated upstream in favour of CubeCL backends; it is still the fastest CPU path.
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return Ok(Device::libtorch());
            #[allow(unreachable_code)]
            Err(unavailable("tch"))
        }
        "tch-cuda" => {
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return Ok(Device::libtorch_cuda(0));
            #[allow(unreachable_code)]
            Err(unavailable("tch"))
        }
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            #[allow(unreachable_code)]
            Err(unavailable("wgpu"))
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(0));
            #[allow(unreachable_code)]
            Err(unavailable("cuda"))
        }
        other => Err(ArchError::Device {
            name: other.to_string(),
            message: format!("unknown device; expected one of {:?}", available_devices()),
        }),
    }
}
