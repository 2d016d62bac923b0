#!/usr/bin/env python3
"""Writes the PyTorch reference for every loss of kd-losses, and the gradients of the cosine, Hinton and
attention losses, on fixed random inputs with padding.

Usage: python3 scripts/reference_losses.py crates/kd-losses/tests/data/loss_reference.json
Needs torch. The inputs are stored in the JSON too, so the Rust test feeds exactly the same values.

Each loss is written the way its paper's reference code computes it:
- Hinton (DistilBERT): nn.KLDivLoss(reduction="batchmean")(log_softmax(s/T), softmax(t/T)) * T**2, on the rows
  selected by the MLM mask for token logits.
- Soft cross-entropy (TinyBERT prediction layer): -(softmax(t/T) * log_softmax(s/T)).sum(-1).mean(). TinyBERT's
  own code takes .mean() over classes too, a constant factor 1/num_classes that we do not copy.
- MLM: nn.CrossEntropyLoss(ignore_index=-100).
- Cosine (DistilBERT): nn.CosineEmbeddingLoss(reduction="mean") on the non-padding tokens, target 1.
- Hidden/embedding MSE (TinyBERT): nn.MSELoss()(s @ W.T + b, t), over all positions or non-padding ones.
- Attention MSE (TinyBERT): scores <= -1e2 replaced by 0, then MSE; masked variant over non-padding query-key
  pairs.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
T = 2.0
B, S, H, HT, HEADS, V, C = 2, 5, 8, 12, 2, 7, 3
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def flat(t):
    return [float(f"{x:.9g}") for x in t.detach().flatten().tolist()]


def main():
    out_path = sys.argv[1]
    doc = {"generator": "scripts/reference_losses.py", "torch": torch.__version__, "temperature": T,
           "dims": {"batch": B, "seq": S, "hidden": H, "teacher_hidden": HT, "heads": HEADS, "vocab": V, "classes": C},
           "attention_mask": MASK.flatten().tolist()}
    real = MASK.bool()

    # Hinton on sequence logits [4, C].
    s_rows = torch.randn(4, C, requires_grad=True)
    t_rows = torch.randn(4, C)
    hinton = F.kl_div(F.log_softmax(s_rows / T, -1), F.softmax(t_rows / T, -1), reduction="batchmean") * T**2
    hinton.backward()
    doc["rows"] = {"student": flat(s_rows), "teacher": flat(t_rows)}
    doc["hinton_rows"] = {"loss": hinton.item(), "grad_student": flat(s_rows.grad)}
    soft_ce = -(F.softmax(t_rows / T, -1) * F.log_softmax(s_rows / T, -1)).sum(-1).mean()
    doc["soft_ce_rows"] = {"loss": soft_ce.item()}
    class_labels = torch.tensor([0, 2, 1, 2])
    doc["class_labels"] = class_labels.tolist()
    doc["class_ce"] = {"loss": F.cross_entropy(s_rows, class_labels).item()}

    # Token logits [B, S, V] with MLM labels.
    s_tok = torch.randn(B, S, V, requires_grad=True)
    t_tok = torch.randn(B, S, V)
    labels = torch.tensor([[-100, 3, -100, 6, -100], [1, -100, 4, -100, -100]])
    sel = labels != -100
    hinton_m = F.kl_div(F.log_softmax(s_tok[sel] / T, -1), F.softmax(t_tok[sel] / T, -1), reduction="batchmean") * T**2
    hinton_m.backward()
    doc["tokens"] = {"student": flat(s_tok), "teacher": flat(t_tok), "mlm_labels": labels.flatten().tolist()}
    doc["hinton_masked"] = {"loss": hinton_m.item(), "grad_student": flat(s_tok.grad)}
    doc["soft_ce_masked"] = {"loss": (-(F.softmax(t_tok[sel] / T, -1) * F.log_softmax(s_tok[sel] / T, -1)).sum(-1).mean()).item()}
    doc["mlm_ce"] = {"loss": F.cross_entropy(s_tok.reshape(-1, V), labels.flatten(), ignore_index=-100).item()}

    # Hidden states [B, S, H]: cosine.
    s_hid = torch.randn(B, S, H, requires_grad=True)
    t_hid = torch.randn(B, S, H)
    cos = torch.nn.CosineEmbeddingLoss(reduction="mean")(s_hid[real], t_hid[real], torch.ones(int(real.sum())))
    cos.backward()
    doc["hidden"] = {"student": flat(s_hid), "teacher": flat(t_hid)}
    doc["cosine"] = {"loss": cos.item(), "grad_student": flat(s_hid.grad)}

    # Projected MSE H -> HT with a fixed W, b.
    w = torch.randn(HT, H) * 0.3
    b = torch.randn(HT) * 0.1
    t_wide = torch.randn(B, S, HT)
    proj = s_hid.detach() @ w.T + b
    doc["projection"] = {"weight_out_in": flat(w), "bias": flat(b), "teacher": flat(t_wide)}
    doc["projected_mse"] = {"loss": F.mse_loss(proj, t_wide).item()}
    doc["projected_mse_masked"] = {"loss": F.mse_loss(proj[real], t_wide[real]).item()}

    # Attention [B, HEADS, S, S]: scores with padding keys at -1e4, probs = softmax.
    key_pad = (1 - MASK).view(B, 1, 1, S) * -1e4
    s_scores = torch.randn(B, HEADS, S, S) * 2 + key_pad
    t_scores = torch.randn(B, HEADS, S, S) * 2 + key_pad
    s_probs = F.softmax(s_scores, -1).detach().requires_grad_(True)
    t_probs = F.softmax(t_scores, -1)
    pair = (MASK.view(B, 1, S, 1) * MASK.view(B, 1, 1, S)).expand(B, HEADS, S, S).bool()
    att_masked = F.mse_loss(s_probs[pair], t_probs[pair])
    att_masked.backward()
    zero = lambda x: torch.where(x <= -1e2, torch.zeros_like(x), x)
    doc["attention"] = {"student_scores": flat(s_scores), "teacher_scores": flat(t_scores),
                        "student_probs": flat(s_probs), "teacher_probs": flat(t_probs)}
    doc["attention_probs_masked"] = {"loss": att_masked.item(), "grad_student": flat(s_probs.grad)}
    doc["attention_probs"] = {"loss": F.mse_loss(s_probs, t_probs).item()}
    doc["attention_scores_tinybert"] = {"loss": F.mse_loss(zero(s_scores), zero(t_scores)).item()}
    # TinyBERT's default (issue 18): scores with padding zeroed, the MSE over real query-key pairs only, and its
    # gradient with respect to the student's scores.
    s_scores_grad = s_scores.detach().clone().requires_grad_(True)
    att_scores_masked = F.mse_loss(zero(s_scores_grad)[pair], zero(t_scores)[pair])
    att_scores_masked.backward()
    doc["attention_scores_masked"] = {"loss": att_scores_masked.item(), "grad_student": flat(s_scores_grad.grad)}

    with open(out_path, "w") as f:
        json.dump(doc, f, indent=0)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
