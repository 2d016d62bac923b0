#!/usr/bin/env python3
"""Times ONNX files that `cargo xtask bench` exported with our writer (the student encoder in f32, 8-bit and
4-bit) in ONNX Runtime, and ONNX Runtime's own dynamic int8 quantization of the f32 file, with the same thread
count and the same batch shapes as the Rust side (1 × 64 and 32 × 64 tokens, every token real).

Usage: python3 scripts/bench_onnx.py --model BACKEND=FILE [...] [--dynamic-int8-of BACKEND] --vocab V
                                      [--threads 2] [--runs 7] [--budget-s 12] [--work-dir DIR]

Prints one JSON line: {"onnxruntime": version, "measurements": [{op, size, backend, median_ms, times_ms,
tokens}]}. Needs only onnx, onnxruntime and numpy (no torch).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def timed(f, runs, budget_s, warmup=1):
    for _ in range(warmup):
        f()
    times = []
    start = time.perf_counter()
    while len(times) < runs:
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="BACKEND=FILE, repeatable")
    ap.add_argument("--dynamic-int8-of", help="also time ORT's quantize_dynamic of this backend's file")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--budget-s", type=float, default=12.0)
    ap.add_argument("--work-dir", default=".")
    args = ap.parse_args()

    import onnxruntime as ort

    models = [m.split("=", 1) for m in args.model]
    if args.dynamic_int8_of:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source = dict(models)[args.dynamic_int8_of]
        target = os.path.join(args.work_dir, "ort_dynamic_int8.onnx")
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        models.append(("ort_dynamic_int8", target))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    rng = np.random.default_rng(43)
    measurements = []
    for backend, path in models:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for b, s in ((1, 64), (32, 64)):
            ids = rng.integers(0, args.vocab, size=(b, s), dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            print(f"bench_onnx: {backend} student_forward/b{b}s{s}", file=sys.stderr)
            times = timed(lambda: session.run(None, feed), args.runs, args.budget_s)
            measurements.append(
                {
                    "op": "student_forward",
                    "size": f"b{b}s{s}",
                    "backend": backend,
                    "median_ms": statistics.median(times),
                    "times_ms": times,
                    "tokens": b * s,
                }
            )
    print(json.dumps({"onnxruntime": ort.__version__, "measurements": measurements}))


if __name__ == "__main__":
    main()
