#!/bin/bash
# Runs the GPU tests and benchmarks from a prebuilt bundle, on a GPU machine
# (or anywhere: without a GPU the tests skip and the benchmarks say SKIPPED).
#
#   tools/device_check.sh [--bundle DIR]      # DIR defaults to .device/bundle
#
# Two steps, because the GPU machine has the NVIDIA driver, the CUDA toolkit
# and NCCL but no Bazel and none of our Debian libraries (abseil, gtest, Gloo):
#
#   1. here, on the build machine: tools/device_bundle.sh
#      builds the binaries with `bazel build -c opt` and copies them, with the
#      shared libraries they need, into .device/bundle (git-ignored);
#   2. there, from the repository root of a copy of the working tree plus
#      .device/: tools/device_check.sh
#
# When the bundle directory is missing but DIR.tar.xz (which step 1 also
# writes) is there, it is unpacked first: carry only the archive when the
# tree and the bundle would be too large to travel. When neither is there and
# Bazel is present (a build machine with a GPU), step 1 runs first.
# On the GPU machine this script:
#   - prints the GPUs (nvidia-smi -L), the driver version and nvcc --version;
#   - points LD_LIBRARY_PATH at DIR/lib, /usr/local/cuda/lib64 and the
#     directory of the first libnccl.so.2 found ($NCCL_LIB_DIR if set, else
#     /usr/local/cuda, ldconfig, /usr/lib, /opt, /; e.g. the pip package
#     nvidia-nccl-cu13 inside a Python venv), each search time-bounded;
#   - runs every DIR/tests/* with --gtest_brief=1 under a timeout (at most
#     120 s each), counting each binary passed, failed or skipped (skipped:
#     every test case GTEST_SKIP'd) and going on after failures;
#   - runs tests/gpu_cluster_test.py with DIR/bench/moeserve: `moeserve
#     local --device cuda:0` (1 worker, 1 worker exchanging through NCCL, 2
#     workers sharing the GPU) against the CPU engine's tokens;
#   - runs DIR/bench/cuda_copy_bench and reads its copy_bandwidth_gbps line,
#     then DIR/bench/moe_layer_bench and DIR/bench/gpu_decode_bench, each
#     with --copy-gbps=<that>, when they exist, and bench/gpu_serving_bench.py
#     (the GPU worker serving a 2-layer Qwen3-30B-A3B-shaped model through
#     the router, at concurrency 1 and 64).
# Everything is logged to ${OUT:-/tmp/device_check}/: device_check.log (what
# is printed) and one NAME.log per binary. A short summary comes last. The
# whole run stays under 8 minutes. Exit status: 0 when nothing failed, 1 when
# a test or benchmark failed (a timeout or crash counts), 2 on bad usage or
# no bundle.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

bundle=.device/bundle
default_bundle=1
while (($#)); do
  case "$1" in
    --bundle) bundle="${2:?--bundle needs a directory}"; default_bundle=0; shift 2 ;;
    --bundle=*) bundle="${1#--bundle=}"; default_bundle=0; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

readonly out="${OUT:-/tmp/device_check}"
readonly budget_s=470         # everything, benchmarks included: under 8 minutes
readonly test_timeout_s=120   # one test binary
readonly copy_timeout_s=90
readonly moe_timeout_s=180
mkdir -p "$out" || exit 2

# Remaining seconds of the budget, less `reserve`, capped at `cap`.
time_left() {  # cap reserve
  local left=$((budget_s - SECONDS - $2))
  ((left > $1)) && left=$1
  echo "$left"
}

section() { printf '\n== %s\n' "$*"; }

find_nccl() {
  local hit dir
  if [[ -n "${NCCL_LIB_DIR-}" && -e "$NCCL_LIB_DIR/libnccl.so.2" ]]; then
    echo "$NCCL_LIB_DIR/libnccl.so.2 (\$NCCL_LIB_DIR)"; return
  fi
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e "$dir/libnccl.so.2" ]] && { echo "$dir/libnccl.so.2"; return; }
  done
  hit=$(ldconfig -p 2>/dev/null | awk '$1 == "libnccl.so.2" { print $NF; exit }')
  [[ -n "$hit" ]] && { echo "$hit (ldconfig)"; return; }
  for dir in /usr/lib /usr/lib64 /usr/local /opt; do
    [[ -d "$dir" ]] || continue
    hit=$(timeout 20 find "$dir" -maxdepth 10 -name libnccl.so.2 -print -quit 2>/dev/null)
    [[ -n "$hit" ]] && { echo "$hit"; return; }
  done
  hit=$(timeout 40 find / -xdev -maxdepth 10 \( -path /proc -o -path /sys -o -path /dev \
    -o -path /run \) -prune -o -name libnccl.so.2 -print -quit 2>/dev/null)
  [[ -n "$hit" ]] && { echo "$hit (searched /, depth 10, 40 s)"; return; }
}

