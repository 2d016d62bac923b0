#!/usr/bin/env bash
# Profiles the native forward pass of the default student (`quant::encoder::QuantEncoder`) with `perf record`
# and writes the hottest symbols, with the command, commit, CPU and date, to OUT (default
# docs/records/profile-encoder.txt):
#   bash scripts/profile_encoder.sh [BITS] [OUT]      # BITS: 32 (full precision, default), 8 or 4
# Needs perf (apt install linux-perf or linux-tools) and BERT_COMPRESS_TEACHER (the fetched all-MiniLM-L6-v2:
# `cargo xtask fetch`). Builds the probe with the workspace's test features, so it reuses the test build.
set -euo pipefail
bits="${1:-32}"
out="${2:-docs/records/profile-encoder.txt}"
cd "$(dirname "$0")/.."
: "${BERT_COMPRESS_TEACHER:?set BERT_COMPRESS_TEACHER to the teacher directory (cargo xtask fetch prints it)}"
command -v perf >/dev/null || { echo "perf not found: apt install linux-perf (or linux-tools-\$(uname -r))" >&2; exit 1; }
cargo build -q --workspace --features xtask/wgpu --example quant_probe
target="${CARGO_TARGET_DIR:-target}"
probe="$target/debug/examples/quant_probe"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni)$' | tr '\n' ' ')"
{
  echo "# perf profile of the native encoder, $bits-bit weights, 2 threads"
  echo "# command: bash scripts/profile_encoder.sh $bits $out"
  echo "# commit: $(git rev-parse --short=10 HEAD)$(git diff --quiet HEAD -- crates benches || echo ' (with uncommitted changes)')"
  echo "# cpu: $cpu"
  echo "# date: $(date -u +%Y-%m-%d\ %H:%M\ UTC)"
  for shape in "1 64 2000" "32 64 100"; do
    set -- $shape
    echo
    echo "## batch $1 x $2 tokens, $3 passes: $(RAYON_NUM_THREADS=2 "$probe" "$bits" "$1" "$2" 31 | sed 's/.*: //')"
    RAYON_NUM_THREADS=2 perf record -q -o "$dir/perf.data" "$probe" "$bits" "$1" "$2" "$3" >/dev/null 2>&1
    perf report -i "$dir/perf.data" --no-children --sort symbol --percent-limit 0.5 2>/dev/null \
      | grep -E '^ +[0-9]' | sed -E 's/( +-)+ *$//; s/ +$//; s/^ +//' | head -25
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
