#!/usr/bin/env bash
# Times the native encoder's two f32 GEMMs (weights packed at load, and the `gemm` crate) on one thread at the
# shapes a forward pass of the default student gives them (a team member's share at 1 x 64 tokens, a group of 128
# tokens at 32 x 64), each beside this thread's FMA peak, and writes the lines with the command, commit, CPU and
# date to OUT (default docs/records/f32-probe.txt):
#   bash scripts/f32_probe.sh [OUT]
set -euo pipefail
out="${1:-docs/records/f32-probe.txt}"
cd "$(dirname "$0")/.."
cargo build -q --release -p benches --example f32_probe
probe="${CARGO_TARGET_DIR:-target}/release/examples/f32_probe"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni)$' | tr '\n' ' ')"
{
  echo "# f32 GEMMs of the native encoder on one thread: weights packed at load against the gemm crate"
  echo "# command: bash scripts/f32_probe.sh $out"
  echo "# commit: $(git rev-parse --short=10 HEAD)$(git diff --quiet HEAD -- crates benches || echo ' (with uncommitted changes)')"
  echo "# cpu: $cpu"
  echo "# date: $(date -u +%Y-%m-%d\ %H:%M\ UTC)"
  # ROWS COLS TOKENS: Q, K and V stacked, the attention output, the FFN's two matrices.
  for shape in "576 384 64" "192 384 64" "768 384 64" "192 1536 64" "1152 384 128" "384 384 128" "1536 384 128" "384 1536 128"; do
    RAYON_NUM_THREADS=1 "$probe" $shape 301
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
