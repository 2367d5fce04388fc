#!/usr/bin/env bash
# Produce reference greedy continuations with llama.cpp for tests/engine_reference.rs.
#
#   tools/make_engine_refs.sh MODEL.gguf OUT.json [N_PREDICT] < prompts.txt
#
# Prompts are read one per line from stdin (JSON strings, so that newlines,
# tabs and odd whitespace survive). For each prompt it asks llama-server
# (greedy, n_ctx 512, 1 thread) for N_PREDICT tokens with the top-2 log
# probabilities at every step; the difference of two log probabilities is the
# difference of the two logits, which is what the test needs to know where a
# near tie makes the comparison stop. Prompt ids come from /tokenize with
# add_special=true, parse_special=false, as the engine test tokenizes.
#
# LLAMACPP_BIN overrides the llama.cpp tools directory. Flash attention is on
# (what `auto` picks on the CPU, and what the project's reference set
# smollm2-q4_1.json was made with: its logits agree with `-fa on` to 1e-4,
# not with `-fa off`); LLAMA_SERVER_ARGS replaces the extra server flags.
set -euo pipefail
model=${1:?usage: make_engine_refs.sh MODEL OUT.json [N_PREDICT] < prompts}
out=${2:?usage: make_engine_refs.sh MODEL OUT.json [N_PREDICT] < prompts}
n_predict=${3:-32}
bin=${LLAMACPP_BIN:-/root/.cache/llamacpp-ref/bin}
port=$((20000 + RANDOM % 20000))
prompts=$(mktemp)
cat > "$prompts"

# shellcheck disable=SC2086
"$bin/llama-server" -m "$model" -c 512 -t 1 --port "$port" --host 127.0.0.1 -np 1 ${LLAMA_SERVER_ARGS:--fa on} \
    >/tmp/make_engine_refs.$port.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$prompts"' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.5
done

python3 - "$port" "$model" "$out" "$n_predict" "$("$bin/llama-server" --version 2>&1 | head -1)" "$prompts" <<'PY'
import json, sys, urllib.request, os

port, model, out, n_predict, version, prompts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
url = f"http://127.0.0.1:{port}"
flags = os.environ.get("LLAMA_SERVER_ARGS", "-fa on")

def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

cases = []
for line in open(prompts, encoding="utf-8"):
    line = line.strip()
    if not line:
        continue
    prompt = json.loads(line)
    ids = post("/tokenize", {"content": prompt, "add_special": True, "parse_special": False})["tokens"]
    r = post("/completion", {
        "prompt": ids, "n_predict": n_predict, "temperature": 0.0, "top_k": 1,
        "n_probs": 2, "cache_prompt": False, "return_tokens": True, "samplers": ["top_k"],
    })
    steps = []
    for p in r["completion_probabilities"]:
        top = p["top_logprobs"]
        steps.append([top[0]["id"], top[0]["logprob"], top[1]["id"], top[1]["logprob"]])
    cases.append({
        "prompt": prompt, "prompt_ids": ids, "gen_ids": r["tokens"], "gen_text": r["content"],
        "steps_top1_id_lp_top2_id_lp": steps,
    })
json.dump({
    "source": f"llama.cpp llama-server ({version}), greedy, n_ctx 512, 1 thread, server flags: {flags}, prompts tokenized with add_special=true parse_special=false",
    "model": os.path.basename(model),
    "note": "steps give [top1_id, top1_logprob, top2_id, top2_logprob]; logprob differences equal logit differences; compare strictly only before a step whose margin is below 0.05",
    "cases": cases,
}, open(out, "w"), indent=1, ensure_ascii=False)
print(f"wrote {len(cases)} cases to {out}")
PY
