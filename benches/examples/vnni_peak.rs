//! This CPU's ceiling for the integer GEMM: `vpdpbusd` on 512-bit registers with no memory operands (16
//! independent accumulators), then the AVX-512 VNNI register tile's inner loop (2 panel loads, 12 broadcasts,
//! 24 `vpdpbusd`) on operands that stay in L1/L2: `cargo run --release -p benches --example vnni_peak`.
//! Prints GMAC/s on one thread; the GEMM's figures from `gemm_probe` compare against these.

#[cfg(target_arch = "x86_64")]
fn main() {
    if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")) {
        println!("this CPU lacks AVX-512 VNNI");
        return;
    }
    // SAFETY: the features were just detected.
    unsafe {
        let n = 50_000_000u64;
        let t = std::time::Instant::now();
        registers_only(n);
        let macs = n as f64 * 16.0 * 64.0;
        println!(
            "vpdpbusd zmm, registers only: {:.1} GMAC/s",
            macs / t.elapsed().as_secs_f64() / 1e9
        );
        for k4 in [96usize, 384] {
            let x = vec![1u8; k4 * 48];
            let w = vec![1i8; k4 * 128];
            let reps = 20_000_000 / k4;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                tile_loop(x.as_ptr(), w.as_ptr(), k4);
            }
            let macs = (reps * k4 * 4 * 12 * 32) as f64;
            println!(
                "12 × 2 tile loop, k4 = {k4} ({} KB of weights): {:.1} GMAC/s",
                k4 * 128 / 1024,
                macs / t.elapsed().as_secs_f64() / 1e9
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn registers_only(n: u64) {
    std::arch::asm!(
        "2:",
        "vpdpbusd zmm8, zmm0, zmm1", "vpdpbusd zmm9, zmm0, zmm1", "vpdpbusd zmm10, zmm0, zmm1",
        "vpdpbusd zmm11, zmm0, zmm1", "vpdpbusd zmm12, zmm0, zmm1", "vpdpbusd zmm13, zmm0, zmm1",
        "vpdpbusd zmm14, zmm0, zmm1", "vpdpbusd zmm15, zmm0, zmm1", "vpdpbusd zmm16, zmm0, zmm1",
        "vpdpbusd zmm17, zmm0, zmm1", "vpdpbusd zmm18, zmm0, zmm1", "vpdpbusd zmm19, zmm0, zmm1",
        "vpdpbusd zmm20, zmm0, zmm1", "vpdpbusd zmm21, zmm0, zmm1", "vpdpbusd zmm22, zmm0, zmm1",
        "vpdpbusd zmm23, zmm0, zmm1",
        "dec {n}",
        "jnz 2b",
        n = inout(reg) n => _,
        out("zmm0") _, out("zmm1") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
        out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
        options(nostack),
    );
}

/// The inner loop `gemm_avx::vnni512::<12, 2>` compiles to, written out: per 4 inputs, the two panels' 64
/// bytes, then each of 12 tokens' 4 codes broadcast and multiplied into both panels' accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile_loop(x: *const u8, w: *const i8, k4: usize) {
    macro_rules! token {
        ($off:literal, $a:literal, $b:literal) => {
            concat!(
                "vpbroadcastd zmm26, dword ptr [{x} + ",
                $off,
                "]\n",
                "vpdpbusd zmm",
                $a,
                ", zmm26, zmm24\n",
                "vpdpbusd zmm",
                $b,
                ", zmm26, zmm25\n"
            )
        };
    }
    std::arch::asm!(
        "2:",
        "vmovdqu64 zmm24, [{w}]",
        "vmovdqu64 zmm25, [{w} + 64]",
        token!(0, 0, 1), token!(4, 2, 3), token!(8, 4, 5), token!(12, 6, 7), token!(16, 8, 9),
        token!(20, 10, 11), token!(24, 12, 13), token!(28, 14, 15), token!(32, 16, 17),
        token!(36, 18, 19), token!(40, 20, 21), token!(44, 22, 23),
        "add {w}, 128",
        "add {x}, 48",
        "dec {k}",
        "jnz 2b",
        w = inout(reg) w => _,
        x = inout(reg) x => _,
        k = inout(reg) k4 => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
        out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
        out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
        out("zmm24") _, out("zmm25") _, out("zmm26") _,
        options(nostack, readonly),
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("x86-64 only");
}
