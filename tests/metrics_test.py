#!/usr/bin/python3
"""Prometheus metrics end to end: `moeserve local --metrics-port 0` with two
workers, scraped by hand and checked with `promtool check metrics`, then
scraped by a real Prometheus server (Debian's `prometheus`, on loopback with a
temporary config) while requests run: its query API must see the counters
move, every target up, and the names docs/metrics.md documents.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, grpc, inference_pb2  # noqa: E402

MODEL = "models/austen-moe"  # 8 experts; slow enough that a cancel lands mid-stream


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def documented_names():
    """Metric names listed in docs/metrics.md (`moeserve_...` in its tables)."""
    with open("docs/metrics.md", encoding="utf-8") as f:
        return set(re.findall(r"`(moeserve_[a-z_]+)`", f.read()))


def exported_names(text):
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (moeserve_[a-z_]+) ", line)
        if m:
            names.add(m.group(1))
    return names


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(MODEL, 2, "--metrics-port", "0")
        assert cls.cluster.metrics, "no `moeserve metrics` line:\n" + cls.cluster.log()
        cls.targets = [cls.cluster.metrics["router"]] + cls.cluster.metrics["workers"]

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def generate(self, n):
        for i in range(n):
            self.cluster.generate(token_ids=inference_pb2.TokenIds(ids=[3 + i, 5, 7]),
                                  max_tokens=12, ignore_eos=True)

    def test_promtool_accepts_every_endpoint_and_the_docs_match(self):
        self.generate(2)
        docs = documented_names()
        exported = set()
        for t in self.targets:
            text = get(f"http://{t}/metrics")
            p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, f"{t}: {p.stdout.decode()} {p.stderr.decode()}")
            exported |= exported_names(text)
        self.assertEqual(exported - docs, set(), "exported but not in docs/metrics.md")
        self.assertEqual(docs - exported, set(), "in docs/metrics.md but not exported")

    def test_a_real_prometheus_sees_the_values_move(self):
        tmp = tempfile.mkdtemp()
        port = free_port()
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: moeserve-router\n    static_configs:\n"
                    f"      - targets: ['{self.targets[0]}']\n"
                    "  - job_name: moeserve-worker\n    static_configs:\n"
                    f"      - targets: {json.dumps(self.targets[1:])}\n")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"

        def query(q):
            body = json.loads(get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": q})))
            self.assertEqual(body["status"], "success", body)
            return body["data"]["result"]

        def value(q):
            r = query(q)
            return float(r[0]["value"][1]) if r else None

        def wait_for(check, what, seconds=30):
            deadline = time.time() + seconds
            while time.time() < deadline:
                try:
                    if check():
                        return
                except (OSError, ValueError):
                    pass  # not up yet
                time.sleep(0.25)
            self.fail(f"Prometheus never saw {what}; cluster log:\n{self.cluster.log()[-3000:]}")

        try:
            wait_for(lambda: value("sum(up)") == 3, "all three targets up")
            before = value("sum(moeserve_generation_tokens_total)") or 0
            self.generate(4)
            call = self.cluster.stub.Generate(inference_pb2.GenerateRequest(
                token_ids=inference_pb2.TokenIds(ids=[9, 9]), max_tokens=1000, ignore_eos=True))
            next(call)
            call.cancel()
            with self.assertRaises(grpc.RpcError):
                self.cluster.generate(token_ids=inference_pb2.TokenIds(ids=[10 ** 6]))
            wait_for(lambda: (value("sum(moeserve_generation_tokens_total)") or 0) >= before + 48,
                     "48 more generated tokens at the router")
            wait_for(lambda: (value('sum(moeserve_request_success_total{finished_reason="abort"})')
                              or 0) >= 1, "the cancelled request")
            wait_for(lambda: (value('sum(moeserve_request_errors_total{code="INVALID_ARGUMENT"})')
                              or 0) >= 1, "the refused request")
            wait_for(lambda: (value("sum(moeserve_worker_generation_tokens_total)") or 0)
                     >= before + 48, "the workers' generated tokens")
            # Every expert of the model was routed some token, each counted once,
            # by the rank that hosts it.
            # Each worker is scraped on its own schedule: wait until the
            # scrape of every rank postdates its share of the work.
            wait_for(lambda: all(float(r["value"][1]) > 0
                                 for r in query("moeserve_expert_tokens_total")),
                     "tokens routed to every expert")
            experts = query("moeserve_expert_tokens_total")
            self.assertEqual(sorted(int(r["metric"]["expert"]) for r in experts), list(range(8)))
            self.assertTrue(all(float(r["value"][1]) > 0 for r in experts))
            self.assertEqual(value("count(moeserve_worker_up == 1)"), 2)
            self.assertGreater(value("sum(moeserve_time_to_first_token_seconds_count)"), 0)
            self.assertGreater(value("sum(moeserve_all_to_all_bytes_total)"), 0)
            self.assertEqual(value("max(moeserve_kv_cache_usage_perc)"), 0)  # all done
        finally:
            prom.terminate()
            try:
                prom.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prom.kill()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import junit_xml  # noqa: E402
    sys.exit(junit_xml.main(sys.modules[__name__]))
