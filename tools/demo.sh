#!/bin/bash
# moeserve demo: builds moeserve, starts a local cluster (a router and two
# expert-parallel workers on loopback) on the bundled demo model, streams a
# sampled completion from it through the gRPC API, then stops the cluster.
#
#   tools/demo.sh                      # models/austen-moe, a sampled completion
#   tools/demo.sh --prompt TEXT [--max-tokens N] [--seed S]
#   tools/demo.sh --model DIR [--workers N] [--chat]    # your own checkpoint
#
# Installs missing Debian packages first (apt-get; sudo when not root).
# The bundled model (models/austen-moe, see its README.md) is a 5.9M-parameter
# Qwen3-MoE trained here on Jane Austen's six novels: it continues text in her
# manner (it was trained on prose, not dialogue, so it completes rather than
# answers). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
moeserve_install_deps

model=models/austen-moe
workers=2
prompt="It is a truth universally acknowledged, that"
max_tokens=120
seed=$RANDOM
chat=()
while (($#)); do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --chat) chat=(--chat); shift ;;
    *) echo "demo.sh: unknown flag $1 (use --model, --workers, --prompt, --max-tokens, --seed, --chat)" >&2
       exit 2 ;;
  esac
done

echo "== building (the first build takes a few minutes on 2 cores)" >&2
bazel build -c opt //tools:moeserve >&2
bin=bazel-bin/tools/moeserve

out=$(mktemp)
cluster=
stop_cluster() {
  if [[ -n $cluster ]] && kill -0 "$cluster" 2>/dev/null; then
    echo "== stopping the cluster" >&2
    kill -TERM "$cluster" 2>/dev/null || true
    wait "$cluster" 2>/dev/null || true
  fi
  cluster=
}
trap 'stop_cluster; rm -f "$out"' EXIT
trap 'echo >&2; exit 130' INT TERM  # Ctrl-C: the EXIT trap stops the cluster
echo "== moeserve local --model $model --workers $workers" >&2
"$bin" local --model "$model" --workers "$workers" --grpc-port 0 >"$out" &
cluster=$!
for _ in $(seq 600); do
  grep -q '^moeserve ready' "$out" && break
  kill -0 "$cluster" 2>/dev/null || { echo "demo.sh: the cluster failed to start" >&2; exit 1; }
  sleep 0.2
done
target=$(sed -n 's/^moeserve ready grpc=//p' "$out")
[[ -n $target ]] || { echo "demo.sh: the cluster was not ready in 120 s" >&2; exit 1; }
echo "== cluster ready at $target; sampling $max_tokens tokens (temperature 0.8, top-p 0.95, seed $seed)" >&2
echo >&2
printf '%s' "$prompt"
"$bin" generate --target "$target" --prompt "$prompt" "${chat[@]}" --max-tokens "$max_tokens" \
  --temperature 0.8 --top-p 0.95 --repetition-penalty 1.1 --seed "$seed"
stop_cluster
cat >&2 <<HELP

== try it yourself
  $bin local --model $model --workers 2 --grpc-port 50051 --http-port 8000   # then, elsewhere:
  $bin generate --target 127.0.0.1:50051 --prompt "Emma was" --max-tokens 64 --temperature 0.8
  curl http://127.0.0.1:8000/v1/completions -d '{"model": "$(basename "$model")", "prompt": "Emma was", "max_tokens": 64}'
  $bin run --model $model --prompt "Emma was" --max-tokens 64 --temperature 0.8   # one process
  $bin run --model $model --score --prompt "Some text."   # its perplexity on your text
  $bin SUBCOMMAND --help
Any gRPC client can call moeserve.v1.Inference/Generate (proto/moeserve/v1/inference.proto;
server reflection is on); any OpenAI client can use http://127.0.0.1:8000/v1.
--model takes any Hugging Face checkpoint directory (config.json + *.safetensors
[+ tokenizer.json]) of Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE; chat models take --chat.
HELP
