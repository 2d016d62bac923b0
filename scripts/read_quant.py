#!/usr/bin/env python3
"""A reader of bert-compress's model.quant.safetensors (docs/FORMAT.md) with numpy and safetensors only.

    python3 scripts/read_quant.py runs/quantized/model.quant.safetensors [--out dequantized.safetensors]

Checks the header's sha256 of the tensors, unpacks every quantized matrix, dequantizes it and prints one line per
tensor (name, shape, bits, group); with --out, writes every tensor as f32 under its Hugging Face name (what
`QuantizedModel::dequantize` gives in Rust; crates/quant/tests/python_reader.rs compares the two).
"""
import argparse
import hashlib
import json
import struct

import numpy as np
from safetensors.numpy import save_file

FORMATS = ("bert-compress-quant/1", "bert-compress-quant/2")
RESERVED = ("format", "config", "plan", "data_sha256")
DTYPES = {"U8": np.uint8, "F16": np.float16, "F32": np.float32}


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """`n` unsigned codes of `bits` bits from a little-endian bit stream (code i starts at bit i*bits)."""
    if bits == 8:
        return packed[:n].astype(np.int64)
    stream = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits)
    return (stream.astype(np.int64) << np.arange(bits)).sum(axis=1)


def read(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    meta = header.pop("__metadata__")
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected one of {FORMATS}")
    base = 8 + header_len
    raw = {k: data[base + v["data_offsets"][0] : base + v["data_offsets"][1]] for k, v in header.items()}
    if "data_sha256" in meta:
        h = hashlib.sha256()
        for name in sorted(raw):
            h.update(struct.pack("<Q", len(name.encode())) + name.encode())
            h.update(struct.pack("<Q", len(raw[name])) + raw[name])
        if h.hexdigest() != meta["data_sha256"]:
            raise ValueError(f"{path}: the tensors do not match data_sha256: the file is corrupt")
    elif meta["format"] == FORMATS[1]:
        raise ValueError(f"{path}: {FORMATS[1]} requires data_sha256")
    arrays = {
        k: np.frombuffer(raw[k], dtype=DTYPES[v["dtype"]]).reshape(v["shape"]) for k, v in header.items()
    }
    out, parts = {}, set()
    for name, value in meta.items():
        if name in RESERVED:
            continue
        m = json.loads(value)
        rows, cols = m["shape"]
        group_rows, group_cols = m["group"]
        bits = m["bits"]
        codes = unpack(arrays[name + ".qweight"], bits, rows * cols).reshape(rows, cols)
        scales = arrays[name + ".scales"].astype(np.float32)
        groups_per_row = cols // group_cols
        group = (np.arange(rows)[:, None] // group_rows) * groups_per_row + np.arange(cols)[None, :] // group_cols
        if m["symmetric"]:
            q = codes - ((1 << (bits - 1)) - 1)
        else:
            zero = arrays[name + ".zero_points"].astype(np.float32).astype(np.int64)
            q = codes - zero[group]
            parts.add(name + ".zero_points")
        out[name] = (q.astype(np.float32) * scales[group]).astype(np.float32)
        parts.update({name + ".qweight", name + ".scales"})
    for name, array in arrays.items():
        if name not in parts:
            out[name] = array.astype(np.float32)
    return {"config": json.loads(meta["config"]), "plan": json.loads(meta["plan"]), "tensors": out, "meta": meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--out", help="write every tensor dequantized to f32 into this safetensors file")
    args = parser.parse_args()
    model = read(args.path)
    for name, array in sorted(model["tensors"].items()):
        m = json.loads(model["meta"][name]) if name in model["meta"] else None
        detail = f"{m['bits']}-bit, group {m['group']}" if m else "f32"
        print(f"{name} {list(array.shape)} {detail}")
    if args.out:
        save_file(model["tensors"], args.out)


if __name__ == "__main__":
    main()
