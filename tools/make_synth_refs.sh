#!/usr/bin/env bash
# Reference greedy continuations from llama.cpp on synthetic models, for
# tests/synth_arch_reference.rs.
#
#   tools/make_synth_refs.sh [OUT_DIR]      (default tests/data/synth)
#
# For each (preset, architecture, type) below it writes the model with
# `cargo xtask synth-model` (seed 0, SmolLM2 tokenizer from the fixture),
# asks llama.cpp's llama-server for 32 greedy tokens per prompt with the
# top-2 log probabilities at each step (tools/make_engine_refs.sh), and adds
# the model's spec, size and SHA-256 to the JSON: the test rebuilds the same
# file in-process and checks that hash before comparing tokens.
#
# LLAMACPP_BIN overrides the llama.cpp tools directory; ONLY="name name..."
# (e.g. ONLY="qwen3-f32 llama-q8_0") limits the run to those references.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/tests/data/synth}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

cargo build --release -p xtask --manifest-path "$root/Cargo.toml"
xtask=${CARGO_TARGET_DIR:-$root/target}/release/xtask

prompts='"The capital of France is"
"def fibonacci(n):\n    if n <"
"Once upon a time, in a small village, there lived"'

cases="tiny llama q8_0
tiny llama q4_0
tiny llama q4_1
tiny llama q4_k_m
tiny llama q6_k
tiny llama f16
tiny llama f32
tiny qwen2 f32
tiny qwen2 q8_0
tiny qwen2 q4_k_m
tiny qwen3 f32
tiny qwen3 q8_0
tiny qwen3 q4_k_m
tiny gemma3 f32
tiny gemma3 q8_0
tiny gemma3 q4_k_m
tiny llama-moe f32
tiny llama-moe q8_0
tiny llama-moe q4_k_m
smollm2 llama q4_0
smollm2 llama q8_0"

while read -r preset arch type; do
    name="$preset-$arch-$type"
    [ "$preset" = tiny ] && name="$arch-$type"
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        continue
    fi
    model="$work/$name.gguf"
    "$xtask" synth-model --preset "$preset" --arch "$arch" --type "$type" --seed 0 --out "$model"
    printf '%s\n' "$prompts" | "$root/tools/make_engine_refs.sh" "$model" "$work/$name.json" 32
    python3 - "$work/$name.json" "$out/$name.json" "$model" "$preset" "$arch" "$type" <<'PY'
import hashlib, json, os, sys
src, dst, model, preset, arch, wtype = sys.argv[1:]
ref = json.load(open(src, encoding="utf-8"))
h = hashlib.sha256()
with open(model, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
ref["synth"] = {"preset": preset, "arch": arch, "type": wtype, "seed": 0,
                "size": os.path.getsize(model), "sha256": h.hexdigest()}
ref["model"] = f"cargo xtask synth-model --preset {preset} --arch {arch} --type {wtype} --seed 0"
json.dump(ref, open(dst, "w", encoding="utf-8"), indent=1, ensure_ascii=False)
PY
    echo "$name: done"
done <<< "$cases"
