#!/usr/bin/env python3
"""PyTorch's side of `cargo xtask bench`: the same workloads as `benches/suite.rs`, under the same names, on the
same CPU and thread count, so that the two can be put side by side.

- teacher_forward/b1s64, teacher_forward/b32s64, teacher_forward/b32s128: the 6-layer teacher's inference
  (sdpa attention).
- tinybert_intermediate_step/b32s64: teacher forward (no grad) + student forward/backward with TinyBERT's
  embedding, attention and hidden MSE (student states through W_e, W_h; layer map 3 -> 6: teacher layers
  2, 4, 6) + AdamW with gradient clipping.
- prediction_step/b32s64: student forward/backward with the soft cross-entropy against the teacher's logits
  (computed once ahead, as the pipeline does) + AdamW.
- hvp/layer_b16s48: one exact Hessian-vector product on student layer 1 by double backward.
- student_forward/b1s64, student_forward/b32s64: the 3-layer student's inference (sdpa attention); and, when
  `onnxruntime` and `onnx` import, the same student exported to ONNX by PyTorch and run by ONNX Runtime in f32
  (backend `ort_fp32`) and after `onnxruntime.quantization.quantize_dynamic` (backend `ort_int8`: int8
  weights, per-tensor by default or per output channel with `--ort-per-channel`, u8 activations quantized per
  tensor at run time), both with `intra_op_num_threads` = `--threads`.

The student is teacher layers 0, 2, 4 with mean pooling and a 2-class head, as in the Rust suite.

Usage: python3 scripts/bench_torch.py MODEL_DIR [--threads 2] [--runs 7] [--budget-s 12]
Prints one JSON object: {"torch": version, "threads": n, "measurements": [{op, size, backend, median_ms,
times_ms, tokens}, ...]}.
"""
import argparse
import copy
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import AutoModel


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


def batch(gen, vocab, b, s):
    ids = torch.randint(0, vocab, (b, s), generator=gen)
    return ids, torch.ones_like(ids)


class Classifier(torch.nn.Module):
    """Encoder, mean pooling over real tokens, linear head: pipeline::classifier::SequenceClassifier."""

    def __init__(self, encoder, labels=2):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, labels)

    def forward(self, ids, mask, **kw):
        out = self.encoder(input_ids=ids, attention_mask=mask, **kw)
        h = out.last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.head(pooled), out


def student_of(teacher, attn):
    student = copy.deepcopy(teacher)
    student.encoder.layer = torch.nn.ModuleList([student.encoder.layer[i] for i in (0, 2, 4)])
    student.config.num_hidden_layers = 3
    student.config._attn_implementation = attn
    return student


