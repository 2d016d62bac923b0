"""Writes tiny BERT checkpoints in every layout Hugging Face `transformers` saves, with the outputs transformers
gives on fixed inputs, as fixtures for `crates/student-arch/tests/hf_layouts.rs` (which needs neither torch nor
transformers to run).

    python -m venv .venv && .venv/bin/pip install torch==2.9.0 transformers==4.57.1
    .venv/bin/python scripts/hf_layouts.py crates/student-arch/tests/data/hf

Layouts: `model.safetensors` (BertModel), sharded safetensors (BertModel, `model.safetensors.index.json`),
`pytorch_model.bin` of a BertForMaskedLM with the `position_ids` / `token_type_ids` buffers that older
transformers versions saved, BertForPreTraining (MLM + next-sentence heads), BertForSequenceClassification
(pooler + classifier, `id2label`), a bare encoder saved without the `bert.` prefix, and a DistilBERT (another
`model_type`, to be refused by name). Every model has random weights from a fixed seed.
"""

import json
import os
import sys

import torch
import transformers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
)

INPUT_IDS = [[2, 5, 9, 13, 3], [2, 7, 11, 3, 0]]
LENGTHS = [5, 4]


def config(**extra):
    return BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_act="gelu",
        **extra,
    )


def inputs():
    ids = torch.tensor(INPUT_IDS)
    mask = torch.tensor([[1] * n + [0] * (ids.shape[1] - n) for n in LENGTHS])
    return ids, mask


def real(t):
    """The values at real (non-padding) tokens, row by row, flattened."""
    return [v for b, n in enumerate(LENGTHS) for row in t[b, :n].tolist() for v in row]


def outputs(model, encoder):
    ids, mask = inputs()
    with torch.no_grad():
        enc = encoder(input_ids=ids, attention_mask=mask)
        out = {"last_hidden_state": real(enc.last_hidden_state)}
        if enc.pooler_output is not None:
            out["pooler_output"] = enc.pooler_output.flatten().tolist()
        if model is not encoder:
            head = model(input_ids=ids, attention_mask=mask)
            if hasattr(head, "prediction_logits"):
                out["mlm_logits"] = real(head.prediction_logits)
            elif isinstance(model, BertForMaskedLM):
                out["mlm_logits"] = real(head.logits)
            else:
                out["logits"] = head.logits.flatten().tolist()
    return out


def main(root):
    os.makedirs(root, exist_ok=True)
    expected = {
        "input_ids": INPUT_IDS,
        "lengths": LENGTHS,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "models": {},
    }

    def save(name, model, encoder, **kwargs):
        d = os.path.join(root, name)
        model.save_pretrained(d, **kwargs)
        expected["models"][name] = outputs(model, encoder)
        return d

    torch.manual_seed(1)
    m = BertModel(config()).eval()
    save("bert-model-safetensors", m, m)

    torch.manual_seed(2)
    m = BertModel(config()).eval()
    save("bert-model-sharded", m, m, max_shard_size="12KB")

    torch.manual_seed(3)
    m = BertForMaskedLM(config()).eval()
    d = save("bert-mlm-bin-buffers", m, m.bert, safe_serialization=False)
    # Older transformers kept these int64 buffers in the state dict; newer ones do not save them.
    state = torch.load(os.path.join(d, "pytorch_model.bin"), weights_only=True)
    state["bert.embeddings.position_ids"] = torch.arange(32).unsqueeze(0)
    state["bert.embeddings.token_type_ids"] = torch.zeros(1, 32, dtype=torch.long)
    torch.save(state, os.path.join(d, "pytorch_model.bin"))

    torch.manual_seed(4)
    m = BertForPreTraining(config()).eval()
    save("bert-pretraining-safetensors", m, m.bert)

    torch.manual_seed(5)
    labels = ["negative", "neutral", "positive"]
    c = config(
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
    )
    m = BertForSequenceClassification(c).eval()
    save("bert-classifier-safetensors", m, m.bert)

    # A bare encoder whose keys carry no `bert.` prefix, with a pooler, in pytorch_model.bin.
    torch.manual_seed(6)
    m = BertModel(config()).eval()
    save("bert-model-bin", m, m, safe_serialization=False)

    torch.manual_seed(7)
    dc = DistilBertConfig(vocab_size=64, dim=16, n_layers=2, n_heads=4, hidden_dim=32, max_position_embeddings=32)
    m = DistilBertModel(dc).eval()
    d = os.path.join(root, "distilbert")
    m.save_pretrained(d)

    for name in os.listdir(root):
        # Keep the fixtures small: no generation configs or other extras.
        extra = os.path.join(root, name, "generation_config.json")
        if os.path.exists(extra):
            os.remove(extra)
    with open(os.path.join(root, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/student-arch/tests/data/hf")
