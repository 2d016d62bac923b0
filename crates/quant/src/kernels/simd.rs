//! Multiversioned f32 code: a body written for auto-vectorisation, compiled for AVX-512, for AVX2 + FMA and
//! for the target's baseline, the widest one this CPU runs picked at run time ([`Tier::best`]).

/// Lanes of the partial sums: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// The widest vector tier this CPU runs, read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// AVX-512F (with AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// Whatever the target's baseline is.
    Plain,
}

impl Tier {
    /// The widest tier this CPU runs; `BERT_COMPRESS_ISA=avx2` or `scalar` caps it as it caps the GEMM (in any
    /// case, as [`crate::kernels::Isa::parse`] reads it).
    pub fn best() -> Tier {
        static BEST: std::sync::OnceLock<Tier> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = std::env::var("BERT_COMPRESS_ISA").unwrap_or_default();
            #[cfg(target_arch = "x86_64")]
            {
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                Tier::capped(&cap, avx2, avx2 && is_x86_feature_detected!("avx512f"))
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                Tier::capped(&cap, false, false)
            }
        })
    }

    /// The widest tier of a CPU with (or without) AVX2 + FMA and AVX-512F, under the cap `BERT_COMPRESS_ISA`
    /// names (case-insensitive; an unknown or empty name caps nothing).
    fn capped(cap: &str, avx2: bool, avx512: bool) -> Tier {
        let cap = cap.to_ascii_lowercase();
        if avx2 && avx512 && !matches!(cap.as_str(), "avx2" | "avxvnni" | "scalar") {
            Tier::Avx512
        } else if avx2 && cap != "scalar" {
            Tier::Avx2
        } else {
            Tier::Plain
        }
    }
}

/// Defines `pub fn $name(tier, args)` that runs `$body` compiled for `tier` (which must be one this CPU runs:
/// [`Tier::best`] or below).
macro_rules! multiversion_impl {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub fn $name(tier: Tier, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            match tier {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the tier's features were detected at run time (`Tier::best`).
                Tier::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Tier::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

/// `Σ x` in 16 lanes, then the lanes in order.
#[inline(always)]
pub fn lane_sum(x: &[f32], mut f: impl FnMut(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += f(c[i]);
        }
    }
    for (i, v) in rest.iter().enumerate() {
        acc[i] += f(*v);
    }
    acc.iter().sum()
}

/// `N` values of `s` from `at` on, as an array (fixed sizes let loops over it unroll into registers).
#[inline(always)]
pub fn block<const N: usize>(s: &[f32], at: usize) -> &[f32; N] {
    s[at..at + N]
        .try_into()
        .expect("simd::block: a block inside its buffer")
}

pub(crate) use multiversion_impl as multiversion;

#[cfg(test)]
mod tier_tests {
    use super::Tier;

    #[test]
    fn the_cap_is_read_in_any_case_as_the_gemm_reads_it() {
        assert_eq!(Tier::capped("", true, true), Tier::Avx512);
        assert_eq!(Tier::capped("avx512vnni", true, true), Tier::Avx512);
        assert_eq!(Tier::capped("AVX2", true, true), Tier::Avx2);
        assert_eq!(Tier::capped("AvxVnni", true, true), Tier::Avx2);
        assert_eq!(Tier::capped("Scalar", true, true), Tier::Plain);
        assert_eq!(Tier::capped("avx512vnni", true, false), Tier::Avx2);
        assert_eq!(Tier::capped("", false, false), Tier::Plain);
        assert_eq!(Tier::capped("nonsense", true, true), Tier::Avx512);
    }
}
