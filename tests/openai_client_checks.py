#!/usr/bin/env python3
"""Checks `rocmforge serve` with the official `openai` Python client.

usage: openai_client_checks.py BASE_URL EXPECTED_JSON
EXPECTED_JSON: {"prompt": ..., "max_tokens": N, "text": greedy text from `rocmforge generate`}
Prints one line per check; exits non-zero on the first failure.
"""
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

BASE, EXPECTED = sys.argv[1], json.load(open(sys.argv[2]))
client = openai.OpenAI(base_url=BASE, api_key="not-needed", max_retries=0, timeout=120)
PROMPT, N, TEXT = EXPECTED["prompt"], EXPECTED["max_tokens"], EXPECTED["text"]


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def raw(method, path, body=None, headers=None):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(BASE.rstrip("/").removesuffix("/v1") + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(name):
    _, text = raw("GET", "/metrics")
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


models = client.models.list()
check("models", len(models.data) == 1 and models.data[0].id, models)
model = models.data[0].id

c = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0)
check("completion greedy equals `rocmforge generate`", c.choices[0].text == TEXT, f"{c.choices[0].text!r} vs {TEXT!r}")
check("completion finish_reason", c.choices[0].finish_reason in ("length", "stop"), c.choices[0].finish_reason)
check("completion usage", c.usage.completion_tokens <= N and c.usage.prompt_tokens > 0, c.usage)

s = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0, stream=True,
                              stream_options={"include_usage": True})
parts, finish, usage = [], None, None
for ch in s:
    if ch.choices:
        parts.append(ch.choices[0].text)
        finish = ch.choices[0].finish_reason or finish
    if ch.usage:
        usage = ch.usage
check("streamed completion equals non-streamed", "".join(parts) == TEXT, "".join(parts))
check("streamed usage chunk", usage is not None and usage.completion_tokens == c.usage.completion_tokens, usage)
check("streamed finish_reason", finish == c.choices[0].finish_reason, finish)

msgs = [{"role": "user", "content": "What is the capital of France?"}]
chat = client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0)
ctext = chat.choices[0].message.content
check("chat completion", chat.choices[0].message.role == "assistant" and len(ctext) > 0, chat)
st = client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0, stream=True)
check("streamed chat equals non-streamed", "".join(ch.choices[0].delta.content or "" for ch in st if ch.choices) == ctext)

lp = client.chat.completions.create(model=model, messages=msgs, max_tokens=4, temperature=0, logprobs=True, top_logprobs=5)
content = lp.choices[0].logprobs.content
check("chat logprobs top 5", len(content) >= 1 and all(len(t.top_logprobs) == 5 for t in content), content)
check("logprob of greedy token is the top one", abs(content[0].logprob - content[0].top_logprobs[0].logprob) < 1e-4)

if len(TEXT) > 6:
    stop = TEXT[3:6]
    sc = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0, stop=[stop])
    check("stop string cuts before it", sc.choices[0].text == TEXT[:TEXT.find(stop)] and sc.choices[0].finish_reason == "stop",
          sc.choices[0].text)

seeded = [client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0.9, seed=42).choices[0].text
          for _ in range(2)]
check("seeded sampling is reproducible", seeded[0] == seeded[1], seeded)

results = [None] * 8
def worker(i):
    stream = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0, stream=True)
    text, fin = "", None
    for ch in stream:
        if ch.choices:
            text += ch.choices[0].text
            fin = ch.choices[0].finish_reason or fin
    results[i] = (text, fin)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
# Batched evaluation may round differently from a lone sequence, which can flip
# a near-tie (the reference marks a 0.005-logit tie at step 14 of this prompt);
# so the batch is checked for completion and agreement on the well-separated start.
common = TEXT[:40]
check("8 concurrent streaming clients all finish correctly",
      all(r is not None and r[1] in ("length", "stop") and r[0].startswith(common) for r in results),
      (TEXT, results))

try:
    client.completions.create(model=model, prompt=PROMPT, max_tokens=4, n=2)
    check("n=2 refused", False, "accepted")
except openai.BadRequestError as e:
    check("n=2 refused with 400", e.status_code == 400)

code, body = raw("POST", "/v1/chat/completions", "{broken")
check("malformed JSON -> 400", code == 400 and "error" in json.loads(body), body)
code, body = raw("POST", "/v1/completions", json.dumps({"prompt": "x", "temperature": "warm"}))
check("wrong field type -> 400 naming it", code == 400 and json.loads(body)["error"]["param"] == "temperature", body)
code, body = raw("POST", "/v1/completions", json.dumps({"prompt": "word " * 20000}))
check("prompt longer than the context -> 400", code in (400, 413), (code, body[:200]))
code, body = raw("GET", "/v1/does-not-exist")
check("unknown route -> 404", code == 404 and "error" in json.loads(body), body)
def oversized_status():
    """Announce a 1 GB body, send a little of it, and read the answer."""
    import socket
    host, port = BASE.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000\r\n\r\n" + b"x" * 65536)
        head = s.recv(4096).decode(errors="replace")
    return int(head.split()[1]), head
code, head = oversized_status()
check("huge body -> 413", code == 413, head[:300])

# A client that disconnects mid-stream frees its slot.
stream = client.completions.create(model=model, prompt=PROMPT, max_tokens=2000, temperature=0, stream=True)
for i, _ in enumerate(stream):
    if i == 3:
        break
stream.close()
deadline = time.time() + 20
while time.time() < deadline and metric("rocmforge_running_sequences") != 0:
    time.sleep(0.1)
check("disconnect frees the slot", metric("rocmforge_running_sequences") == 0, metric("rocmforge_running_sequences"))
c2 = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0)
check("server still answers after a disconnect", c2.choices[0].text == TEXT)
print("all checks passed")
