#!/usr/bin/env python3
"""Shows whether ONNX Runtime's CPU integer products are exact on this CPU: two inputs whose u8 x i8 products
sum past the i16 range (255 * 127 * 2 = 64770 > 32767), through `MatMulInteger` (our integer ONNX export's
operator) and `com.microsoft.DynamicQuantizeMatMul` (what `onnxruntime.quantization.quantize_dynamic` emits).
Without VNNI, ONNX Runtime's kernels multiply u8 x i8 pairs with `vpmaddubsw`, whose i16 sums saturate; with
VNNI (`vpdpbusd`) the sums are exact. Our integer kernels are exact on every CPU (crates/quant/src/kernels).

    python3 scripts/ort_saturation.py [--model M.onnx --tokenizer tokenizer.json --texts T.txt] [OUT]

OUT: a text record (default: print only). With --model (an integer export of `cargo xtask export`, inputs
`input_ids` and `attention_mask`), also runs that model on the texts (one per line) twice: as exported, and with
every `MatMulInteger` replaced by int32 casts and an int32 `MatMul` (exact sums), and reports how far the outputs
are apart: the share of the model's outputs that ONNX Runtime's saturation moves on real inputs.

Needs `onnx`, `onnxruntime` and `numpy` (and `tokenizers` with --model).
"""

import datetime
import json
import os
import platform
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def session(nodes, inputs, outputs, inits, opsets):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def matmul_integer(k):
    """u8 codes 255 against i8 weights 127 over k inputs: exact sum 255 * 127 * k."""
    s = session(
        [helper.make_node("MatMulInteger", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        [helper.make_tensor("w", TensorProto.INT8, [k, 1], [127] * k)],
        [("", 13)],
    )
    got = int(s.run(None, {"x": np.full((1, k), 255, np.uint8)})[0][0, 0])
    return 255 * 127 * k, got


def dynamic_quantize_matmul(k):
    """Float inputs 1.0 (quantized per tensor to u8 255, scale 1/255) against i8 weights 127 of scale 1: exact
    product 127 * k."""
    s = session(
        [helper.make_node("DynamicQuantizeMatMul", ["a", "b", "bs", "bz"], ["y"], domain="com.microsoft")],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [
            helper.make_tensor("b", TensorProto.INT8, [k, 1], [127] * k),
            helper.make_tensor("bs", TensorProto.FLOAT, [1], [1.0]),
            helper.make_tensor("bz", TensorProto.INT8, [1], [0]),
        ],
        [("", 13), ("com.microsoft", 1)],
    )
    got = float(s.run(None, {"a": np.ones((1, k), np.float32)})[0][0, 0])
    return 127.0 * k, got


def exact_integer_products(model):
    """`model` with each MatMulInteger computed as (Cast(a) − a_zero) · (Cast(b) − b_zero) in int32 MatMul."""
    graph = model.graph
    nodes = []
    for n in graph.node:
        if n.op_type != "MatMulInteger":
            nodes.append(n)
            continue
        operands = []
        for side, (value, zero) in enumerate([(n.input[0], n.input[2] if len(n.input) > 2 else ""),
                                              (n.input[1], n.input[3] if len(n.input) > 3 else "")]):
            cast = f"{n.name}_exact_{side}"
            nodes.append(helper.make_node("Cast", [value], [cast], to=TensorProto.INT32))
            if zero:
                nodes.append(helper.make_node("Cast", [zero], [cast + "_zero"], to=TensorProto.INT32))
                nodes.append(helper.make_node("Sub", [cast, cast + "_zero"], [cast + "_centred"]))
                cast += "_centred"
            operands.append(cast)
        nodes.append(helper.make_node("MatMul", operands, list(n.output), name=n.name + "_exact"))
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def model_drift(path, tokenizer_path, texts_path, max_length=128, limit=256, batch=32):
    """Runs the model as exported and with exact integer products on up to `limit` texts; returns
    (texts, MatMulInteger nodes, max |difference|, max |output|, share of outputs that moved by > 1e-4 of the
    output range, mean cosine between the two outputs per text)."""
    from tokenizers import Tokenizer

    model = onnx.load(path)
    count = sum(n.op_type == "MatMulInteger" for n in model.graph.node)
    saturating = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    exact = ort.InferenceSession(
        exact_integer_products(model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    tok = Tokenizer.from_file(tokenizer_path)
    tok.enable_truncation(max_length)
    with open(texts_path, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()][:limit]
    diffs, scale, moved, total, cosines = 0.0, 0.0, 0, 0, []
    for i in range(0, len(texts), batch):
        enc = tok.encode_batch(texts[i : i + batch])
        width = max(len(e.ids) for e in enc)
        ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in enc], np.int64)
        mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc], np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        got = saturating.run(None, feed)[0].astype(np.float64)
        want = exact.run(None, feed)[0].astype(np.float64)
        d = np.abs(got - want)
        diffs, scale = max(diffs, float(d.max())), max(scale, float(np.abs(want).max()))
        moved += int((d > 1e-4 * (want.max() - want.min())).sum())
        total += d.size
        g, w = got.reshape(len(enc), -1), want.reshape(len(enc), -1)
        cosines += list((g * w).sum(1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1)))
    return len(texts), count, diffs, scale, moved / max(total, 1), float(np.min(cosines))


