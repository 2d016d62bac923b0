#!/usr/bin/env python3
"""Q-BERT per-layer sensitivity of a saved classifier in PyTorch, with exact Hessian-vector products (double
backward, float64): the independent check of `cargo xtask sensitivity`.

It reads the classifier directory written by `cargo xtask distill` (config.json, model.safetensors with the
`classifier.*` head, classifier.json) and the batches `cargo xtask sensitivity` used (`<report>.batches.json`),
runs power iteration per encoder layer on each batch, and prints (or writes) the per-layer top eigenvalues,
their mean, std and the ranking by mean + std, as JSON. Compare with the Rust report:

  cargo xtask sensitivity --model runs/distill/student --out runs/sens.json
  python3 scripts/reference_sensitivity.py runs/distill/student runs/sens.batches.json --compare runs/sens.json

The forward pass is written out here (post-LN BERT, GELU, mean pooling over the mask, linear head), so it
needs only torch and safetensors, and models without token-type embeddings load too.
"""
import argparse
import json
import math
import time

import torch
from safetensors.torch import load_file


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


class Classifier:
    def __init__(self, model_dir, dtype):
        self.cfg = json.load(open(f"{model_dir}/config.json"))
        raw = load_file(f"{model_dir}/model.safetensors")
        self.p = {}
        for k, v in raw.items():
            k = k[len("bert."):] if k.startswith("bert.") else k
            k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            self.p[k] = v.to(dtype).requires_grad_()

    def layer_params(self, i):
        pre = f"encoder.layer.{i}."
        return [k for k in self.p if k.startswith(pre)]

    def lin(self, x, name):
        return x @ self.p[name + ".weight"].T + self.p[name + ".bias"]

    def loss(self, ids, mask, labels):
        c, p = self.cfg, self.p
        eps = c.get("layer_norm_eps", 1e-12)
        b, s = ids.shape
        x = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][:s]
        if "embeddings.token_type_embeddings.weight" in p:
            x = x + p["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], eps)
        heads = c["num_attention_heads"]
        dh = c["hidden_size"] // heads
        for i in range(c["num_hidden_layers"]):
            pre = f"encoder.layer.{i}."
            q = self.lin(x, pre + "attention.self.query").view(b, s, heads, dh).transpose(1, 2)
            k = self.lin(x, pre + "attention.self.key").view(b, s, heads, dh).transpose(1, 2)
            v = self.lin(x, pre + "attention.self.value").view(b, s, heads, dh).transpose(1, 2)
            scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + (1 - mask[:, None, None, :]) * -1e4
            ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, -1)
            a = layer_norm(self.lin(ctx, pre + "attention.output.dense") + x,
                           p[pre + "attention.output.LayerNorm.weight"], p[pre + "attention.output.LayerNorm.bias"],
                           eps)
            f = torch.nn.functional.gelu(self.lin(a, pre + "intermediate.dense"))
            x = layer_norm(self.lin(f, pre + "output.dense") + a,
                           p[pre + "output.LayerNorm.weight"], p[pre + "output.LayerNorm.bias"], eps)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1)
        return torch.nn.functional.cross_entropy(self.lin(pooled, "classifier"), labels)


def power_iteration(model, names, batch, iters, tol, seed, residual_tol):
    params = [model.p[n] for n in names]
    loss = model.loss(*batch)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    norm = math.sqrt(sum((x * x).sum().item() for x in v))
    v = [x / norm for x in v]
    value, steps = None, 0
    for steps in range(1, iters + 1):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = sum((a * b).sum().item() for a, b in zip(v, hv))
        residual = math.sqrt(sum(((b - new * a) ** 2).sum().item() for a, b in zip(v, hv))) / abs(new)
        done = value is not None and abs(new - value) <= tol * abs(new) and residual <= residual_tol
        value = new
        if done:
            break
        norm = math.sqrt(sum((x * x).sum().item() for x in hv))
        v = [x / norm for x in hv]
    return value, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("batches")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--residual", type=float, default=1e-3,
                    help="also require the eigenvector residual |Hv - lambda v| / |lambda| below this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", help="a report from `cargo xtask sensitivity` (layer blocks)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = Classifier(args.model_dir, torch.float64)
    batches = []
    for b in json.load(open(args.batches)):
        s = max(len(x) for x in b["input_ids"])
        ids = torch.zeros(len(b["input_ids"]), s, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(b["input_ids"]):
            ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        batches.append((ids, mask, torch.tensor(b["labels"])))
    started = time.time()
    layers = {}
    for i in range(model.cfg["num_hidden_layers"]):
        names = model.layer_params(i)
        values = [power_iteration(model, names, batch, args.iters, args.tol, seed=j,
                                  residual_tol=args.residual)[0]
                  for j, batch in enumerate(batches)]
        t = torch.tensor(values)
        mean, std = t.mean().item(), t.std(unbiased=False).item()
        layers[f"layer.{i}"] = {"top_eigenvalues": values, "mean": mean, "std": std, "score": mean + std}
    ranking = sorted(layers, key=lambda k: -layers[k]["score"])
    out = {"layers": layers, "ranking": ranking, "seconds": time.time() - started, "torch": torch.__version__}
    if args.compare:
        rust = {b["name"]: b for b in json.load(open(args.compare))["blocks"]}
        out["rust_ranking"] = [b for b in sorted(rust, key=lambda k: -rust[k]["score"]) if b in layers]
        out["same_ranking"] = out["rust_ranking"] == ranking
        out["max_relative_difference_of_means"] = max(
            abs(rust[k]["mean"] - layers[k]["mean"]) / abs(layers[k]["mean"]) for k in layers if k in rust)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
