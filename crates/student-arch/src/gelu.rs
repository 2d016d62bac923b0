//! GELU in its exact (erf) form, as BERT defines it, vectorised and threaded on flex.
//!
//! flex computes `gelu` and `gelu_backward` one element at a time with libm's scalar `erff`, on one thread:
//! 14% of the teacher's forward pass and 11% of a distillation step in `perf` (docs/archive/BENCHMARKS-2026-11.md). On flex,
//! [`gelu`] runs a Burn backend extension instead: a rational approximation of erf (max. abs. error 1e-6
//! against libm, tested below) and a polynomial exp, written so that the compiler vectorises them (AVX-512 or
//! AVX2 + FMA, chosen at run time), over rayon's threads; its backward pass is the same kind of kernel. Every
//! other backend, and every dtype but f32, runs Burn's own `gelu`.

use burn::tensor::activation;
use burn::tensor::Tensor;

/// `0.5 · x · (1 + erf(x / √2))`, elementwise.
///
/// # Shapes
/// - x: any; output: the same
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex::runs_on_flex(&x) {
        use burn::backend::Dispatch;
        return Tensor::from_dispatch(<Dispatch as flex::FastGelu>::fast_gelu(x.into_dispatch()));
    }
    activation::gelu(x)
}

/// The scalar kernels, written for auto-vectorisation (no calls, no branches but selects).
pub mod kernels {
    const SQRT_1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT_2PI: f32 = 0.398_942_3;

    /// erf(x) as a rational function of x (Eigen's `generic_fast_erf_float`): x clamped to [-4, 4], where
    /// erf is ±1 to f32 precision.
    #[inline(always)]
    pub fn erf(x: f32) -> f32 {
        let x = x.clamp(-4.0, 4.0);
        let x2 = x * x;
        let mut p = -2.726_142_3e-10_f32;
        p = p.mul_add(x2, 2.770_681_4e-8);
        p = p.mul_add(x2, -2.101_024e-6);
        p = p.mul_add(x2, -5.692_506_4e-5);
        p = p.mul_add(x2, -7.349_906_3e-4);
        p = p.mul_add(x2, -2.954_600_6e-3);
        p = p.mul_add(x2, -1.609_603_3e-2);
        p *= x;
        let mut q = -1.456_607_2e-5_f32;
        q = q.mul_add(x2, -2.133_740_6e-4);
        q = q.mul_add(x2, -1.682_827e-3);
        q = q.mul_add(x2, -7.373_329e-3);
        q = q.mul_add(x2, -1.426_474e-2);
        p / q
    }

    /// exp(x) for x ≤ 0 (x below -87 is taken as -87: e^-87 ≈ 1.6e-38; above 0, or NaN, as 0 and -87): 2^n · e^r
    /// with |r| ≤ ln2/2 and a degree-6 polynomial for e^r.
    #[inline(always)]
    pub fn exp_neg(x: f32) -> f32 {
        // `max` first maps NaN to -87 (`clamp` would keep NaN); then x is finite in [-87, 0].
        #[allow(clippy::manual_clamp)]
        let x = x.max(-87.0).min(0.0);
        // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick (no call to `round`).
        let t = x * std::f32::consts::LOG2_E;
        let n = (t + 12_582_912.0) - 12_582_912.0;
        let r = n.mul_add(-0.693_145_75, x);
        let r = n.mul_add(-1.428_606_8e-6, r);
        let mut p = 1.0 / 720.0_f32;
        p = p.mul_add(r, 1.0 / 120.0);
        p = p.mul_add(r, 1.0 / 24.0);
        p = p.mul_add(r, 1.0 / 6.0);
        p = p.mul_add(r, 0.5);
        p = p.mul_add(r, 1.0);
        p = p.mul_add(r, 1.0);
        // SAFETY: x ∈ [-87, 0], so n ∈ [-126, 0] is finite and within i32 (a saturating `as` would not
        // vectorise); n + 127 ≥ 1 is a normal exponent.
        let n = unsafe { n.to_int_unchecked::<i32>() };
        let scale = f32::from_bits(((n + 127) as u32) << 23);
        p * scale
    }