def cpu():
    name, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni"]
    return f"{name or 'unknown'}: {' '.join(f for f in wanted if f in flags)}"


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="an integer ONNX export (MatMulInteger) to run as exported and exactly")
    ap.add_argument("--tokenizer", help="tokenizer.json for --model")
    ap.add_argument("--texts", help="texts for --model, one per line")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per text at most (default 128)")
    ap.add_argument("--json", action="store_true", help="with --model: print only its comparison, as JSON")
    ap.add_argument("out", nargs="?", help="write the record here too")
    args = ap.parse_args()
    if args.model and not (args.tokenizer and args.texts):
        ap.error("--model needs --tokenizer and --texts")
    out = args.out
    if args.json:
        if not args.model:
            ap.error("--json needs --model")
        n, count, diff, scale, moved, cosine = model_drift(args.model, args.tokenizer, args.texts, args.max_length)
        print(json.dumps({"texts": n, "matmul_integer": count, "max_abs_diff": diff, "max_abs_output": scale,
                          "moved": moved, "min_cosine": cosine}))
        return
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    lines = [
        "# ONNX Runtime's integer products on this CPU: exact or saturated",
        f"# command: python3 scripts/ort_saturation.py {' '.join(sys.argv[1:])}".rstrip(),
        f"# commit: {commit}",
        f"# cpu: {cpu()}",
        f"# date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"# onnxruntime {ort.__version__}, onnx {onnx.__version__}",
        "",
        "| operator | inputs | exact | ONNX Runtime | exact? |",
        "|---|---|---|---|---|",
    ]
    for k in (2, 64, 384):
        want, got = matmul_integer(k)
        lines.append(f"| MatMulInteger (u8 255 · i8 127) | {k} | {want} | {got} | {'yes' if got == want else 'no'} |")
    for k in (2, 64, 384):
        want, got = dynamic_quantize_matmul(k)
        ok = abs(got - want) <= 1e-3 * want
        lines.append(f"| DynamicQuantizeMatMul (1.0 · 127) | {k} | {want:g} | {got:g} | {'yes' if ok else 'no'} |")
    if args.model:
        n, count, diff, scale, moved, cosine = model_drift(args.model, args.tokenizer, args.texts, args.max_length)
        lines += [
            "",
            f"{args.model}: {count} MatMulInteger nodes, {n} texts, as exported against exact integer products:",
            f"largest |difference| {diff:.4g} (largest |output| {scale:.4g}); outputs moved by more than 1e-4 of "
            f"the output range: {moved:.2%}; lowest cosine between a text's two outputs: {cosine:.6f}",
        ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out:
        with open(out + ".tmp", "w") as f:
            f.write(text)

        os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
