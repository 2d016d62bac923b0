#!/usr/bin/env python3
"""PyTorch's side of `cargo run -p benches --example matmul_probe`: f32 matmul throughput on the BERT shapes, in
GFLOP/s (median of 7 after 2 warm-up runs).

Usage: python3 scripts/bench_matmul.py [--threads 2]
"""
import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for m, k, n in [(4096, 384, 384), (4096, 384, 1536), (4096, 1536, 384), (2048, 384, 384)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(2):
            a @ b
        times = []
        for _ in range(7):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        t = sorted(times)[3]
        print(f"{m}x{k}x{n}: {t * 1e3:.2f} ms, {2 * m * k * n / t / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
