#!/usr/bin/env python3
"""Checks a directory written by `cargo xtask export --format onnx` in the tools that deploy it: `onnx.checker`
(full check, with shape inference) passes on model.onnx, and ONNX Runtime's outputs on CPU match a reference
written by our own commands, text by text.

The reference is a JSONL file:
- from `cargo xtask predict` (a classifier): one {"label", "probabilities"} object per text; the texts come from
  each line's "text" (`predict --dataset …`) or from --texts (one per line, as given to predict). Lines with a
  "gold" label also give both accuracies.
- from `cargo xtask embed` (an encoder): one JSON array per text, texts from --texts.

Prints one JSON object: the checker's verdict, the number of texts, the largest absolute difference of the
probabilities (or embedding values), how often the labels agree, and with gold labels ONNX Runtime's accuracy
beside ours. Exits 1 when the difference exceeds --tolerance or the agreement is below --min-agreement.

Needs only `onnx`, `onnxruntime`, `tokenizers` and `numpy` (no torch).
"""

import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True, help="the directory `cargo xtask export` wrote")
    ap.add_argument("--reference", required=True, help="JSONL from `cargo xtask predict` or `embed`")
    ap.add_argument("--texts", help="the texts, one per line, when the reference does not carry them")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed absolute difference")
    ap.add_argument("--min-agreement", type=float, default=0.0, help="smallest allowed label agreement (0..1)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime's intra-op threads (0: its default)")
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    from tokenizers import Tokenizer

    path = os.path.join(args.export, "model.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    report = json.load(open(os.path.join(args.export, "export_report.json")))

    with open(args.reference) as f:
        reference = [json.loads(line) for line in f if line.strip()]
    if args.texts:
        with open(args.texts) as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    else:
        texts = [r["text"] for r in reference]
    if len(texts) != len(reference):
        sys.exit(f"{len(texts)} texts but {len(reference)} reference lines")

    tok = Tokenizer.from_file(os.path.join(args.export, "tokenizer.json"))
    tok.enable_truncation(report["max_length"])
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    outputs = []
    for start in range(0, len(texts), args.batch_size):
        enc = tok.encode_batch(texts[start : start + args.batch_size])
        feed = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        }
        outputs.append(session.run(None, feed)[0])
    values = np.concatenate(outputs)

    result = {
        "export": args.export,
        "kind": report["kind"],
        "checker": "passed",
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "texts": len(texts),
    }
    if report["output"] == "logits":
        labels = report["labels"]
        shifted = values - values.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        ours = np.array([[r["probabilities"][l] for l in labels] for r in reference])
        ort_labels = [labels[i] for i in probs.argmax(axis=1)]
        agree = sum(a == r["label"] for a, r in zip(ort_labels, reference)) / len(texts)
        result["max_abs_diff"] = float(np.abs(probs - ours).max())
        result["label_agreement"] = agree
        if all("gold" in r for r in reference):
            gold = [r["gold"] for r in reference]
            result["accuracy_onnxruntime"] = sum(a == g for a, g in zip(ort_labels, gold)) / len(texts)
            result["accuracy_ours"] = sum(r["label"] == g for r, g in zip(reference, gold)) / len(texts)
    else:
        ours = np.array(reference, dtype=np.float64)
        result["max_abs_diff"] = float(np.abs(values - ours).max())
        agree = 1.0
    print(json.dumps(result))
    if result["max_abs_diff"] > args.tolerance:
        sys.exit(f"largest difference {result['max_abs_diff']:.3g} exceeds --tolerance {args.tolerance}")
    if agree < args.min_agreement:
        sys.exit(f"label agreement {agree:.4f} is below --min-agreement {args.min_agreement}")


if __name__ == "__main__":
    main()
