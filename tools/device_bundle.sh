#!/bin/bash
# Builds the GPU test and benchmark binaries with Bazel and packs them, with
# the shared libraries they need, into a directory that runs on a GPU machine
# without Bazel and without our Debian packages:
#
#   tools/device_bundle.sh              # here, on the build machine
#   (copy the working tree plus .device/ to the GPU machine)
#   tools/device_check.sh               # there: runs the tests and benches
#
# Why: the GPU machine has the NVIDIA driver, the CUDA toolkit and NCCL, but
# no Bazel, no abseil, gtest, Gloo or gRPC. So we build here with `-c opt`
# and carry the binaries. Layout of .device/bundle/:
#
#   tests/   every cc_test under //kernels/cuda/... and //collective:nccl_collective_test
#   bench/   //bench:cuda_copy_bench, and //bench:moe_layer_bench and
#            //bench:gpu_decode_bench when they exist
#   lib/     every shared library they load (`ldd`), real files under their
#            SONAME, except what the GPU machine has or must provide itself:
#            glibc (libc, libm, libdl, libpthread, librt, ld-linux...),
#            libstdc++, libgcc_s, the driver (libcuda*, libnvidia*), NCCL
#            (libnccl*, ~200 MB) and the CUDA toolkit (anything under
#            /usr/local/cuda*: libcudart, libcublas...).
#   MANIFEST.txt  commit, date, targets, and the glibc/libstdc++ symbol
#                 versions the bundle needs (the GPU machine's must be newer).
#
# Fails when a target does not build (--keep-going: leave it out, say so,
# and bundle the rest), when a library cannot be found, or when the bundle
# makes an archive (bundle.tar.xz) over 40 MiB (the tree and it must fit the 64 MiB that travel).
set -euo pipefail
cd "$(dirname "$0")/.."

keep_going=0
for arg in "$@"; do
  case "$arg" in
    --keep-going) keep_going=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_bundle.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

readonly bundle=.device/bundle
# What travels to the GPU machine is the compressed archive, beside the tree
# (64 MiB in all).
readonly max_xz_bytes=$((40 * 1024 * 1024))
# The CPU-only fallback would hide every CUDA target.
unset MOESERVE_NO_CUDA

command -v bazel >/dev/null || { echo "device_bundle.sh: bazel not found" >&2; exit 1; }

# query EXPR [optional]: the labels, one a line; an optional target that does
# not exist gives nothing, any other failure (a broken BUILD file) stops here.
query() {
  local out err
  err=$(mktemp)
  if out=$(bazel query --noshow_progress "$1" 2>"$err"); then
    [[ -z "$out" ]] || echo "$out"
  elif [[ -z "${2-}" ]]; then
    echo "device_bundle.sh: bazel query '$1' failed:" >&2
    cat "$err" >&2
    rm -f "$err"
    return 1
  fi
  rm -f "$err"
}

test_labels=$(query 'kind(cc_test, //kernels/cuda/...)') &&
  test_labels+=$'\n'$(query '//collective:nccl_collective_test' optional) &&
  test_labels+=$'\n'$(query '//engine:gpu_transformer_test' optional) &&
  test_labels+=$'\n'$(query '//engine:gpu_expert_parallel_test' optional) &&
  bench_labels=$(query '//bench:cuda_copy_bench' optional) &&
  bench_labels+=$'\n'$(query '//bench:moe_layer_bench' optional) &&
  bench_labels+=$'\n'$(query '//bench:gpu_decode_bench' optional) &&
  bench_labels+=$'\n'$(query '//tools:moeserve') || exit 1
