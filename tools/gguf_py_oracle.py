#!/usr/bin/env python3
"""Oracle for tests: run gguf-py (the reference GGUF implementation, `pip install gguf`).

usage:
  gguf_py_oracle.py dequantize TYPE IN OUT   IN: raw blocks, OUT: little-endian f32
  gguf_py_oracle.py quantize TYPE IN OUT     IN: little-endian f32, OUT: raw blocks
Exit code 3 when gguf-py does not implement the operation for TYPE.
"""
import sys

try:
    import numpy as np
    import gguf
    from gguf import quants
except ImportError as e:  # the Rust side turns this into a clear failure
    sys.stderr.write(f"gguf-py is not installed ({e}); run `pip install gguf`\n")
    sys.exit(2)


def qtype(name):
    return gguf.GGMLQuantizationType[name]


def main():
    op, name = sys.argv[1], sys.argv[2]
    t = qtype(name)
    src, dst = sys.argv[3], sys.argv[4]
    try:
        if op == "dequantize":
            data = np.fromfile(src, dtype=np.uint8)
            out = quants.dequantize(data, t).astype("<f4", copy=False)
        elif op == "quantize":
            data = np.fromfile(src, dtype="<f4")
            out = quants.quantize(data, t)
        else:
            sys.exit(f"unknown op {op}")
    except NotImplementedError as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(3)
    np.ascontiguousarray(out).tofile(dst)


if __name__ == "__main__":
    main()
