#!/usr/bin/env bash
# Measured results on a real NVIDIA GPU, in under five minutes: a local embedded gpuq,
# gpuq-agent with the NVML backend around bench/gpu_benchmark.py (PyTorch + CUDA), and
# the figures and the raw trace written to bench/gpu/ (commit them; the tests replay
# the trace). Usage: bash bench/gpu_check.sh [seconds, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
OUT=bench/gpu
PY=${PYTHON:-.venv/bin/python}
AGENT=$(dirname "$PY")/gpuq-agent
mkdir -p "$OUT"
WORK=$(mktemp -d)
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PORT DATABASE_URL="sqlite:///$WORK/gpu.sqlite3" GPUQ_LOG_FORMAT=text
$PY app.py >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  $PY -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/livez')" 2>/dev/null && break
  sleep 0.2
done
KEY=$($PY -c "
import json, urllib.request
request = urllib.request.Request('http://127.0.0.1:$PORT/participants', json.dumps({'name': 'gpu-check'}).encode(),
                                 {'Content-Type': 'application/json'})
print(json.load(urllib.request.urlopen(request))['api_key'])")
nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,memory.total --format=csv >"$OUT/nvidia-smi.csv" || true
GPUQ_SERVER="http://127.0.0.1:$PORT" GPUQ_KEY="$KEY" "$AGENT" --json run --backend nvml --record-trace "$OUT/trace.json" \
  -- "$PY" bench/gpu_benchmark.py --seconds "$SECONDS_TO_RUN" | tee "$OUT/run.log"
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
text = (out / "run.log").read_text()
answer = json.loads(text[text.index("{"):])
trace = json.loads((out / "trace.json").read_text())
figures = {
    "gpu": trace["identity"],
    "samples": len(trace["samples"]),
    "unsupported": sorted({k for s in trace["samples"] for k, v in s.items() if v is None}),
    "metrics": answer.get("metrics"),
    "score": answer.get("score"),
    "ranked": answer.get("ranked"),
    "failed_checks": [c["code"] for c in answer.get("checks", []) if not c["passed"]],
}
(out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
print(json.dumps(figures, indent=2))
PY
