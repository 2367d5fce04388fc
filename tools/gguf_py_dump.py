#!/usr/bin/env python3
"""Dump a GGUF file with gguf-py (`pip install gguf`) as one JSON object, in the
shape of `rocmforge inspect --json`, plus two oracle-only fields:

  {"version", "alignment", "metadata": {key: value}, "tensors": [{name, type,
   shape (ne0 first), offset (relative to the data section)}],
   "data_offset": absolute start of the data section,
   "types": {key: "u32" | "string" | "array[f32]" ...}}

Non-finite floats are written as the strings "NaN", "inf", "-inf" (as
rocmforge does), since JSON has no literal for them.

usage: gguf_py_dump.py FILE
       gguf_py_dump.py --dequantize-sha256 FILE
The second form dequantizes every tensor with gguf-py and prints
{name: SHA-256 of its little-endian f32 values, ne0 fastest}.
"""
import hashlib
import json
import math
import sys

try:
    import gguf
    from gguf import GGUFValueType as VT
except ImportError as e:
    sys.stderr.write(f"gguf-py is not installed ({e}); run `pip install gguf`\n")
    sys.exit(2)

NAMES = {
    VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16",
    VT.UINT32: "u32", VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool",
    VT.STRING: "string", VT.ARRAY: "array", VT.UINT64: "u64", VT.INT64: "i64",
    VT.FLOAT64: "f64",
}


def scalar(part):
    v = part[0].item()
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def value(field):
    types = field.types
    if types[0] == VT.ARRAY:
        if len(types) > 2:  # nested arrays: rely on gguf-py's own decoding
            return field.contents()
        if types[-1] == VT.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [scalar(field.parts[i]) for i in field.data]
    if types[0] == VT.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return scalar(field.parts[field.data[0]])


def type_name(field):
    types = field.types
    if types[0] == VT.ARRAY:
        inner = NAMES[types[-1]] if len(types) > 1 else "?"
        return "array[" * (len(types) - 1) + inner + "]" * (len(types) - 1)
    return NAMES[types[0]]


def dequantize_sha256(path):
    import numpy as np
    from gguf import quants

    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        values = quants.dequantize(t.data, t.tensor_type)
        raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
        out[t.name] = hashlib.sha256(raw).hexdigest()
    json.dump(out, sys.stdout)


def main():
    if sys.argv[1] == "--dequantize-sha256":
        dequantize_sha256(sys.argv[2])
        return
    reader = gguf.GGUFReader(sys.argv[1])
    metadata, types = {}, {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        metadata[name] = value(field)
        types[name] = type_name(field)
    version = int(reader.fields["GGUF.version"].parts[-1][0])
    tensors = [
        {
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(reader.data_offset),
        }
        for t in reader.tensors
    ]
    out = {
        "version": version,
        "alignment": int(reader.alignment),
        "metadata": metadata,
        "tensors": tensors,
        "data_offset": int(reader.data_offset),
        "types": types,
    }
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
