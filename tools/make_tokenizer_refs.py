#!/usr/bin/env python3
"""Produce the tokenizer reference data in tests/data/tokenizer/ with llama.cpp.

usage: tools/make_tokenizer_refs.py [LLAMA_TOKENIZE]
  (default: $HOME/.cache/llamacpp-ref/bin/llama-tokenize, built by
   ../shared/tools/build-llamacpp.sh; fixtures from `cargo xtask fixtures`)

For every string of tests/data/tokenizer/strings.json and every fixture it
runs llama-tokenize twice, passing the exact bytes through a file
(`--file F --no-escape`):
  "default": llama-tokenize's defaults: BOS as the model's metadata says
             (add_special = add_bos) and special tokens in the text parsed;
             this is the `rocmforge tokenize` contract;
  "plain":   `--no-bos --no-parse-special` (add_special = false,
             parse_special = false).
Output: one JSON per fixture holding only token ids (no model data).
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "tokenizer"
FIXTURES = Path(os.environ.get("ROCMFORGE_FIXTURES", ROOT / "target" / "fixtures"))
MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
MODES = {"default": [], "plain": ["--no-bos", "--no-parse-special"]}


def tokenize(exe, model, text, extra):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        out = subprocess.run(
            [exe, "-m", str(model), "-f", path, "--no-escape", "--ids", "--log-disable", *extra],
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        os.unlink(path)
    lines = [l for l in out.splitlines() if l.startswith("[")]
    if not lines:
        sys.exit(f"no id list in llama-tokenize output for {text!r}: {out!r}")
    return json.loads(lines[-1])


def version(exe):
    v = Path(exe).resolve().parent.parent / "VERSION"
    return v.read_text().strip() if v.exists() else "unknown"


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else str(Path.home() / ".cache/llamacpp-ref/bin/llama-tokenize")
    strings = json.loads((DATA / "strings.json").read_text(encoding="utf-8"))["strings"]
    for name, file in MODELS.items():
        model = FIXTURES / file
        if not model.exists():
            sys.exit(f"{model} is missing: run `cargo xtask fixtures`")
        cases = []
        for s in strings:
            case = {"text": s}
            for mode, extra in MODES.items():
                case[mode] = tokenize(exe, model, s, extra)
            cases.append(case)
        doc = {
            "source": f"llama-tokenize from {version(exe)} (llama.cpp 0c1e57098), tools/make_tokenizer_refs.py",
            "model": file,
            "modes": {
                "default": "add_special = model add_bos, parse_special = true (llama-tokenize defaults)",
                "plain": "add_special = false, parse_special = false (--no-bos --no-parse-special)",
            },
            "cases": cases,
        }
        out = DATA / f"{name}.json"
        out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