    /// GELU of one value.
    #[inline(always)]
    pub fn gelu(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * SQRT_1_2))
    }

    /// d gelu / dx at x, times the incoming gradient g.
    #[inline(always)]
    pub fn gelu_backward(x: f32, g: f32) -> f32 {
        let cdf = 0.5 * (1.0 + erf(x * SQRT_1_2));
        let pdf = INV_SQRT_2PI * exp_neg(-0.5 * x * x);
        g * x.mul_add(pdf, cdf)
    }

    macro_rules! simd_loops {
        ($features:literal, $forward:ident, $backward:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $forward(xs: &mut [f32]) {
                for x in xs.iter_mut() {
                    *x = gelu(*x);
                }
            }
            #[target_feature(enable = $features)]
            unsafe fn $backward(xs: &[f32], gs: &mut [f32]) {
                for (g, &x) in gs.iter_mut().zip(xs) {
                    *g = gelu_backward(x, *g);
                }
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    simd_loops!("avx512f,avx2,fma", forward_avx512, backward_avx512);
    #[cfg(target_arch = "x86_64")]
    simd_loops!("avx2,fma", forward_avx2, backward_avx2);

    /// GELU in place, with the widest vectors the CPU has.
    pub fn gelu_in_place(xs: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA), checked just above.
                return unsafe { forward_avx512(xs) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { forward_avx2(xs) };
            }
        }
        for x in xs.iter_mut() {
            *x = gelu(*x);
        }
    }

    /// `gs[i] = gelu'(xs[i]) · gs[i]`, with the widest vectors the CPU has.
    pub fn gelu_backward_in_place(xs: &[f32], gs: &mut [f32]) {
        assert_eq!(
            xs.len(),
            gs.len(),
            "gelu_backward: input and gradient lengths differ"
        );
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA), checked just above.
                return unsafe { backward_avx512(xs, gs) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { backward_avx2(xs, gs) };
            }
        }
        for (g, &x) in gs.iter_mut().zip(xs) {
            *g = gelu_backward(x, *g);
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
    use burn::backend::autodiff::NodeId;
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::ActivationOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, DispatchDevice, Flex};
    use burn::tensor::{DType, Tensor};
    use rayon::prelude::*;

    use super::kernels;

    /// Elements per rayon task: large enough that a task outweighs its hand-over.
    const CHUNK: usize = 1 << 15;

    /// Whether `x` lives on flex (with or without autodiff).
    pub fn runs_on_flex<const D: usize>(x: &Tensor<D>) -> bool {
        matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
    }

    /// GELU and its backward pass as one fused, vectorised kernel each.
    #[backend_extension(Flex, Autodiff)]
    pub trait FastGelu: Backend {
        /// `0.5 · x · (1 + erf(x / √2))`.
        fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
        /// `grad · gelu'(x)`.
        fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    }

    /// A contiguous f32 tensor this kernel may write into: `t` itself when it is the only owner of
    /// contiguous storage starting at offset 0, else a contiguous copy.
    fn owned_contiguous(t: FlexTensor) -> FlexTensor {
        let l = t.layout();
        if t.is_unique() && l.is_contiguous() && l.start_offset() == 0 {
            t
        } else {
            t.to_contiguous()
        }
    }

    impl FastGelu for Flex {
        fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
            if x.dtype() != DType::F32 {
                return Flex::gelu(x);
            }
            let mut out = owned_contiguous(x);
            let n = out.layout().num_elements();
            let data: &mut [f32] = &mut out.storage_mut()[..n];
            data.par_chunks_mut(CHUNK).for_each(kernels::gelu_in_place);
            out
        }

        fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            if x.dtype() != DType::F32
                || grad.dtype() != DType::F32
                || x.layout().shape() != grad.layout().shape()
            {
                return Flex::gelu_backward(x, grad);
            }
            let x = if x.layout().is_contiguous() {
                x
            } else {
                x.to_contiguous()
            };
            let mut out = owned_contiguous(grad);
            let n = out.layout().num_elements();
            let start = x.layout().start_offset();
            let xs: &[f32] = &x.storage()[start..start + n];
            let gs: &mut [f32] = &mut out.storage_mut()[..n];
            gs.par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(g, x)| kernels::gelu_backward_in_place(x, g));
            out
        }
    }

    impl<B: Backend + FastGelu, C: CheckpointStrategy> FastGelu for Autodiff<B, C> {
        fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
            #[derive(Debug)]
            struct GeluBackward;

            impl<B: Backend + FastGelu> Backward<B, 1> for GeluBackward {
                type State = NodeId;

                fn backward(
                    self,
                    ops: Ops<Self::State, 1>,
                    grads: &mut Gradients,
                    checkpointer: &mut Checkpointer,
                ) {
                    let input = checkpointer.retrieve_node_output(ops.state);
                    unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                        B::fast_gelu_backward(input, grad)
                    });
                }
            }

            match GeluBackward
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let state = prep.checkpoint(&x);
                    prep.finish(state, B::fast_gelu(x.primitive().clone()))
                }
                OpsKind::UnTracked(prep) => prep.finish(B::fast_gelu(x.into_primitive())),
            }
        }

        fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            // Only reached through a second-order use, which Burn does not support (no double backward).
            Self::gelu_backward(x, grad)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kernels;
    use burn::tensor::{Distribution, Tensor};

    fn erf_ref(x: f64) -> f64 {
        libm::erf(x)
    }

    #[test]
    fn erf_and_exp_kernels_are_accurate() {
        let mut worst_erf = 0.0f64;
        let mut worst_exp = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst_erf = worst_erf.max((kernels::erf(x) as f64 - erf_ref(x as f64)).abs());
        }
        for i in 0..=90_000 {
            let x = -(i as f32) * 1e-3;
            let want = (x as f64).exp();
            let rel = (kernels::exp_neg(x) as f64 - want).abs() / want.max(1e-30);
            if want > 1e-37 {
                worst_exp = worst_exp.max(rel);
            }
        }
        assert!(worst_erf < 1e-6, "erf max abs error {worst_erf:e}");
        assert!(worst_exp < 1e-6, "exp max rel error {worst_exp:e}");
        assert!(kernels::exp_neg(-1000.0) < 2e-38);
        assert_eq!(kernels::erf(30.0), 1.0);
    }

    #[test]
    fn simd_paths_equal_the_scalar_kernels() {
        let xs: Vec<f32> = (0..1037).map(|i| (i as f32 - 500.0) * 0.013).collect();
        let mut fwd = xs.clone();
        kernels::gelu_in_place(&mut fwd);
        let mut bwd: Vec<f32> = (0..xs.len()).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let gs = bwd.clone();
        kernels::gelu_backward_in_place(&xs, &mut bwd);
        for i in 0..xs.len() {
            assert!((fwd[i] - kernels::gelu(xs[i])).abs() <= 1e-6 * (1.0 + fwd[i].abs()));
            let want = kernels::gelu_backward(xs[i], gs[i]);
            assert!((bwd[i] - want).abs() <= 1e-6 * (1.0 + want.abs()));
        }
    }

    /// The fast path against Burn's own gelu on every CPU device compiled in, forward and backward
    /// (autodiff), on a non-contiguous input too.
    #[test]
    // The device's name is checked only where flex is compiled in.
    #[cfg_attr(not(feature = "flex"), allow(unused_variables))]
    fn gelu_and_its_gradient_match_burns_on_every_cpu_device() {
        for (name, device) in crate::device::cpu_devices() {
            let ad = device.clone().autodiff();
            let x = Tensor::<3>::random([3, 37, 41], Distribution::Normal(0.0, 3.0), &device);
            // The fast kernel is the one under test on flex, with and without autodiff; elsewhere Burn's.
            #[cfg(feature = "flex")]
            {
                let on_ad = Tensor::<3>::from_data(x.to_data(), &ad);
                assert_eq!(super::flex::runs_on_flex(&x), name == "flex", "{name}");
                assert_eq!(
                    super::flex::runs_on_flex(&on_ad),
                    name == "flex",
                    "{name} autodiff"
                );
            }
            let want = burn::tensor::activation::gelu(x.clone());
            let got = super::gelu(x.clone());
            got.into_data().assert_approx_eq::<f32>(
                &want.into_data(),
                burn::tensor::Tolerance::absolute(2e-6),
            );
            // A transposed view.
            let xt = x.clone().swap_dims(1, 2);
            super::gelu(xt.clone()).into_data().assert_approx_eq::<f32>(
                &burn::tensor::activation::gelu(xt).into_data(),
                burn::tensor::Tolerance::absolute(2e-6),
            );

            let weights = Tensor::<3>::random([3, 37, 41], Distribution::Default, &ad);
            let grad_of = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
                let xa = Tensor::<3>::from_data(x.to_data(), &ad).require_grad();
                let loss = (f(xa.clone()) * weights.clone()).sum();
                let grads = loss.backward();
                xa.grad(&grads).expect("x has a gradient")
            };
            let want = grad_of(&|t| burn::tensor::activation::gelu(t));
            let got = grad_of(&|t| super::gelu(t));
            got.into_data().assert_approx_eq::<f32>(
                &want.into_data(),
                burn::tensor::Tolerance::absolute(5e-6),
            );
        }
    }
}
