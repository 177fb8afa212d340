#!/bin/bash
# moeserve demo: builds the CLI and generates text with the single-process
# CPU engine on a bundled model, streaming tokens as they come.
#
#   tools/demo.sh                      # the bundled fixture, a sampled reply
#   tools/demo.sh --model DIR --prompt "Hello" --chat   # any flags of `moeserve run`
#
# Installs missing Debian packages first (apt-get; sudo when not root).
# The bundled model (tests/fixtures/qwen3_moe_chat) is a tiny Qwen3-MoE with
# RANDOM weights and a small BPE tokenizer: it shows the whole path —
# tokenizer, chat template, MoE forward pass, sampling, streaming
# detokenisation — but its text is gibberish by construction.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
moeserve_install_deps

echo "== building (first build takes a few minutes on 2 cores)" >&2
bazel build //tools:moeserve >&2

if (($# == 0)); then
  set -- --model tests/fixtures/qwen3_moe_chat --chat \
    --prompt "Tell me about the sea." --max-tokens 48 --temperature 0.8 --seed 7
  echo "== bundled fixture (random weights: expect gibberish); prompt: Tell me about the sea." >&2
fi
bazel-bin/tools/moeserve run "$@"
cat >&2 <<'HELP'

== try it yourself
  bazel-bin/tools/moeserve run --model DIR --prompt "Hello" --chat --max-tokens 64
  bazel-bin/tools/moeserve run --model DIR --prompt-ids 1,2,3 --format json
  bazel-bin/tools/moeserve tokenize --model DIR --text "Hello world"
  bazel-bin/tools/moeserve run --help
DIR is a Hugging Face checkpoint directory (config.json + *.safetensors
[+ tokenizer.json]) of Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE.
HELP
