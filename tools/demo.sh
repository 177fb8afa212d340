#!/bin/bash
# moeserve demo: builds moeserve, starts a local cluster (a router and two
# expert-parallel workers on loopback) on a bundled model, streams a chat
# reply from it through the gRPC API, then stops the cluster.
#
#   tools/demo.sh                               # the bundled fixture, a sampled reply
#   tools/demo.sh --model DIR [--workers N] [--prompt TEXT]
#
# Installs missing Debian packages first (apt-get; sudo when not root).
# The bundled model (tests/fixtures/qwen3_moe_chat) is a tiny Qwen3-MoE with
# RANDOM weights and a small BPE tokenizer: it shows the whole path —
# tokenizer, chat template, expert-parallel MoE forward pass with all-to-all
# between worker processes, sampling, streaming detokenisation over gRPC —
# but its text is gibberish by construction.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
moeserve_install_deps

model=tests/fixtures/qwen3_moe_chat
workers=2
prompt="Tell me about the sea."
while (($#)); do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    *) echo "demo.sh: unknown flag $1 (use --model, --workers, --prompt)" >&2; exit 2 ;;
  esac
done

echo "== building (first build takes a few minutes on 2 cores)" >&2
bazel build -c opt //tools:moeserve >&2
bin=bazel-bin/tools/moeserve

out=$(mktemp)
trap 'kill -TERM $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -f "$out"' EXIT
echo "== moeserve local --model $model --workers $workers" >&2
"$bin" local --model "$model" --workers "$workers" --grpc-port 0 >"$out" &
cluster=$!
for _ in $(seq 600); do
  grep -q '^moeserve ready' "$out" && break
  kill -0 $cluster 2>/dev/null || { echo "demo.sh: the cluster failed to start" >&2; exit 1; }
  sleep 0.2
done
target=$(sed -n 's/^moeserve ready grpc=//p' "$out")
[[ -n $target ]] || { echo "demo.sh: the cluster was not ready in 120 s" >&2; exit 1; }
echo "== cluster ready at $target; prompt: $prompt" >&2
[[ $model == tests/fixtures/qwen3_moe_chat ]] && echo "   (random weights: expect gibberish)" >&2
"$bin" generate --target "$target" --prompt "$prompt" --chat --max-tokens 48 \
  --temperature 0.8 --seed 7
echo "== stopping the cluster" >&2
kill -TERM $cluster
wait $cluster
trap 'rm -f "$out"' EXIT
cat >&2 <<HELP

== try it yourself
  $bin local --model DIR --workers 2 --grpc-port 50051      # then, elsewhere:
  $bin generate --target 127.0.0.1:50051 --prompt "Hello" --chat --max-tokens 64
  $bin run --model DIR --prompt "Hello" --chat --max-tokens 64   # single process
  $bin SUBCOMMAND --help
DIR is a Hugging Face checkpoint directory (config.json + *.safetensors
[+ tokenizer.json]) of Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE.
HELP
