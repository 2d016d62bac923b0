"""How far can an MLM head on all-MiniLM-L6-v2 get? (issue 18, item 4: a teacher whose masked-token accuracy on
held-out text is >= 30%). A feasibility probe in PyTorch, before the Rust pipeline is configured for it.

Fits BERT's head (dense + GELU + LayerNorm + decoder tied to the word embeddings, bias started at the log unigram
frequencies, as `pipeline::distill::mlm_head` does) on passages of 40 words cut from text files, with BERT's
masking (15%: 80% [MASK], 10% random, 10% kept), and prints masked-token accuracy on held-out passages (fixed
masks) every `--eval-every` steps as JSON lines. `--unfreeze-last N` also trains the encoder's last N layers
(at `--encoder-lr`).

    python3 scripts/mlm_head_probe.py MODEL_DIR TEXT_DIR_OR_FILE... [--steps 1500] [--unfreeze-last 1]

Reads only local files; writes nothing but its output.
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
from transformers import AutoModel, AutoTokenizer


def passages_of(paths, words=40):
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".txt")]
        else:
            files.append(p)
    if not files:
        sys.exit(f"no .txt files under {paths}")
    out = []
    for f in sorted(files):
        with open(f, encoding="utf-8", errors="replace") as fh:
            ws = fh.read().split()
        out += [" ".join(ws[i:i + words]) for i in range(0, len(ws), words) if len(ws[i:i + words]) >= 4]
    return files, out


def mask(ids, special, vocab, rng, rate=0.15):
    """BERT's masking of one batch of id lists: (inputs, labels with -100 where not predicted)."""
    inputs, labels = [], []
    for seq in ids:
        x, y = list(seq), [-100] * len(seq)
        cand = [i for i, t in enumerate(seq) if t not in special]
        for i in rng.sample(cand, max(1, round(rate * len(cand)))) if cand else []:
            y[i] = seq[i]
            r = rng.random()
            x[i] = MASK_ID if r < 0.8 else (rng.randrange(vocab) if r < 0.9 else seq[i])
        inputs.append(x)
        labels.append(y)
    return inputs, labels


def pad(rows, value):
    n = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (n - len(r)) for r in rows])


class Head(torch.nn.Module):
    def __init__(self, hidden, word_embeddings, log_freq):
        super().__init__()
        self.dense = torch.nn.Linear(hidden, hidden)
        self.norm = torch.nn.LayerNorm(hidden, eps=1e-12)
        self.words = word_embeddings  # tied, not trained
        self.bias = torch.nn.Parameter(log_freq.clone())

    def forward(self, h):
        return self.norm(torch.nn.functional.gelu(self.dense(h))) @ self.words.T + self.bias


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("text", nargs="+")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--encoder-lr", type=float, default=5e-5)
    ap.add_argument("--unfreeze-last", type=int, default=0)
    ap.add_argument("--held-out", type=int, default=512)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    enc = AutoModel.from_pretrained(args.model_dir)
    global MASK_ID
    MASK_ID = tok.mask_token_id
    files, passages = passages_of(args.text)
    rng.shuffle(passages)
    held, train = passages[:args.held_out], passages[args.held_out:]
    ids = lambda ps: tok(ps, truncation=True, max_length=64)["input_ids"]
    train_ids, held_ids = ids(train), ids(held)
    special = set(tok.all_special_ids)
    vocab = enc.config.vocab_size
    counts = torch.ones(vocab)
    for seq in train_ids:
        for t in seq:
            if t not in special:
                counts[t] += 1
    words = enc.embeddings.word_embeddings.weight.detach()
    head = Head(enc.config.hidden_size, words, (counts / counts.sum()).log())
    for p in enc.parameters():
        p.requires_grad = False
    layers = enc.encoder.layer[len(enc.encoder.layer) - args.unfreeze_last:] if args.unfreeze_last else []
    for layer in layers:
        for p in layer.parameters():
            p.requires_grad = True
    groups = [{"params": head.parameters(), "lr": args.lr}]
    if layers:
        groups.append({"params": [p for l in layers for p in l.parameters()], "lr": args.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (args.steps - s) / max(1, args.steps - warm))))
    fixed = [mask(held_ids[i:i + 64], special, vocab, random.Random(0xACC0 + i)) for i in range(0, len(held_ids), 64)]

    def accuracy():
        enc.eval()
        right = total = 0
        with torch.no_grad():
            for x, y in fixed:
                x, y = pad(x, tok.pad_token_id), pad(y, -100)
                h = enc(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).last_hidden_state
                sel = y != -100
                pred = head(h[sel]).argmax(-1)
                right += (pred == y[sel]).sum().item()
                total += sel.sum().item()
        enc.train()
        return right / total

    print(json.dumps({"files": len(files), "train_passages": len(train), "held_out": len(held),
                      "unfreeze_last": args.unfreeze_last, "step": 0, "accuracy": accuracy()}), flush=True)
    start = time.time()
    order = list(range(len(train_ids)))
    cursor = len(order)
    for step in range(1, args.steps + 1):
        if cursor + args.batch > len(order):
            rng.shuffle(order)
            cursor = 0
        batch = [train_ids[i] for i in order[cursor:cursor + args.batch]]
        cursor += args.batch
        x, y = mask(batch, special, vocab, rng)
        x, y = pad(x, tok.pad_token_id), pad(y, -100)
        with torch.set_grad_enabled(bool(layers)):
            h = enc(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).last_hidden_state
        sel = y != -100
        loss = torch.nn.functional.cross_entropy(head(h[sel]), y[sel])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            print(json.dumps({"step": step, "loss": round(loss.item(), 4), "accuracy": accuracy(),
                              "seconds": round(time.time() - start, 1)}), flush=True)
    if not math.isfinite(loss.item()):
        sys.exit("loss is not finite")


if __name__ == "__main__":
    main()
