#!/bin/bash
# Bazel wrapper: runs tests/tls_test.py with Debian's Python against the
# built moeserve binary.
export MOESERVE_BIN="$1"
exec /usr/bin/python3 tests/tls_test.py
