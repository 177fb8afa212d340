#!/bin/bash
# Installs the Debian 12 packages moeserve builds, tests and runs with, when
# missing (apt-get; sudo when not root). Sourced by tools/test.sh and
# tools/demo.sh; safe to run repeatedly.
#
# Build and run (tools/demo.sh): Bazel (bazel-bootstrap), Abseil, gRPC +
# Protobuf (C++ runtime, protoc and the gRPC plugins), Gloo (CPU
# collectives), GoogleTest/GoogleMock, OpenBLAS (pthread flavour),
# nlohmann-json, cpp-httplib (the OpenAI HTTP endpoint and /metrics),
# prometheus-cpp (the metrics text format), PCRE2 (tokenizer regexes),
# utf8proc (Unicode normalisation), g++.
# Tests only (tools/test.sh): prometheus (promtool and a real server), clang +
# libFuzzer (the fuzz targets), Node.js + npm (reference tokenizers), Python 3
# with grpcio and protobuf (the independent gRPC client), numpy and torch (the
# demo model's training script, run for two steps), wbritish (an English
# dictionary the demo-model test checks its text with), python3-yaml (the
# deploy tests read the rendered Kubernetes manifests), buildah (the image
# test builds deploy/docker/Dockerfile's runtime stage without a daemon).
# An entry `package:command` is skipped when `command` is already on PATH
# (e.g. a Node.js installed from elsewhere, which Debian's npm conflicts with).

MOESERVE_PACKAGES=(
  bazel-bootstrap
  libabsl-dev
  libgrpc++-dev
  libprotobuf-dev
  protobuf-compiler
  protobuf-compiler-grpc
  libgloo-dev
  libgtest-dev
  libgmock-dev
  libopenblas-dev
  libopenblas0-pthread
  nlohmann-json3-dev
  libcpp-httplib-dev
  prometheus-cpp-dev
  libpcre2-dev
  libutf8proc-dev
  g++
)

# Only the tests need these (`moeserve_install_deps test`); the demo does not.
MOESERVE_TEST_PACKAGES=(
  prometheus
  clang
  libclang-rt-14-dev
  libfuzzer-14-dev
  nodejs:node
  npm:npm
  python3:python3
  python3-grpcio
  python3-protobuf
  python3-numpy
  python3-torch
  wbritish
  python3-yaml
  buildah
)

# moeserve_install_deps [test]: the build's packages, and with `test` the
# tests' too.
moeserve_install_deps() {
  local missing=()
  local p entry
  local wanted=("${MOESERVE_PACKAGES[@]}")
  if [[ ${1:-} == test ]]; then
    wanted+=("${MOESERVE_TEST_PACKAGES[@]}")
  fi
  for entry in "${wanted[@]}"; do
    p=${entry%%:*}
    if [[ $entry == *:* ]] && command -v "${entry#*:}" >/dev/null 2>&1; then
      continue
    fi
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >&2 || return 1
}
