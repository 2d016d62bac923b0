"""How TinyBERT-style augmentation replaced words in an `augmented.jsonl` (docs/archive/RESULTS-2026-11.md, issue 18).

The file holds the original training sentences first, then their variants (in the order of the originals).
A variant is lined up with its sentence (searched from the last sentence lined up, five ahead at most) when
both split into the same number of words and pieces of punctuation and at least 30% of them are equal; the
rest (a replacement that splits differently) are counted as not lined up. Prints the share of alphabetic words replaced, the share of the replaced words that the
teacher's tokenizer cuts into several word pieces (against that share among the originals' words), and the
first 30 replacements of multi-piece words.

    python3 scripts/augment_stats.py RUN/augmented.jsonl TEACHER_DIR [--originals 600]
"""

import argparse
import json
import re

from transformers import BertTokenizer


def words(text):
    return re.findall(r"\w+|[^\w\s]", text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("augmented")
    ap.add_argument("teacher")
    ap.add_argument("--originals", type=int, default=600, help="sentences before the first variant")
    args = ap.parse_args()
    tok = BertTokenizer.from_pretrained(args.teacher)
    rows = [json.loads(line) for line in open(args.augmented, encoding="utf-8")]
    n = args.originals
    if len(rows) < n:
        raise SystemExit(f"{args.augmented}: {len(rows)} lines, fewer than --originals {n}")
    originals = [words(r["text"]) for r in rows[:n]]
    variants = rows[n:]

    def multi(w):
        return len(tok.tokenize(w)) > 1

    def lines_up(o, vw):
        return len(o) == len(vw) and sum(a == b for a, b in zip(o, vw)) >= 0.3 * len(vw)

    j = lined_up = alpha = replaced = replaced_multi = 0
    examples = []
    for v in variants:
        vw = words(v["text"])
        # Variants follow their sentences' order: look a few sentences ahead (a sentence may have no variant).
        k = next((k for k in range(j, min(j + 6, n)) if lines_up(originals[k], vw)), None)
        if k is None:
            continue
        j = k
        lined_up += 1
        for a, b in zip(originals[j], vw):
            if not a.isalpha():
                continue
            alpha += 1
            if a != b:
                replaced += 1
                if multi(a):
                    replaced_multi += 1
                    if len(examples) < 30:
                        examples.append((a, b))
    orig_alpha = [w for ws in originals for w in ws if w.isalpha()]
    orig_multi = sum(multi(w) for w in orig_alpha)
    print(f"variants lined up with their sentence: {lined_up} of {len(variants)}")
    print(f"alphabetic words in them: {alpha}; replaced: {replaced} ({replaced / max(alpha, 1):.1%})")
    print(f"replaced words of several pieces: {replaced_multi} ({replaced_multi / max(replaced, 1):.1%} of the replaced)")
    print(f"words of several pieces among the originals' words: {orig_multi} of {len(orig_alpha)} "
          f"({orig_multi / max(len(orig_alpha), 1):.1%})")
    print("first replacements of multi-piece words:")
    for a, b in examples:
        print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
