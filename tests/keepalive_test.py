#!/usr/bin/python3
"""A peer that stops answering without closing its socket (a lost host, a
network partition, a frozen process) is noticed by keepalive pings, not
left to hang what depends on it. Played here with SIGSTOP, which keeps the
process's sockets open (the kernel still ACKs) while nothing answers an
HTTP/2 PING, against a 1-worker `moeserve local --keepalive 1` cluster on
the demo model.

  - A frozen worker: a client's stream that had tokens ends with
    UNAVAILABLE naming the lost worker, within BOUND_S, instead of waiting
    for its deadline; the router's health turns NOT_SERVING. After SIGCONT
    the worker has freed the request, the router reconnects (SERVING), and
    a greedy request gives the tokens it gave before.
  - A frozen router: the worker drops the router's stream within BOUND_S
    (its log says so), freeing whatever the router had placed there. After
    SIGCONT the router reconnects and serves the same greedy tokens.

Without keepalive (gRPC's defaults) neither happens: the stream waits for
its client's deadline, and the worker keeps a dead router's stream for
hours.

    MOESERVE_BIN=bazel-bin/tools/moeserve /usr/bin/python3 tests/keepalive_test.py
"""
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import Cluster, grpc, health, inference_pb2  # noqa: E402

MODEL = "models/austen-moe"
KEEPALIVE_S = 1
# Ping after 1 s of silence, give up 1 s later: noticed in about 2-3 s. A
# generous bound for a loaded CI machine; without keepalive, never.
BOUND_S = 20
PROMPT = [1, 2, 3, 4, 5]


def wait_for(predicate, bound_s):
    """Seconds until predicate() held, or None after bound_s."""
    start = time.monotonic()
    while time.monotonic() - start < bound_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def connections(cluster):
    """How many times the router has connected to a worker (its log)."""
    return sum(1 for line in cluster.stderr_lines
               if line.startswith("moeserve-router: worker") and "connected: rank" in line)


def greedy(cluster, max_tokens=24):
    tokens, _, _ = cluster.generate(timeout=60, token_ids=inference_pb2.TokenIds(ids=PROMPT),
                                    max_tokens=max_tokens)
    return tokens


class KeepaliveTest(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster(MODEL, 1, "--keepalive", str(KEEPALIVE_S))
        self.addCleanup(self.cluster.stop)
        self.before = greedy(self.cluster)
        self.assertEqual(len(self.before), 24)

    def freeze(self, pid):
        os.kill(pid, signal.SIGSTOP)
        resumed = []

        def resume():
            if not resumed:
                resumed.append(True)
                os.kill(pid, signal.SIGCONT)
        self.addCleanup(resume)  # never leave a stopped process behind
        return resume

    def test_a_frozen_worker_fails_its_stream_and_comes_back(self):
        c = self.cluster
        worker = c.child_pid("worker")
        stream = c.stub.Generate(
            inference_pb2.GenerateRequest(token_ids=inference_pb2.TokenIds(ids=PROMPT),
                                          max_tokens=1000, ignore_eos=True),
            timeout=60)
        first = next(stream)
        self.assertTrue(first.token_ids)
        resume = self.freeze(worker)
        frozen_at = time.monotonic()
        chunks, finish, error = 1, None, None
        try:
            for chunk in stream:
                chunks += 1
                if chunk.HasField("finish"):
                    finish = chunk.finish
        except grpc.RpcError as e:
            error = e
        ended_after = time.monotonic() - frozen_at
        print(f"frozen worker: the stream ended {ended_after:.2f} s after SIGSTOP "
              f"({chunks} chunks): {error.code() if error else 'finished'}", flush=True)
        self.assertIsNone(finish, "the request finished before the worker froze")
        self.assertIsNotNone(error)
        self.assertEqual(error.code(), grpc.StatusCode.UNAVAILABLE, error.details())
        self.assertIn("lost", error.details())
        self.assertLess(ended_after, BOUND_S)
        self.assertIsNotNone(wait_for(lambda: not health(c.channel), BOUND_S),
                             "health stayed SERVING with the only worker lost")
        resume()
        back = wait_for(lambda: health(c.channel), BOUND_S)
        self.assertIsNotNone(back, "the router did not reconnect:\n" + c.log())
        print(f"frozen worker: SERVING again {back:.2f} s after SIGCONT", flush=True)
        self.assertIsNotNone(wait_for(lambda: c.worker_status(0).active_requests == 0, BOUND_S),
                             "the worker kept the lost router stream's request")
        self.assertEqual(greedy(c), self.before)

    def test_a_frozen_router_is_dropped_by_the_worker(self):
        c = self.cluster
        router = c.child_pid("router")
        resume = self.freeze(router)
        ended = "the stream from router"
        dropped = wait_for(lambda: any(ended in line for line in c.stderr_lines), BOUND_S)
        print(f"frozen router: the worker dropped its stream "
              f"{dropped if dropped is None else f'{dropped:.2f} s'} after SIGSTOP", flush=True)
        self.assertIsNotNone(dropped, "the worker kept a frozen router's stream:\n" + c.log())
        line = next(line for line in c.stderr_lines if ended in line)
        self.assertIn("cancelled", line)
        resume()
        # Health may still say SERVING for a moment after SIGCONT, until the
        # router reads that its stream was closed: wait for the new stream.
        self.assertIsNotNone(wait_for(lambda: connections(c) >= 2, BOUND_S),
                             "the router did not reconnect:\n" + c.log())
        self.assertIsNotNone(wait_for(lambda: health(c.channel), BOUND_S))
        self.assertEqual(greedy(c), self.before)


if __name__ == "__main__":
    unittest.main(verbosity=2)