# Results, filled as binaries run; the summary prints them.
rows=()
n_pass=0 n_fail=0 n_skip=0 c_pass=0 c_fail=0 c_skip=0
failed_logs=()

# run_test BINARY: one gtest binary, its result appended to `rows`.
run_test() {
  local bin=$1 name log limit rc start secs result passed failed skipped tmp
  name=$(basename "$bin")
  log="$out/$name.log"
  limit=$(time_left "$test_timeout_s" "$bench_reserve_s")
  if ((limit < 5)); then
    rows+=("$(printf '%-28s %-9s %6s %6s %7s %6s  %s' "$name" "NOT RUN" - - - - "time budget spent")")
    ((n_fail++)); return
  fi
  start=$SECONDS
  tmp=$(mktemp -d)
  TEST_TMPDIR="$tmp" timeout -k 10 "$limit" "$bin" --gtest_brief=1 >"$log" 2>&1
  rc=$?
  rm -rf "$tmp"
  secs=$((SECONDS - start))
  count() { sed -n "s/^\[  $1 *\] \([0-9][0-9]*\) tests\{0,1\}[.,].*/\1/p" "$log" | tail -1; }
  passed=$(count PASSED) failed=$(count FAILED) skipped=$(count SKIPPED)
  passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0}
  ((c_pass += passed, c_fail += failed, c_skip += skipped))
  local note=""
  if ((rc == 124 || rc == 137)); then
    result=TIMEOUT note="killed after ${limit} s"
  elif ((rc != 0)); then
    result=FAILED
    grep -q "^\[==========\]" "$log" || note="exit $rc, no gtest summary: $(grep -m1 -i 'error\|abort\|fault' "$log" | cut -c1-60)"
  elif ((passed == 0 && skipped > 0)); then
    result=skipped
  elif grep -q "^\[==========\]" "$log"; then
    result=passed
  else
    result=passed note="exit 0 but no gtest summary"
  fi
  case "$result" in
    passed) ((n_pass++)) ;;
    skipped) ((n_skip++)) ;;
    *) ((n_fail++)); failed_logs+=("$log") ;;
  esac
  echo "$name: $result (exit $rc, ${secs} s; $passed passed, $failed failed, $skipped skipped)"
  rows+=("$(printf '%-28s %-9s %6s %6s %7s %6s  %s' "$name" "$result" "$passed" "$failed" "$skipped" "$secs" "$note")")
}

# tests/gpu_cluster_test.py with the bundle's moeserve: `moeserve local
# --device cuda:0` against the CPU engine; one row in `rows`.
run_e2e() {
  local name=gpu_cluster_test log="$out/gpu_cluster_test.log" limit rc secs start result
  [[ -x "$bundle/bench/moeserve" ]] || return 0
  section "end to end: moeserve local --device cuda:0 against the CPU engine ($name.py)"
  limit=$(time_left 150 "$bench_reserve_s")
  if ((limit < 20)); then
    rows+=("$(printf '%-28s %-9s %6s %6s %7s %6s  %s' "$name" "NOT RUN" - - - - "time budget spent")")
    ((n_fail++)); return
  fi
  start=$SECONDS
  MOESERVE_BIN="$bundle/bench/moeserve" timeout -k 10 "$limit" python3 tests/$name.py >"$log" 2>&1
  rc=$?
  secs=$((SECONDS - start))
  cat "$log"
  local passed failed skipped
  passed=$(grep -c ' \.\.\. ok$' "$log") failed=$(grep -c ' \.\.\. \(FAIL\|ERROR\)$' "$log")
  skipped=$(grep -c ' \.\.\. skipped' "$log")
  ((c_pass += passed, c_fail += failed, c_skip += skipped))
  if ((rc == 124 || rc == 137)); then result=TIMEOUT
  elif ((rc != 0)); then result=FAILED
  elif ((passed == 0 && skipped > 0)); then result=skipped
  else result=passed
  fi
  case "$result" in
    passed) ((n_pass++)) ;;
    skipped) ((n_skip++)) ;;
    *) ((n_fail++)); failed_logs+=("$log") ;;
  esac
  rows+=("$(printf '%-28s %-9s %6s %6s %7s %6s  %s' "$name" "$result" "$passed" "$failed" "$skipped" "$secs" "")")
}