mapfile -t tests < <(grep . <<<"$test_labels")
mapfile -t benches < <(grep . <<<"$bench_labels")
if ((${#tests[@]} == 0)) || [[ " ${benches[*]} " != *" //bench:cuda_copy_bench "* ]]; then
  echo "device_bundle.sh: no CUDA targets: Bazel did not find the CUDA toolkit" \
    "(nvcc in \$CUDA_PATH or /usr/local/cuda; see tools/bazel/cuda_configure.bzl)" >&2
  exit 1
fi
targets=("${tests[@]}" "${benches[@]}")
echo "== building ${#targets[@]} targets with -c opt: ${targets[*]}"
rm -rf "$bundle"  # a failed build leaves no bundle behind to be carried by mistake

broken=()
if ! bazel build -c opt --keep_going "${targets[@]}"; then
  # Find which ones failed (everything else is cached, so this is quick);
  # their old outputs may still lie in bazel-bin and must not be carried.
  for t in "${targets[@]}"; do
    bazel build -c opt --noshow_progress "$t" >/dev/null 2>&1 || broken+=("$t")
  done
  ((${#broken[@]})) || { echo "device_bundle.sh: bazel build failed" >&2; exit 1; }
  echo "device_bundle.sh: failed to build: ${broken[*]}" >&2
  ((keep_going)) || { echo "(--keep-going bundles the rest)" >&2; exit 1; }
fi
bin_dir=$(bazel info -c opt bazel-bin 2>/dev/null)

mkdir -p "$bundle/tests" "$bundle/bench" "$bundle/lib"

# //pkg/sub:name -> $bin_dir/pkg/sub/name, into tests/ or bench/.
binaries=()
built=()
for t in "${targets[@]}"; do
  [[ " ${broken[*]-} " == *" $t "* ]] && continue
  src="$bin_dir/${t#//}"
  src="${src/://}"
  case " ${tests[*]} " in *" $t "*) dest="$bundle/tests" ;; *) dest="$bundle/bench" ;; esac
  if [[ -e "$dest/$(basename "$src")" ]]; then
    echo "device_bundle.sh: two targets named $(basename "$src")" >&2
    exit 1
  fi
  install -m 0755 "$src" "$dest/"
  binaries+=("$dest/$(basename "$src")")
  built+=("$src")  # ldd runs on these: their RUNPATH ($ORIGIN/../_solib_k8) finds our own libraries
done

# Libraries the GPU machine has (or must have) itself.
excluded() {  # $1 = soname, $2 = resolved path
  case "$1" in
    linux-vdso.so* | ld-linux*.so* | libc.so.* | libm.so.* | libmvec.so.* | libdl.so.* | \
      libpthread.so.* | librt.so.* | libresolv.so.* | libutil.so.* | libanl.so.* | \
      libstdc++.so.* | libgcc_s.so.* | libcuda.so* | libcudart.so* | libnvidia* | libnccl*)
      return 0 ;;
  esac
  [[ "$2" == /usr/local/cuda* ]]
}

declare -A copied=()
missing=()
for b in "${built[@]}"; do
  while read -r soname arrow path _; do
    [[ "$arrow" == "=>" ]] || continue          # linux-vdso, ld-linux: no "=>"
    if [[ "$path" == "not" ]]; then missing+=("$soname (needed by $b)"); continue; fi
    excluded "$soname" "$path" && continue
    [[ -n "${copied[$soname]-}" ]] && continue
    install -m 0644 "$(readlink -f "$path")" "$bundle/lib/$soname"
    copied[$soname]=$path
  done < <(ldd "$b")
done
# The copies must find every library in lib/ alone, as they will there
# (excluded ones aside: here they come from the system and /usr/local/cuda).
for b in "${binaries[@]}"; do
  while read -r soname arrow path _; do
    [[ "$arrow" == "=>" && "$path" == "not" ]] || continue
    excluded "$soname" "" || missing+=("$soname (needed by $b with lib/ only)")
  done < <(env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$bundle/lib" ldd "$b")
done
if ((${#missing[@]})); then
  printf 'device_bundle.sh: ldd cannot find %s\n' "${missing[@]}" >&2
  exit 1
fi

# The newest glibc/libstdc++ symbol versions the bundle asks for.
newest() { objdump -T "$bundle"/tests/* "$bundle"/bench/* "$bundle"/lib/* 2>/dev/null |
  grep -o "$1[0-9.]*[0-9]" | sort -uV | tail -1; }
{
  echo "moeserve device bundle"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "built: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname) ($(. /etc/os-release; echo "$PRETTY_NAME"))"
  echo "compiler: $(gcc --version | head -1); $(/usr/local/cuda/bin/nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'nvcc ?')"
  echo "needs: $(newest GLIBC_) $(newest GLIBCXX_) $(newest CXXABI_), libcudart.so.13, libnccl.so.2 (built against $(sed -n 's/^#define NCCL_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' /usr/local/cuda/include/nccl.h 2>/dev/null | paste -sd.))"
  echo "tests: ${tests[*]}"
  echo "benches: ${benches[*]}"
  ((${#broken[@]})) && echo "NOT BUILT (left out): ${broken[*]}"
  echo "libraries: ${!copied[*]}"
} >"$bundle/MANIFEST.txt"

size=$(du -sb "$bundle" | cut -f1)
echo "== bundle $bundle: ${#binaries[@]} binaries, ${#copied[@]} libraries," \
  "$(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }') ($size bytes)"
du -sh "$bundle"/tests "$bundle"/bench "$bundle"/lib | sed 's/^/   /'
((${#broken[@]})) && echo "WARNING: not built, not in the bundle: ${broken[*]}"

# The same, compressed (~8 MB): what to carry to the GPU machine when the
# working tree plus the bundle would exceed what travels there.
rm -f "$bundle.tar.xz"
if ! tar -cJf "$bundle.tar.xz" -C "$(dirname "$bundle")" "$(basename "$bundle")"; then
  echo "device_bundle.sh: tar -cJf $bundle.tar.xz failed" >&2
  exit 1
fi
xz_size=$(stat -c %s "$bundle.tar.xz")
echo "== compressed: $bundle.tar.xz ($(du -h "$bundle.tar.xz" | cut -f1))"
if ((xz_size > max_xz_bytes)); then
  echo "device_bundle.sh: $bundle.tar.xz exceeds 40 MiB ($xz_size bytes)" >&2
  exit 1
fi
