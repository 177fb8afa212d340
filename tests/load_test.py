#!/usr/bin/python3
"""A bounded load test on loopback: 1,000 concurrent streaming requests, half
over gRPC (python3-grpcio) and half over the OpenAI HTTP API (SSE, Python's
http.client), against a 2-worker `moeserve local` cluster on the demo model.

Every request must complete with its tokens and no error. It reports (and
checks) the router's and workers' peak RSS (VmHWM) and open file
descriptors before and after: afterwards the counts must be back where they
started (no descriptor leaked per request).

    MOESERVE_BIN=bazel-bin/tools/moeserve /usr/bin/python3 tests/load_test.py
"""
import http.client
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, inference_pb2  # noqa: E402

MODEL = "models/austen-moe"
REQUESTS = int(os.environ.get("MOESERVE_LOAD_REQUESTS", "1000"))
TOKENS = 8


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def role(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    return args[1].decode() if len(args) > 1 else "?"


class LoadTest(unittest.TestCase):
    def test_a_thousand_concurrent_streams_complete(self):
        with Cluster(MODEL, 2, "--http-port", "0") as c:
            pids = sorted(c.child_pids())
            names = {p: role(p) for p in pids}
            c.generate(text="Warm", max_tokens=2)  # warm-up
            time.sleep(0.5)
            fds_before = {p: fds(p) for p in pids}
            host, port = c.http.rsplit(":", 1)
            results, lock = [], threading.Lock()
            start = threading.Barrier(REQUESTS + 1)

            def over_grpc(i):
                start.wait()
                t0 = time.time()
                try:
                    tokens, _, finish = c.generate(
                        timeout=300, text=f"Chapter {i}.", max_tokens=TOKENS, ignore_eos=True,
                        sampling=inference_pb2.SamplingParams(temperature=0.8, seed=i))
                    ok = len(tokens) == TOKENS and finish.usage.completion_tokens == TOKENS
                    err = None if ok else f"{len(tokens)} tokens"
                except Exception as e:  # noqa: BLE001 - reported below
                    err = repr(e)
                with lock:
                    results.append(("grpc", err, time.time() - t0))

            def over_http(i):
                start.wait()
                t0 = time.time()
                err = None
                try:
                    conn = http.client.HTTPConnection(host, int(port), timeout=300)
                    conn.request("POST", "/v1/completions", body=json.dumps({
                        "model": "austen-moe", "prompt": f"Letter {i}.", "max_tokens": TOKENS,
                        "ignore_eos": True, "seed": i, "stream": True,
                        "stream_options": {"include_usage": True}}),
                        headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    raw = r.read().decode()
                    conn.close()
                    if r.status != 200 or not raw.rstrip().endswith("data: [DONE]"):
                        err = f"HTTP {r.status}: {raw[-200:]}"
                    else:
                        usage = [json.loads(b[6:]) for b in raw.split("\n\n")
                                 if b.startswith("data: {") and '"usage"' in b]
                        if not usage or usage[-1]["usage"]["completion_tokens"] != TOKENS:
                            err = "no usage event with all the tokens"
                except Exception as e:  # noqa: BLE001 - reported below
                    err = repr(e)
                with lock:
                    results.append(("http", err, time.time() - t0))

            threads = [threading.Thread(target=over_grpc if i % 2 else over_http, args=(i,))
                       for i in range(REQUESTS)]
            for t in threads:
                t.start()
            t0 = time.time()
            start.wait()
            for t in threads:
                t.join()
            wall = time.time() - t0
            time.sleep(1.0)  # let the last calls' resources go
            errors = [r for r in results if r[1]]
            longest = max(r[2] for r in results)
            fds_after = {p: fds(p) for p in pids}
            print(f"{len(results)} requests ({sum(r[0] == 'grpc' for r in results)} gRPC, "
                  f"{sum(r[0] == 'http' for r in results)} HTTP) in {wall:.1f} s; "
                  f"{len(errors)} errors; longest request {longest:.1f} s")
            for p in pids:
                print(f"  {names[p]} (pid {p}): peak RSS {proc_status(p, 'VmHWM') / 1024:.0f} MiB, "
                      f"open fds {fds_before[p]} before, {fds_after[p]} after")
            self.assertEqual(len(results), REQUESTS)
            self.assertEqual(errors, [], errors[:5])
            for p in pids:
                self.assertLessEqual(fds_after[p], fds_before[p] + 2, names[p])
                self.assertLess(proc_status(p, "VmHWM"), 2 * 1024 * 1024, names[p])  # < 2 GiB


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