# Runs bundle/bench/NAME --copy-gbps=$copy_gbps (when it is in the bundle)
# within the time budget, logging to $out/NAME.log; sets the variables named
# NOTE_VAR (empty when it ran fine) and LINES_VAR (its last LINES non-blank
# lines, for the summary) and bench_fail on failure.
# shellcheck disable=SC2034  # note_ref, lines_ref: namerefs the caller reads
run_bench() {  # NAME TITLE LINES NOTE_VAR LINES_VAR
  local name=$1 title=$2 keep=$3
  local -n note_ref=$4 lines_ref=$5
  [[ -x "$bundle/bench/$name" ]] || return 0
  section "$title ($name${copy_gbps:+ --copy-gbps=$copy_gbps})"
  local limit rc
  limit=$(time_left "$moe_timeout_s" 0)
  if ((limit < 10)); then
    note_ref="NOT RUN (time budget spent)"; bench_fail=1
    return 0
  fi
  timeout -k 10 "$limit" "$bundle/bench/$name" ${copy_gbps:+--copy-gbps=$copy_gbps} \
    >"$out/$name.log" 2>&1
  rc=$?
  cat "$out/$name.log"
  if ((rc != 0)); then note_ref="FAILED (exit $rc; see $out/$name.log)"; bench_fail=1; fi
  lines_ref=$(grep -v '^[[:space:]]*$' "$out/$name.log" | tail -"$keep")
}

