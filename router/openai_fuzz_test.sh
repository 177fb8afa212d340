#!/bin/bash
# Runs the OpenAI request-parsing fuzzer briefly (seconds) from the committed
# seed corpus. A crash, sanitizer report or leak fails the test.
set -euo pipefail
fuzzer="$1"
seeds="$2"
work="${TEST_TMPDIR:-$(mktemp -d)}/corpus"
mkdir -p "$work"
cp "$seeds"/* "$work"/
"$fuzzer" -max_total_time="${FUZZ_SECONDS:-8}" -max_len=2048 -timeout=5 \
  -print_final_stats=1 "$work" 2>&1 | tail -n 15
