//! [`Isa`]: the instruction set the integer GEMM runs on, detected once at run time, capped by
//! `BERT_COMPRESS_ISA`, and the register tile each one uses.

/// The instruction set a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// `vpdpbusd` on 512-bit registers (AVX-512 VNNI + BW).
    Avx512Vnni,
    /// `vpdpbusd` on 256-bit registers with the VEX encoding of client CPUs without AVX-512 (AVX-VNNI).
    AvxVnni,
    /// AVX2: both operands widened to i16 (the weights once, re-packed into input pairs) and multiplied with
    /// `vpmaddwd` (exact, unlike `vpmaddubsw` on 8-bit codes); codes within ±64 as bytes with `vpmaddubsw`, which
    /// cannot saturate on them.
    Avx2,
    /// Plain loops.
    Scalar,
}

impl Isa {
    /// Every ISA this CPU runs, fastest first.
    pub fn available() -> Vec<Isa> {
        Isa::detected().to_vec()
    }

    /// [`Isa::available`], detected once (every GEMM call checks its ISA against it).
    pub(crate) fn detected() -> &'static [Isa] {
        static DETECTED: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
        DETECTED.get_or_init(Isa::detect)
    }

    fn detect() -> Vec<Isa> {
        let mut out = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                out.push(Isa::Avx512Vnni);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni") {
                out.push(Isa::AvxVnni);
            }
            if is_x86_feature_detected!("avx2") {
                out.push(Isa::Avx2);
            }
        }
        out.push(Isa::Scalar);
        out
    }

    /// The fastest ISA this CPU runs, or the one `BERT_COMPRESS_ISA` names (`avx512vnni`, `avxvnni`, `avx2`,
    /// `scalar`) when this CPU runs it; `BERT_COMPRESS_NO_VNNI` (set to anything) skips both VNNI paths.
    /// Read once.
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Isa::detected();
            let wanted = std::env::var("BERT_COMPRESS_ISA").ok();
            if let Some(isa) = wanted
                .as_deref()
                .and_then(Isa::parse)
                .filter(|i| available.contains(i))
            {
                return isa;
            }
            let no_vnni = std::env::var_os("BERT_COMPRESS_NO_VNNI").is_some();
            available
                .iter()
                .copied()
                .find(|i| !(no_vnni && matches!(i, Isa::Avx512Vnni | Isa::AvxVnni)))
                .unwrap_or(Isa::Scalar)
        })
    }

    /// Parses the names [`Isa::best`] reads.
    pub fn parse(name: &str) -> Option<Isa> {
        match name.to_ascii_lowercase().as_str() {
            "avx512vnni" => Some(Isa::Avx512Vnni),
            "avxvnni" => Some(Isa::AvxVnni),
            "avx2" => Some(Isa::Avx2),
            "scalar" => Some(Isa::Scalar),
            _ => None,
        }
    }

    /// Its name, as [`Isa::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }

    /// `(tokens, panels)` of its register tile.
    pub(crate) fn tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512Vnni => *AVX512_TILE.get_or_init(|| {
                std::env::var("BERT_COMPRESS_TILE")
                    .ok()
                    .and_then(|v| {
                        let (a, b) = v.split_once('x')?;
                        Some((a.parse().ok()?, b.parse().ok()?))
                    })
                    .unwrap_or((12, 2))
            }),
            Isa::AvxVnni => (6, 1),
            Isa::Avx2 => (6, 1),
            Isa::Scalar => (4, 1),
        }
    }
}

static AVX512_TILE: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
