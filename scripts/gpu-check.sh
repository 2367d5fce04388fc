#!/bin/bash
# One GPU-machine call that checks and measures the GPU path (no Rust there).
#
#   here:         scripts/gpu-check.sh prepare     (release binaries + GPU test
#                 binaries, stripped, into .device-carry/; run after
#                 scripts/gpu-side-by-side.sh prepare made the tokenizer GGUF)
#   GPU machine:  scripts/gpu-check.sh run [tests] [bench PRESET:TYPE...] [ncu PRESET:TYPE]
#                 [steptime PRESET:TYPE...] [ab PRESET:TYPE...] [timeline PRESET:TYPE...]
#                 (carry .device-carry) runs the GPU tests, `rocmforge bench
#                 -p 512 -n 128 -r 2 --device gpu` on synthetic models, an
#                 Nsight Compute per-kernel summary of pp512 + tg4, and
#                 (steptime) tg128 next to the per-kernel device time of one
#                 decode step (ncu, clocks left alone); (ab) tg128 (pp512 too
#                 with PP=512) of the default and of each ALSO="VAR=value[+VAR=value|+--bench-flag=value] …"
#                 variant, interleaved, two rounds (with
#                 ROCMFORGE_GPU_SKIP_KERNELS / _SKIP_MATVECS: what a kernel
#                 costs inside a step); (timeline) one replayed decode step's
#                 kernels with what each adds to the step (Nsight Systems,
#                 scripts/nsys_step.py); logs in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$PWD/.device-carry
case "${1:-}" in
prepare)
  T=${CARGO_TARGET_DIR:-target}
  cargo build --release -p rocmforge -p xtask
  mkdir -p "$D/tests"
  strip -o "$D/rocmforge" "$T/release/rocmforge"
  strip -o "$D/xtask" "$T/release/xtask"
  rm -f "$D"/tests/*
  cargo test --release --no-run -p backend-hip -p hip-kernels -p gpu-runtime \
    --message-format=json 2>/dev/null |
    python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]!=["bin"]:
        print(m["executable"])' | while read -r f; do strip -o "$D/tests/$(basename "$f")" "$f"; done
  du -sh "$D" ;;
run)
  shift
  OUT=${OUT:-/tmp/out}
  mkdir -p "$OUT"
  export ROCMFORGE_TOKENIZER_GGUF=$D/tokenizer.gguf
  mode=""
  for a in "$@"; do
    case "$a" in
      tests)
        for t in "$D"/tests/*; do
          echo "== $(basename "$t")"
          timeout "${TEST_TIMEOUT:-240}" "$t" --test-threads=1 > "$OUT/$(basename "$t").log" 2>&1 && grep "test result" "$OUT/$(basename "$t").log" | tail -n 1 ||
            { echo FAILED; grep -E "panicked|error|FAILED|relative" "$OUT/$(basename "$t").log" | head -20; }
        done ;;
      bench|ncu|steptime|ab|timeline) mode=$a ;;
      *:*)
        preset=${a%%:*}; ty=${a#*:}; f=/tmp/$preset-$ty.gguf
        [ -f "$f" ] || "$D/xtask" synth-model --preset "$preset" --type "$ty" --tokenizer "$D/tokenizer.gguf" --out "$f" > /dev/null
        if [ "$mode" = ab ]; then
          echo "== $preset $ty"
          for round in 1 2; do
            for v in DEFAULT=1 ${ALSO:-}; do
              # A variant joins VAR=value and --bench-flag=value items with '+'.
              vars=(); flags=()
              for item in $(echo "$v" | tr '+' ' '); do
                case "$item" in --*) flags+=("$item") ;; *) vars+=("$item") ;; esac
              done
              r=$(timeout 120 env "${vars[@]}" "$D/rocmforge" bench -m "$f" -p "${PP:-0}" -n 128 -r 3 --device gpu "${flags[@]}" 2>&1 |
                grep -E "pp512|tg128" | tr '\n' ' ')
              echo "$v $r"
            done
          done
        elif [ "$mode" = timeline ]; then
          # One decode step's kernels on the GPU's timeline (Nsight Systems,
          # every node of the replayed graph traced): scripts/nsys_step.py.
          echo "== $preset $ty"
          if command -v nsys > /dev/null; then
            nsys profile --cuda-graph-trace=node --force-overwrite true -o "$OUT/nsys-$preset-$ty" \
              "$D/rocmforge" bench -m "$f" -p 0 -n 16 -r 1 --device gpu > /dev/null 2>&1 || true
            nsys stats --report cuda_gpu_trace --format csv "$OUT/nsys-$preset-$ty.nsys-rep" \
              > "$OUT/trace-$preset-$ty.csv" 2> /dev/null || true
            python3 scripts/nsys_step.py "$OUT/trace-$preset-$ty.csv" || true
          else
            echo "no nsys on this machine"
          fi
        elif [ "$mode" = steptime ]; then
          echo "== $preset $ty"
          "$D/rocmforge" bench -m "$f" -p 0 -n 128 -r 2 --device gpu 2>&1 | grep tg128 || true
          ncu --clock-control none --csv --print-units base --metrics gpu__time_duration.sum \
            "$D/rocmforge" bench -m "$f" -p 0 -n 8 -r 1 --device gpu > "$OUT/step-$preset-$ty.csv" 2>&1 || true
          python3 - "$OUT/step-$preset-$ty.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))
        if len(r) > 14 and r[12] == "gpu__time_duration.sum"]
passes = max(1, sum(1 for r in rows if r[4].startswith("get_rows")))
tot = collections.defaultdict(lambda: [0.0, 0])
for r in rows:
    k = f"{r[4].split('(')[0]} grid {r[8]} block {r[7]}"
    tot[k][0] += float(r[14].replace(",", "")) / 1e3
    tot[k][1] += 1
s = sum(t for t, _ in tot.values())
print(f"{passes} passes: {s / passes:.1f} us of kernels and {len(rows) / passes:.0f} launches per pass")
for k, (t, n) in sorted(tot.items(), key=lambda x: -x[1][0])[:22]:
    print(f"{t / passes:9.1f} us/pass {n / passes:6.1f} x {t / n:7.2f} us  {k}")
PY
        elif [ "$mode" = bench ]; then
          echo "== $preset $ty"
          "$D/rocmforge" bench -m "$f" -p 512 -n 128 -r 2 --device gpu 2>&1 | grep -E "pp512|tg128" || true
          # ALSO="VAR=1 …": the same runs again with those variables (variants).
          for v in ${ALSO:-}; do
            env "$v" "$D/rocmforge" bench -m "$f" -p 512 -n 128 -r 2 --device gpu 2>&1 | grep -E "pp512|tg128" | sed "s/^/$v /" || true
          done
        else
          ncu --csv --print-units base --metrics gpu__time_duration.sum \
            "$D/rocmforge" bench -m "$f" -p 512 -n 4 -r 1 --device gpu > "$OUT/ncu-$preset-$ty.csv" 2>&1 || true
          python3 - "$OUT/ncu-$preset-$ty.csv" <<'PY'
import csv, sys, collections
tot = collections.defaultdict(lambda: [0.0, 0])
for row in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"')):
    if len(row) < 15 or row[12] != "gpu__time_duration.sum":
        continue
    key = f"{row[4].split('(')[0]} grid {row[8]} block {row[7]}"
    tot[key][0] += float(row[14].replace(",", "")) / 1e3
    tot[key][1] += 1
rows = sorted(((t, n, k) for k, (t, n) in tot.items()), reverse=True)
print(f"{'total us':>10} {'calls':>6} {'avg us':>9}  kernel  (sum {sum(r[0] for r in rows):.0f} us)")
for t, n, k in rows[:30]:
    print(f"{t:10.1f} {n:6d} {t / n:9.2f}  {k}")
PY
        fi
        ;;
    esac
  done ;;
*) echo "usage: $0 prepare | run [tests] [bench P:T...] [ncu P:T...] [steptime P:T...] [ab P:T...]" >&2; exit 2 ;;
esac