def onnx_runtime(student, vocab, args):
    """The student's last hidden states on ONNX Runtime, f32 and dynamically quantized to int8: {backend:
    {(b, s): times}}; {} when onnxruntime or onnx does not import."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        print(f"onnxruntime: skipped ({e}; pip install onnx onnxruntime)", file=sys.stderr)
        return {}
    import os
    import tempfile

    class Hidden(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    eager = copy.deepcopy(student)
    eager.config._attn_implementation = "eager"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = os.path.join(tmp, "student.onnx")
        int8 = os.path.join(tmp, "student.int8.onnx")
        ids = torch.randint(0, vocab, (2, 16))
        torch.onnx.export(Hidden(eager).eval(), (ids, torch.ones_like(ids)), fp32, dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "last_hidden_state": {0: "batch", 1: "seq"}}, opset_version=17)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=args.ort_per_channel)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        gen = torch.Generator().manual_seed(43)
        for backend, path in (("ort_fp32", fp32), ("ort_int8", int8)):
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            results[backend] = {}
            for b, s in ((1, 64), (32, 64)):
                ids, mask = batch(gen, vocab, b, s)
                feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
                results[backend][(b, s)] = timed(lambda: session.run(None, feed), args.runs, args.budget_s)
    print(f"onnxruntime {ort.__version__}", file=sys.stderr)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--budget-s", type=float, default=12.0)
    ap.add_argument("--only", action="append", default=[], help="run only this workload (repeatable)")
    ap.add_argument("--ort-per-channel", action="store_true", help="quantize_dynamic(per_channel=True)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(42)
    out = []

    def wants(op):
        return not args.only or op in args.only

    def record(op, size, times, tokens, backend="torch"):
        out.append({"op": op, "size": size, "backend": backend, "median_ms": statistics.median(times),
                    "times_ms": times, "tokens": tokens})
        print(f"{backend}: {op}/{size} {statistics.median(times):.1f} ms", file=sys.stderr)

    teacher_sdpa = AutoModel.from_pretrained(args.model_dir, attn_implementation="sdpa").eval()
    vocab = teacher_sdpa.config.vocab_size
    hidden = teacher_sdpa.config.hidden_size
    for b, s in ((1, 64), (32, 64), (32, 128)) if wants("teacher_forward") else ():
        ids, mask = batch(gen, vocab, b, s)
        with torch.inference_mode():
            times = timed(lambda: teacher_sdpa(input_ids=ids, attention_mask=mask), args.runs, args.budget_s)
        record("teacher_forward", f"b{b}s{s}", times, b * s)

    # Task distillation steps. The teacher and student return attention probabilities: eager attention.
    teacher = Classifier(AutoModel.from_pretrained(args.model_dir, attn_implementation="eager")).eval()
    b, s = 32, 64
    ids, mask = batch(gen, vocab, b, s)
    labels = torch.arange(b) % 2
    layer_map = [(0, 1), (1, 3), (2, 5)]  # student layer -> teacher layer (0-based), LayerMap::spread(3, 6)

    def step_fn(kind):
        student = Classifier(student_of(teacher.encoder, "eager"))
        student.head.load_state_dict(teacher.head.state_dict())
        w_e = torch.nn.Linear(hidden, hidden)
        w_h = torch.nn.Linear(hidden, hidden)
        params = list(student.parameters()) + ([*w_e.parameters(), *w_h.parameters()] if kind == "intermediate" else [])
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)
        student.train()

        with torch.no_grad():
            cached_logits, _ = teacher(ids, mask)

        def step():
            if kind == "intermediate":
                with torch.no_grad():
                    _, t_out = teacher(ids, mask, output_hidden_states=True, output_attentions=True)
                _, s_out = student(ids, mask, output_hidden_states=True, output_attentions=True)
                loss = F.mse_loss(w_e(s_out.hidden_states[0]), t_out.hidden_states[0])
                for si, ti in layer_map:
                    loss = loss + F.mse_loss(s_out.attentions[si], t_out.attentions[ti])
                    loss = loss + F.mse_loss(w_h(s_out.hidden_states[si + 1]), t_out.hidden_states[ti + 1])
            else:
                s_logits, _ = student(ids, mask)
                loss = -(F.softmax(cached_logits, -1) * F.log_softmax(s_logits, -1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        return step

    if wants("tinybert_intermediate_step"):
        record("tinybert_intermediate_step", f"b{b}s{s}", timed(step_fn("intermediate"), args.runs, args.budget_s),
               b * s)
    if wants("prediction_step"):
        record("prediction_step", f"b{b}s{s}", timed(step_fn("prediction"), args.runs, args.budget_s), b * s)

    # Q-BERT's inner loop: an exact HVP by double backward (eager attention: double backward through sdpa is not
    # supported on every build).
    b, s = 16, 48
    ids, mask = batch(gen, vocab, b, s)
    labels = torch.arange(b) % 2
    hvp_model = Classifier(student_of(teacher.encoder, "eager")).eval()
    params = list(hvp_model.encoder.encoder.layer[1].parameters())
    v = [torch.randn(p.shape, generator=gen) for p in params]

    def hvp():
        logits, _ = hvp_model(ids, mask)
        grads = torch.autograd.grad(F.cross_entropy(logits, labels), params, create_graph=True)
        return torch.autograd.grad(grads, params, grad_outputs=v)

    if wants("hvp"):
        record("hvp", f"layer_b{b}s{s}", timed(hvp, args.runs, args.budget_s), b * s)

    student = student_of(teacher_sdpa, "sdpa").eval()
    for b, s in ((1, 64), (32, 64)) if wants("student_forward") else ():
        ids, mask = batch(gen, vocab, b, s)
        with torch.inference_mode():
            times = timed(lambda: student(input_ids=ids, attention_mask=mask), args.runs, args.budget_s)
        record("student_forward", f"b{b}s{s}", times, b * s)
    if wants("student_forward"):
        for backend, times_by_size in onnx_runtime(student, vocab, args).items():
            for (b, s), times in times_by_size.items():
                record("student_forward", f"b{b}s{s}", times, b * s, backend)

    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "measurements": out}))


if __name__ == "__main__":
    main()
