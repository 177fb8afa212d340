"""Runs a unittest module and writes JUnit XML where Bazel asks for it.

Bazel reads $XML_OUTPUT_FILE when a test writes it, so tools/test.sh counts
each Python test case (passed, failed, skipped) instead of one per target.
"""
import os
import sys
import time
import unittest
from xml.sax.saxutils import quoteattr, escape


class _Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []  # (name, seconds, kind, message)
        self._start = 0.0

    def startTest(self, test):
        self._start = time.time()
        super().startTest(test)

    def _record(self, test, kind, message=""):
        self.cases.append((test.id(), time.time() - self._start, kind, message))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def main(module):
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(verbosity=2, resultclass=_Result)
    result = runner.run(suite)
    path = os.environ.get("XML_OUTPUT_FILE")
    if path:
        lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>",
                 f'<testsuite name={quoteattr(module.__name__)} tests="{len(result.cases)}">']
        for name, seconds, kind, message in result.cases:
            lines.append(f'<testcase name={quoteattr(name)} time="{seconds:.3f}">')
            if kind == "failure":
                lines.append(f"<failure message=\"failed\">{escape(message)}</failure>")
            elif kind == "skipped":
                lines.append(f"<skipped message={quoteattr(message)}/>")
            lines.append("</testcase>")
        lines += ["</testsuite>", "</testsuites>"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0 if result.wasSuccessful() else 1
