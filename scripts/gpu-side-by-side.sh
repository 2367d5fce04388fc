#!/bin/bash
# GPU speed side by side with llama.cpp (CUDA), on a GPU machine without a
# Rust toolchain or network. Two steps:
#
#   here (with cargo):   scripts/gpu-side-by-side.sh prepare
#       builds rocmforge and xtask in release, copies them stripped into
#       .device-carry/ with a tokenizer-only GGUF made from the SmolLM2
#       fixture, and puts a trimmed llama.cpp source tree in .llcuda/
#       (/work/shared/tools/llamacpp-cuda.sh prepare). Both are git-ignored.
#   GPU machine:         scripts/gpu-side-by-side.sh run [PRESET:TYPE ...]
#       (carry .device-carry and .llcuda) builds llama-bench with CUDA, writes
#       each synthetic model (default 1b:q4_k_m 1b:q4_0 8b:q4_k_m), and runs
#       `llama-bench -ngl 99 -fa 1 -p 512 -n 128 -r 2` and
#       `rocmforge bench -p 512 -n 128 -r 2 --device gpu` on the same file
#       (ALSO="VAR=1 …": ours again with each variable set). A llama.cpp
#       already built in this machine's /tmp is reused, and one packed by an
#       earlier call (LLBIN_PACK=1, see `run`) is unpacked instead of built.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$PWD/.device-carry
LLCUDA=${LLAMACPP_CUDA_TOOL:-/work/shared/tools/llamacpp-cuda.sh}
case "${1:-}" in
prepare)
  cargo build --release -p rocmforge -p xtask
  T=${CARGO_TARGET_DIR:-target}/release
  mkdir -p "$D"
  strip -o "$D/rocmforge" "$T/rocmforge"
  strip -o "$D/xtask" "$T/xtask"
  cp "$LLCUDA" "$D/llamacpp-cuda.sh"
  python3 - "$D/tokenizer.gguf" <<'PY'
import sys, gguf
r = gguf.GGUFReader('target/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf')
w = gguf.GGUFWriter(sys.argv[1], 'llama')
for k, f in r.fields.items():
    if not k.startswith('tokenizer.'):
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == gguf.GGUFValueType.STRING:
            vals = [bytes(f.parts[i]).decode('utf-8') for i in f.data]
        else:
            vals = [f.parts[i].tolist()[0] for i in f.data]
        w.add_key_value(k, vals, t, sub_type=sub)
    elif t == gguf.GGUFValueType.STRING:
        w.add_key_value(k, bytes(f.parts[f.data[0]]).decode('utf-8'), t)
    else:
        w.add_key_value(k, f.parts[f.data[0]].tolist()[0], t)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
  bash "$LLCUDA" prepare "$PWD/.llcuda"
  du -sh "$D" .llcuda ;;
run)
  shift
  [ $# -gt 0 ] || set -- 1b:q4_k_m 1b:q4_0 8b:q4_k_m
  # A llama.cpp build brought back from an earlier call (LLBIN_PACK below)
  # and carried as .llcuda-bin/llcuda-bin.tar.xz is unpacked where it was
  # built (its libraries are found there), saving the 4-5 minute build.
  LLBIN=/tmp/llcuda/bin
  if [ ! -x "$LLBIN/llama-bench" ] && [ -f "$PWD/.llcuda-bin/llcuda-bin.tar.xz" ]; then
    mkdir -p /tmp/llcuda
    xz -dc "$PWD/.llcuda-bin/llcuda-bin.tar.xz" | tar -C /tmp/llcuda -xf -
  fi
  if [ ! -x "$LLBIN/llama-bench" ]; then
    bash "$D/llamacpp-cuda.sh" build "$PWD/.llcuda" > /tmp/llbuild.log 2>&1 || { tail -20 /tmp/llbuild.log; exit 1; }
    # LLBIN_PACK=1: the built tools, compressed, into $OUT for the next call,
    # in parts of 15 MiB (files coming back are limited to 16 MiB each).
    # Here: cat llcuda-bin.tar.xz.part-* > .llcuda-bin/llcuda-bin.tar.xz
    # (about 43 MB), then carry .device-carry and .llcuda-bin.
    if [ "${LLBIN_PACK:-0}" = 1 ] && [ -n "${OUT:-}" ]; then
      tar -C /tmp/llcuda -cf - bin | xz -T0 -6 | split -b 15M - "$OUT/llcuda-bin.tar.xz.part-" || true
    fi
  fi
  export LD_LIBRARY_PATH=$LLBIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  for spec in "$@"; do
    preset=${spec%%:*}; ty=${spec#*:}; f=/tmp/$preset-$ty.gguf
    [ -f "$f" ] || "$D/xtask" synth-model --preset "$preset" --type "$ty" --tokenizer "$D/tokenizer.gguf" --out "$f" | tail -1
    echo "== $preset $ty: llama.cpp"
    "$LLBIN/llama-bench" -m "$f" -ngl 99 -fa 1 -p 512 -n 128 -r 2 | grep -E "pp512|tg128"
    echo "== $preset $ty: rocmforge"
    "$D/rocmforge" bench -m "$f" -p 512 -n 128 -r 2 --device gpu 2>&1 | grep -E "pp512|tg128"
    # ALSO="VAR=1 …": our runs again with those variables (variants); a
    # variant joins VAR=value and --bench-flag=value items with '+'.
    for v in ${ALSO:-}; do
      vars=(); flags=()
      for item in $(echo "$v" | tr '+' ' '); do
        case "$item" in --*) flags+=("$item") ;; *) vars+=("$item") ;; esac
      done
      env "${vars[@]}" "$D/rocmforge" bench -m "$f" -p 512 -n 128 -r 2 --device gpu "${flags[@]}" 2>&1 |
        grep -E "pp512|tg128" | sed "s/^/$v /" || true
    done
    rm -f "$f"
  done ;;
*) echo "usage: $0 prepare | run [PRESET:TYPE ...]" >&2; exit 2 ;;
esac
