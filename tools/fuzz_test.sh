#!/bin/bash
# Runs a libFuzzer target briefly (seconds) from its committed seed corpus:
#   fuzz_test.sh FUZZER SEED_DIR [MAX_LEN]
# A crash, sanitizer report or leak fails the test; libFuzzer prints the
# input that did it. FUZZ_SECONDS overrides the time (8 s).
set -euo pipefail
fuzzer="$1"
seeds="$2"
max_len="${3:-4096}"
work="${TEST_TMPDIR:-$(mktemp -d)}/corpus"
mkdir -p "$work"
cp "$seeds"/* "$work"/
"$fuzzer" -max_total_time="${FUZZ_SECONDS:-8}" -max_len="$max_len" -timeout=5 \
  -print_final_stats=1 "$work" 2>&1 | tail -n 15
