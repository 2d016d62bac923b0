#!/usr/bin/env python3
"""Writes the reference values that the Burn teacher must reproduce to 1e-4.

Usage:
    python3 scripts/reference_embeddings.py MODEL_DIR crates/student-arch/tests/data/minilm_reference.json

MODEL_DIR is the directory `cargo xtask fetch` prints (all-MiniLM-L6-v2). Needs `torch`, `transformers` and
`sentence-transformers` (`python3 -m pip install torch transformers sentence-transformers`).

For each sentence it records the tokenizer's ids, sentence-transformers' own embedding, the embedding-layer output,
the last hidden state, and the attention probabilities of the first and last layers. The sentences are run as one
padded batch, so the Rust test must get the same values with its own dynamic padding.
"""
import json
import sys

import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Distillation makes BERT smaller.",
    "A café in Zürich serves 42 kinds of crêpes, and the reviews are mixed!",
    "Rotten or fresh?",
]


def rounded(tensor):
    return [float(f"{x:.7g}") for x in tensor.flatten().tolist()]


def main():
    model_dir, out_path = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    st = SentenceTransformer(model_dir, device="cpu")
    st_embeddings = st.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=False)

    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    ours = torch.nn.functional.normalize(mean, dim=-1)

    records = []
    for i, text in enumerate(SENTENCES):
        n = int(batch["attention_mask"][i].sum())
        st_emb = torch.nn.functional.normalize(st_embeddings[i], dim=-1)
        assert torch.allclose(st_emb, ours[i], atol=1e-5), "mean pooling disagrees with sentence-transformers"
        records.append({
            "text": text,
            "input_ids": batch["input_ids"][i, :n].tolist(),
            "seq_len": n,
            "sentence_embedding": rounded(st_emb),
            "embedding_output": rounded(out.hidden_states[0][i, :n]),
            "last_hidden_state": rounded(out.last_hidden_state[i, :n]),
            "attentions_first_layer": rounded(out.attentions[0][i, :, :n, :n]),
            "attentions_last_layer": rounded(out.attentions[-1][i, :, :n, :n]),
        })
    doc = {
        "generator": "scripts/reference_embeddings.py",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "hidden_size": model.config.hidden_size,
        "num_heads": model.config.num_attention_heads,
        "num_layers": model.config.num_hidden_layers,
        "sentences": records,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f)
    print(f"wrote {len(records)} sentences to {out_path}")


if __name__ == "__main__":
    main()
