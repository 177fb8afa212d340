#!/bin/bash
# Bazel wrapper: runs tests/load_test.py with Debian's Python against the
# built moeserve binary.
export MOESERVE_BIN="$1"
exec /usr/bin/python3 tests/load_test.py
