#!/bin/bash
# Bazel wrapper for the Python end-to-end tests: runs the script $2 with
# Debian's Python (grpcio, protobuf) against the built moeserve binary $1.
export MOESERVE_BIN="$1"
exec /usr/bin/python3 "$2"
