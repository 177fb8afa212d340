#!/bin/bash
# Side-by-side batch-1 decode: the moeserve CPU engine and PyTorch eager on
# the same Qwen3-30B-A3B-shaped model (random weights), same layer count and
# threads, in one run. Prints both and the ratio.
#
#   bench/run_decode.sh [LAYERS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-2}
threads=${2:-2}
bazel build -c opt //bench:decode_bench >&2
engine=$(bazel-bin/bench/decode_bench --layers "$layers" --threads "$threads" --tokens 32 --repeats 5)
echo "$engine"
torch_bf16=$(/usr/bin/python3 bench/torch_decode.py --layers "$layers" --threads "$threads" \
  --tokens 32 --repeats 3 --dtype bfloat16)
echo "$torch_bf16"
torch_f32=$(/usr/bin/python3 bench/torch_decode.py --layers "$layers" --threads "$threads" \
  --tokens 16 --repeats 2 --dtype float32)
echo "$torch_f32"
/usr/bin/python3 - "$engine" "$torch_bf16" "$torch_f32" <<'PY'
import json, sys
get = lambda text: json.loads(next(l[5:] for l in text.splitlines() if l.startswith("JSON ")))
e, tb, tf = (get(t) for t in sys.argv[1:])
print(f"ratio engine(bf16) / torch(bf16): {e['tok_s'] / tb['tok_s']:.2f}x")
print(f"ratio engine(bf16) / torch(f32):  {e['tok_s'] / tf['tok_s']:.2f}x")
PY
