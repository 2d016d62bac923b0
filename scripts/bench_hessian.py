#!/usr/bin/env python3
"""PyTorch's time for Q-BERT's inner loop, the reference figure for `cargo bench -p benches --bench hessian`:
a 3-layer MiniLM-shaped student (teacher layers 0, 2, 4) with a 2-class head, batch 16, seq 48, CPU, float32,
2 threads. One exact Hessian-vector product on layer 1's parameters (double backward, including the gradient
pass it needs), and 5 steps of power iteration.

Usage: python3 scripts/bench_hessian.py MODEL_DIR [--runs 10]
Prints the medians and all timings in milliseconds as one JSON line.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # Eager attention: double backward through sdpa is not supported on every build.
    model = AutoModel.from_pretrained(args.model_dir, attn_implementation="eager")
    model.encoder.layer = torch.nn.ModuleList([model.encoder.layer[i] for i in (0, 2, 4)])
    model.config.num_hidden_layers = 3
    model.eval()
    head = torch.nn.Linear(384, 2)
    gen = torch.Generator().manual_seed(42)
    ids = torch.randint(0, model.config.vocab_size, (16, 48), generator=gen)
    mask = torch.ones_like(ids)
    labels = torch.arange(16) % 2
    params = list(model.encoder.layer[1].parameters())

    def loss():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.cross_entropy(head(pooled), labels)

    v = [torch.randn(p.shape, generator=gen) for p in params]

    def hvp(vec):
        grads = torch.autograd.grad(loss(), params, create_graph=True)
        return torch.autograd.grad(grads, params, grad_outputs=vec)

    def power(steps):
        vec = v
        for _ in range(steps):
            hv = hvp(vec)
            norm = torch.sqrt(sum((x * x).sum() for x in hv))
            vec = [x / norm for x in hv]

    def timed(f):
        times = []
        for _ in range(2):
            f()
        for _ in range(args.runs):
            t = time.perf_counter()
            f()
            times.append((time.perf_counter() - t) * 1e3)
        return times

    hvp_times = timed(lambda: hvp(v))
    power_times = timed(lambda: power(5))
    print(json.dumps({
        "torch": torch.__version__, "threads": args.threads,
        "hvp_median_ms": statistics.median(hvp_times), "hvp_ms": hvp_times,
        "power5_median_ms": statistics.median(power_times), "power5_ms": power_times,
    }))


if __name__ == "__main__":
    main()
