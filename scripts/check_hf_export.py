"""Runs a classifier directory written by bert-compress in transformers' text-classification pipeline and
compares its labels and probabilities with `cargo xtask predict`'s (JSON lines read from a file).

    cargo xtask predict --model runs/distill/student < texts.txt > ours.jsonl
    .venv/bin/python scripts/check_hf_export.py runs/distill/student texts.txt ours.jsonl

A `cls` directory (BertForSequenceClassification) must load as it is and agree within 1e-4. A `mean`
directory must be refused without `trust_remote_code=True` (never opened with a random head) and agree with it.
Exits non-zero on any disagreement.
"""

import json
import sys

from transformers import pipeline


def run(model_dir, texts, **kwargs):
    clf = pipeline("text-classification", model=model_dir, tokenizer=model_dir, top_k=None, **kwargs)
    return clf(texts, truncation=True)


def main(model_dir, texts_path, ours_path):
    texts = [l.rstrip("\n") for l in open(texts_path) if l.strip()]
    ours = [json.loads(l) for l in open(ours_path) if l.strip()]
    assert len(ours) == len(texts), f"{len(ours)} predictions for {len(texts)} texts"
    config = json.load(open(f"{model_dir}/config.json"))
    kwargs = {}
    if config.get("model_type") != "bert":
        try:
            run(model_dir, texts[:1])
            print("FAIL: transformers opened a mean-pooling directory without trust_remote_code")
            return 1
        except Exception as e:  # transformers refuses: what we want
            print(f"refused without trust_remote_code: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
        kwargs["trust_remote_code"] = True
    theirs = run(model_dir, texts, **kwargs)
    worst = 0.0
    same = 0
    for text, o, t in zip(texts, ours, theirs):
        probs = {d["label"]: d["score"] for d in t}
        top = max(probs, key=probs.get)
        diff = max(abs(probs[k] - v) for k, v in o["probabilities"].items())
        worst = max(worst, diff)
        same += top == o["label"]
        print(f"{text[:50]!r:54} ours {o['label']} {max(o['probabilities'].values()):.6f}  "
              f"transformers {top} {probs[top]:.6f}  |diff| {diff:.2e}")
    print(f"{same}/{len(texts)} labels agree; largest probability difference {worst:.2e}")
    return 0 if same == len(texts) and worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
