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

The other BPE pre-tokenizers are checked on the SmolLM2 vocabulary with
`tokenizer.ggml.pre` replaced (llama-bpe, qwen2, qwen35, gpt-2, default): a
vocab-only GGUF is written to a temporary directory with gguf-py and the
results go to smollm2-pre-NAME.json.
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
PRE_VARIANTS = ["llama-bpe", "qwen2", "qwen35", "gpt-2", "default"]
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


def vocab_only_copy(src, dst, pre):
    """Write the metadata of `src` (no tensors) to `dst` with another pre-tokenizer."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    r = GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    w = GGUFWriter(str(dst), arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        t = f.types[0]
        if k == "tokenizer.ggml.pre":
            w.add_string(k, pre)
        elif t == GGUFValueType.ARRAY:
            sub = f.types[1]
            if sub == GGUFValueType.STRING:
                vals = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                vals = [f.parts[i].tolist()[0] for i in f.data]
            w.add_key_value(k, vals, t, sub_type=sub)
        elif t == GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[f.data[0]]).decode("utf-8"))
        else:
            w.add_key_value(k, f.parts[f.data[0]].tolist()[0], t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_refs(exe, model, file_label, strings, out):
    cases = []
    for s in strings:
        case = {"text": s}
        for mode, extra in MODES.items():
            case[mode] = tokenize(exe, model, s, extra)
        cases.append(case)
    doc = {
        "source": f"llama-tokenize from {version(exe)} (llama.cpp 0c1e57098), tools/make_tokenizer_refs.py",
        "model": file_label,
        "modes": {
            "default": "add_special = model add_bos, parse_special = true (llama-tokenize defaults)",
            "plain": "add_special = false, parse_special = false (--no-bos --no-parse-special)",
        },
        "cases": cases,
    }
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(cases)} cases)")


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else str(Path.home() / ".cache/llamacpp-ref/bin/llama-tokenize")
    strings = json.loads((DATA / "strings.json").read_text(encoding="utf-8"))["strings"]
    for name, file in MODELS.items():
        model = FIXTURES / file
        if not model.exists():
            sys.exit(f"{model} is missing: run `cargo xtask fixtures`")
        write_refs(exe, model, file, strings, DATA / f"{name}.json")
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_VARIANTS:
            variant = Path(tmp) / f"smollm2-{pre}.gguf"
            vocab_only_copy(FIXTURES / MODELS["smollm2"], variant, pre)
            label = f"{MODELS['smollm2']} with tokenizer.ggml.pre = {pre} (vocab only)"
            write_refs(exe, variant, label, strings, DATA / f"smollm2-pre-{pre}.json")

if __name__ == "__main__":
    main()
