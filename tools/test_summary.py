#!/usr/bin/python3
"""Prints `N passed, N failed, N skipped` for a `bazel test` run.

Reads the per-target status lines from Bazel's output and, for targets that
ran, the test cases in their test.xml. A target that failed to build, timed
out, was not run, or left no XML counts as one failure. Exit status 1 when
anything failed, else 0.

    test_summary.py BAZEL_OUTPUT_LOG BAZEL_TESTLOGS_DIR
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

STATUS = re.compile(r"^(//\S+)(?: \([^)]*\))?\s+(PASSED|FAILED TO BUILD|FAILED|NO STATUS|TIMEOUT|FLAKY|"
                    r"INCOMPLETE|REMOTE FAILURE|SKIPPED)\b")


def count_cases(xml_path):
    """(passed, failed, skipped) test cases in one test.xml, or None."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None or case.get("result") == "skipped" \
                or case.get("status") == "notrun":
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main():
    log, testlogs = sys.argv[1], sys.argv[2]
    passed = failed = skipped = 0
    failures = []
    with open(log, errors="replace") as f:
        for line in f:
            m = STATUS.match(line.strip())
            if not m:
                continue
            target, status = m.group(1), m.group(2)
            if status == "SKIPPED":
                skipped += 1
                continue
            xml = os.path.join(testlogs, target[2:].replace(":", "/"), "test.xml")
            counts = count_cases(xml) if status in ("PASSED", "FAILED", "FLAKY") else None
            if counts is None:
                if status == "PASSED":
                    passed += 1
                else:
                    failed += 1
                    failures.append(f"{target} ({status})")
                continue
            p, fl, s = counts
            if status == "FAILED" and fl == 0:
                fl = 1  # crashed or exited non-zero outside any test case
            passed, failed, skipped = passed + p, failed + fl, skipped + s
            if fl:
                failures.append(f"{target} ({fl} failed)")
    for f in failures:
        print("FAILED:", f)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