main() {
  echo "device_check.sh: bundle $bundle, logs in $out/, started $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname)"
  if [[ ! -d "$bundle/tests" && ! -d "$bundle/bench" && -f "$bundle.tar.xz" ]]; then
    section "unpacking $bundle.tar.xz"
    tar -xJf "$bundle.tar.xz" -C "$(dirname "$bundle")" || return 2
  fi
  if [[ ! -d "$bundle/tests" && ! -d "$bundle/bench" ]]; then
    if ((default_bundle)) && command -v bazel >/dev/null; then
      section "no bundle at $bundle: building it (tools/device_bundle.sh)"
      tools/device_bundle.sh || { echo "device_check.sh: tools/device_bundle.sh failed"; return 2; }
    else
      if ((default_bundle)); then
        echo "device_check.sh: no bundle at $bundle and no Bazel here to build one."
      else
        echo "device_check.sh: no bundle at $bundle (no tests/ or bench/ in it)."
      fi
      echo "  On the build machine (Bazel and the CUDA toolkit): tools/device_bundle.sh,"
      echo "  then bring .device/bundle (git-ignored: carry it explicitly) to this tree's"
      echo "  root, or pass --bundle DIR."
      return 2
    fi
  fi
  bench_reserve_s=$copy_timeout_s
  [[ -x "$bundle/bench/moe_layer_bench" ]] && bench_reserve_s=$((bench_reserve_s + 60))
  [[ -x "$bundle/bench/gpu_decode_bench" ]] && bench_reserve_s=$((bench_reserve_s + 60))
  [[ -x "$bundle/bench/moeserve" ]] && bench_reserve_s=$((bench_reserve_s + 150))

  section "machine"
  echo "os: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"), $(ldd --version 2>/dev/null | head -1)"
  if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi -L
    echo "driver: $(timeout 30 nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
  else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine?)"
    [[ -r /proc/driver/nvidia/version ]] && head -1 /proc/driver/nvidia/version
  fi
  local nvcc
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  if [[ -x "$nvcc" ]]; then "$nvcc" --version | tail -2; else echo "nvcc: not found"; fi
  [[ -r "$bundle/MANIFEST.txt" ]] && sed 's/^/bundle: /' "$bundle/MANIFEST.txt" | grep -v '^bundle: libraries:'

  section "libraries"
  local nccl nccl_dir="" t0=$SECONDS
  nccl=$(find_nccl)
  if [[ -n "$nccl" ]]; then
    nccl_dir=$(dirname "${nccl%% (*}")
    echo "libnccl.so.2: $nccl (found in $((SECONDS - t0)) s)"
  else
    echo "libnccl.so.2: not found (set NCCL_LIB_DIR); NCCL tests will fail to start"
  fi
  [[ "$nccl_dir" -ef /usr/local/cuda/lib64 ]] && nccl_dir=""
  local lib_dir
  lib_dir=$(cd "$bundle/lib" 2>/dev/null && pwd)
  LD_LIBRARY_PATH="${lib_dir:+$lib_dir:}/usr/local/cuda/lib64${nccl_dir:+:$nccl_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  local bin missing
  for bin in "$bundle"/tests/* "$bundle"/bench/*; do
    [[ -x "$bin" ]] || continue
    missing=$(ldd "$bin" 2>&1 | awk '/not found/ { print $1 }' | paste -sd' ')
    [[ -n "$missing" ]] && echo "WARNING: $(basename "$bin") cannot find: $missing"
  done

  section "tests ($bundle/tests, --gtest_brief=1, timeout ${test_timeout_s} s each)"
  for bin in "$bundle"/tests/*; do
    [[ -x "$bin" && -f "$bin" ]] && run_test "$bin"
  done
  run_e2e
  local f
  for f in "${failed_logs[@]}"; do
    section "$(basename "$f" .log) failed: last lines of $f"
    tail -15 "$f"
  done

  section "copy bandwidth (cuda_copy_bench)"
  local copy_gbps="" copy_method="" copy_note="" rc limit bench_fail=0
  if [[ -x "$bundle/bench/cuda_copy_bench" ]]; then
    limit=$(time_left "$copy_timeout_s" 0)
    timeout -k 10 "$limit" "$bundle/bench/cuda_copy_bench" >"$out/cuda_copy_bench.log" 2>&1
    rc=$?
    cat "$out/cuda_copy_bench.log"
    copy_gbps=$(sed -n 's/^copy_bandwidth_gbps=\([0-9.]*\)$/\1/p' "$out/cuda_copy_bench.log" | tail -1)
    copy_method=$(sed -n 's/^copy_method=//p' "$out/cuda_copy_bench.log" | tail -1)
    if grep -q '^SKIPPED' "$out/cuda_copy_bench.log" && ((rc == 0)); then
      copy_note="skipped (no CUDA device)"
    elif ((rc != 0)) || [[ -z "$copy_gbps" ]]; then
      copy_note="FAILED (exit $rc; see $out/cuda_copy_bench.log)"; bench_fail=1
    else
      copy_note="$copy_gbps GB/s read+write ($copy_method, median)"
    fi
  else
    copy_note="not in the bundle"
  fi
  echo "copy bandwidth: $copy_note"

  local moe_lines="" moe_note="" decode_lines="" decode_note=""
  run_bench moe_layer_bench "MoE layer" 30 moe_note moe_lines
  run_bench gpu_decode_bench "decode steps" 5 decode_note decode_lines
  local serve_lines="" serve_note=""
  if [[ -x "$bundle/bench/moeserve" ]]; then
    section "the GPU worker serving (bench/gpu_serving_bench.py)"
    limit=$(time_left 240 0)
    if ! timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
      serve_note="skipped (no GPU)"
    elif ((limit < 60)); then
      serve_note="NOT RUN (time budget spent)"; bench_fail=1
    else
      MOESERVE_BIN="$bundle/bench/moeserve" timeout -k 10 "$limit" python3 \
        bench/gpu_serving_bench.py --tokens 256 --repeats 2 --concurrency 1,4,16,64 ${copy_gbps:+--copy-gbps=$copy_gbps} \
        >"$out/gpu_serving_bench.log" 2>&1
      rc=$?
      cat "$out/gpu_serving_bench.log"
      ((rc != 0)) && { serve_note="FAILED (exit $rc; see $out/gpu_serving_bench.log)"; bench_fail=1; }
      serve_lines=$(grep -v '^[[:space:]]*$' "$out/gpu_serving_bench.log" | tail -15)
    fi
  fi

  section "summary (${SECONDS} s; logs in $out/)"
  printf '%-28s %-9s %6s %6s %7s %6s  %s\n' "test binary" result passed failed skipped secs note
  local r
  for r in "${rows[@]}"; do echo "${r%"${r##*[! ]}"}"; done  # without trailing blanks
  echo "test binaries: $n_pass passed, $n_fail failed, $n_skip skipped" \
    "(test cases: $c_pass passed, $c_fail failed, $c_skip skipped)"
  echo "copy bandwidth: $copy_note"
  if [[ -x "$bundle/bench/moe_layer_bench" ]]; then
    echo "moe_layer_bench: ${moe_note:-ok}"
    [[ -n "$moe_lines" ]] && echo "$moe_lines"
  fi
  if [[ -x "$bundle/bench/gpu_decode_bench" ]]; then
    echo "gpu_decode_bench: ${decode_note:-ok}"
    [[ -n "$decode_lines" ]] && echo "$decode_lines"
  fi
  if [[ -x "$bundle/bench/moeserve" ]]; then
    echo "gpu_serving_bench: ${serve_note:-ok}"
    [[ -n "$serve_lines" ]] && echo "$serve_lines"
  fi
  ((n_fail == 0 && bench_fail == 0))
}

main 2>&1 | tee "$out/device_check.log"
exit "${PIPESTATUS[0]}"
