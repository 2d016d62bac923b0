#!/usr/bin/env python3
"""Exact Hessians by double backward, for `crates/hessian/tests/exact_reference.rs`.

Two small models with a mean cross-entropy loss on a fixed batch:
- `mlp`: 5 -> 7 (tanh) -> 3 classes, 10 examples. Blocks `l1` (weight, bias) and `l2`.
- `tiny_bert`: a 1-layer, 2-head BERT (hidden 8, FFN 16, vocab 30) with mean pooling and a 2-class linear
  head, 6 sequences with padding. Blocks: the whole layer, each weight matrix with its bias, each head
  (its columns of Q, K, V with their biases and its rows of O), and the classifier head.

For each block the script builds the full Hessian of that block (one double-backward pass per coordinate)
and records its eigenvalue of largest magnitude, the next one (to show the gap power iteration has to
resolve) and its trace. Weights are written in Hugging Face names and PyTorch layout ([out, in] for Linear);
the Rust test transposes them into Burn's layout. Eigenvalues and traces do not depend on the order of a
block's coordinates, so the two sides need only agree on which parameters a block holds.

Usage: python3 scripts/reference_hessian.py > crates/hessian/tests/data/hessian_reference.json
"""
import json
import math

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)


def block_hessian(loss_fn, params):
    """The Hessian of loss_fn() with respect to the concatenation of params (in order)."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    rows = []
    for i in range(flat.numel()):
        row = torch.autograd.grad(flat[i], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([
            (r if r is not None else torch.zeros_like(p)).reshape(-1) for r, p in zip(row, params)
        ]))
    h = torch.stack(rows)
    return 0.5 * (h + h.T)


def summary(h, mask=None):
    """Top-|.| eigenvalue, the runner-up and the trace of h restricted to the coordinates in mask."""
    if mask is not None:
        idx = torch.nonzero(mask).reshape(-1)
        h = h[idx][:, idx]
    ev = torch.linalg.eigvalsh(h)
    order = torch.argsort(ev.abs(), descending=True)
    return {
        "dim": h.shape[0],
        "top_eigenvalue": ev[order[0]].item(),
        "second_eigenvalue": ev[order[1]].item(),
        "trace": torch.trace(h).item(),
    }


def tensors(named):
    return {k: {"shape": list(v.shape), "values": v.detach().reshape(-1).tolist()} for k, v in named.items()}


def mlp_case():
    x = torch.randn(10, 5)
    y = torch.randint(0, 3, (10,))
    w1 = (torch.randn(7, 5) * 0.6).requires_grad_()
    b1 = (torch.randn(7) * 0.1).requires_grad_()
    w2 = (torch.randn(3, 7) * 0.6).requires_grad_()
    b2 = (torch.randn(3) * 0.1).requires_grad_()

    def loss():
        h = torch.tanh(x @ w1.T + b1)
        return torch.nn.functional.cross_entropy(h @ w2.T + b2, y)

    return {
        "inputs": x.reshape(-1).tolist(),
        "input_shape": list(x.shape),
        "labels": y.tolist(),
        "loss": loss().item(),
        "weights": tensors({"l1.weight": w1, "l1.bias": b1, "l2.weight": w2, "l2.bias": b2}),
        "blocks": {
            "l1": summary(block_hessian(loss, [w1, b1])),
            "l2": summary(block_hessian(loss, [w2, b2])),
        },
    }


def layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


def tiny_bert_case():
    hidden, heads, ffn, vocab, max_pos, labels = 8, 2, 16, 30, 16, 2
    dh = hidden // heads
    p = {}

    def param(name, *shape, scale=0.3):
        p[name] = (torch.randn(*shape) * scale).requires_grad_()

    param("embeddings.word_embeddings.weight", vocab, hidden)
    param("embeddings.position_embeddings.weight", max_pos, hidden)
    p["embeddings.LayerNorm.weight"] = (1 + 0.1 * torch.randn(hidden)).requires_grad_()
    param("embeddings.LayerNorm.bias", hidden, scale=0.1)
    pre = "encoder.layer.0."
    for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
        param(pre + m + ".weight", hidden, hidden, scale=0.5)
        param(pre + m + ".bias", hidden, scale=0.1)
    p[pre + "attention.output.LayerNorm.weight"] = (1 + 0.1 * torch.randn(hidden)).requires_grad_()
    param(pre + "attention.output.LayerNorm.bias", hidden, scale=0.1)
    param(pre + "intermediate.dense.weight", ffn, hidden, scale=0.4)
    param(pre + "intermediate.dense.bias", ffn, scale=0.1)
    param(pre + "output.dense.weight", hidden, ffn, scale=0.3)
    param(pre + "output.dense.bias", hidden, scale=0.1)
    p[pre + "output.LayerNorm.weight"] = (1 + 0.1 * torch.randn(hidden)).requires_grad_()
    param(pre + "output.LayerNorm.bias", hidden, scale=0.1)
    param("classifier.weight", labels, hidden, scale=0.5)
    param("classifier.bias", labels, scale=0.1)

    lengths = [7, 5, 7, 3, 6, 7]
    ids = torch.randint(1, vocab, (len(lengths), 7))
    mask = torch.zeros(len(lengths), 7, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0
    y = torch.tensor([0, 1, 1, 0, 1, 0])

    def lin(x, name):
        return x @ p[name + ".weight"].T + p[name + ".bias"]

    def loss():
        b, s = ids.shape
        x = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][:s]
        x = layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"])
        q = lin(x, pre + "attention.self.query").view(b, s, heads, dh).transpose(1, 2)
        k = lin(x, pre + "attention.self.key").view(b, s, heads, dh).transpose(1, 2)
        v = lin(x, pre + "attention.self.value").view(b, s, heads, dh).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + (1 - mask[:, None, None, :]) * -1e4
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, hidden)
        a = layer_norm(lin(ctx, pre + "attention.output.dense") + x,
                       p[pre + "attention.output.LayerNorm.weight"], p[pre + "attention.output.LayerNorm.bias"])
        f = torch.nn.functional.gelu(lin(a, pre + "intermediate.dense"))
        out = layer_norm(lin(f, pre + "output.dense") + a,
                         p[pre + "output.LayerNorm.weight"], p[pre + "output.LayerNorm.bias"])
        m = mask[..., None].to(out.dtype)
        pooled = (out * m).sum(1) / m.sum(1)
        return torch.nn.functional.cross_entropy(lin(pooled, "classifier"), y)

    layer_names = [n for n in p if n.startswith(pre)]
    layer_params = [p[n] for n in layer_names]
    h_layer = block_hessian(loss, layer_params)

    # Coordinates of each sub-block inside the layer block (PyTorch layout: weight [out, in]).
    offsets, at = {}, 0
    for n in layer_names:
        offsets[n] = (at, p[n].numel())
        at += p[n].numel()

    def coords(selection):
        m = torch.zeros(at, dtype=torch.bool)
        for name, pick in selection:
            start, size = offsets[name]
            sub = torch.zeros(p[name].shape, dtype=torch.bool)
            if pick is None:
                sub[...] = True
            else:
                sub[pick] = True
            m[start:start + size] = sub.reshape(-1)
        return m

    blocks = {"layer.0": summary(h_layer)}
    for short, module in [("query", "attention.self.query"), ("key", "attention.self.key"),
                          ("value", "attention.self.value"), ("attention_output", "attention.output.dense"),
                          ("ffn_in", "intermediate.dense"), ("ffn_out", "output.dense")]:
        blocks["layer.0." + short] = summary(
            h_layer, coords([(pre + module + ".weight", None), (pre + module + ".bias", None)]))
    for h in range(heads):
        rows = slice(h * dh, (h + 1) * dh)
        sel = []
        for m in ["query", "key", "value"]:
            # Head h's outputs: rows of the PyTorch weight (columns in Burn's layout) and its bias range.
            sel.append((pre + "attention.self." + m + ".weight", (rows, slice(None))))
            sel.append((pre + "attention.self." + m + ".bias", rows))
        # Head h's inputs to O: columns of the PyTorch weight (rows in Burn's layout).
        sel.append((pre + "attention.output.dense.weight", (slice(None), rows)))
        blocks[f"layer.0.head.{h}"] = summary(h_layer, coords(sel))
    blocks["classifier"] = summary(block_hessian(loss, [p["classifier.weight"], p["classifier.bias"]]))

    return {
        "config": {"hidden_size": hidden, "num_attention_heads": heads, "intermediate_size": ffn,
                   "vocab_size": vocab, "max_position_embeddings": max_pos, "num_hidden_layers": 1,
                   "num_labels": labels},
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "labels": y.tolist(),
        "loss": loss().item(),
        "weights": tensors(p),
        "blocks": blocks,
    }


def main():
    out = {
        "generated_by": "scripts/reference_hessian.py",
        "torch": torch.__version__,
        "mlp": mlp_case(),
        "tiny_bert": tiny_bert_case(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
