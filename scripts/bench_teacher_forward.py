#!/usr/bin/env python3
"""PyTorch's time for the teacher forward pass, batch 32, seq 128, CPU, 2 threads: the reference figure for
`cargo bench -p benches --bench teacher_forward`.

Usage: python3 scripts/bench_teacher_forward.py MODEL_DIR [--runs 10]
Prints the median and all timings in milliseconds as one JSON line.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model_dir).eval()
    gen = torch.Generator().manual_seed(42)
    ids = torch.randint(0, model.config.vocab_size, (32, 128), generator=gen)
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for _ in range(2):
            model(input_ids=ids, attention_mask=mask)
        for _ in range(args.runs):
            start = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({
        "op": "teacher_forward/b32xs128",
        "torch": torch.__version__,
        "threads": args.threads,
        "attn_implementation": model.config._attn_implementation,
        "median_ms": round(statistics.median(times), 1),
        "runs_ms": [round(t, 1) for t in times],
    }))


if __name__ == "__main__":
    main()
