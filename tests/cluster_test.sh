#!/bin/bash
# Bazel wrapper: runs tests/cluster_test.py with Debian's Python (grpcio,
# protobuf) against the built moeserve binary, with $2 workers.
export MOESERVE_BIN="$1"
export MOESERVE_CLUSTER_WORKERS="$2"
exec /usr/bin/python3 tests/cluster_test.py
