#!/usr/bin/python3
"""The cluster against the single-process engine, side by side in one run.

  1. `moeserve run`: batch-1 decode tokens/s (its own stderr report) on the
     benchmark model with all cores;
  2. `moeserve local` with 1, 2 and 4 workers (the cores divided among them):
     batch-1 decode tokens/s seen by a streaming gRPC client (first token to
     last), batch-8 throughput, and the share of the workers' step time spent
     in the MoE all-to-alls (GetStatus);
  3. the router's CPU time per streamed token (the sum of its threads' run time from
     /proc/PID/task/*/schedstat,
     before and after streaming 3 x N x 200 tokens from a tiny fixture, where the
     token rate is highest, at N = 1, 8 and 32 concurrent streams).

With --router-only, only 3 runs (no --model needed): one cluster, quickly.

    bazel build -c opt //tools:moeserve //proto:py_stubs
    /usr/bin/python3 bench/make_bench_model.py /tmp/moeserve-bench-model
    MOESERVE_BIN=bazel-bin/tools/moeserve /usr/bin/python3 bench/cluster_bench.py \
        --model /tmp/moeserve-bench-model
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import cluster_util  # noqa: E402
from cluster_util import BIN, Cluster, cpu_seconds, inference_pb2  # noqa: E402

PROMPT = list(range(10, 26))


def run_tok_s(model, tokens, threads):
    p = subprocess.run([BIN, "run", "--model", model, "--prompt-ids",
                        ",".join(map(str, PROMPT)), "--max-tokens", str(tokens),
                        "--ignore-eos", "--threads", str(threads)],
                       capture_output=True, timeout=600)
    m = re.search(r"([\d.]+) tokens/s after it", p.stderr.decode())
    if not m:
        raise RuntimeError(p.stderr.decode())
    return float(m.group(1))


def stream_tok_s(cluster, tokens):
    """Decode tokens/s of one stream: tokens after the first / time after the first."""
    first = last = None
    n = 0
    for chunk in cluster.stub.Generate(inference_pb2.GenerateRequest(
            token_ids=inference_pb2.TokenIds(ids=PROMPT), max_tokens=tokens, ignore_eos=True),
            timeout=600):
        now = time.perf_counter()
        if first is None and chunk.token_ids:
            first, n = now, len(chunk.token_ids) - 1
            continue
        n += len(chunk.token_ids)
        last = now
    return n / (last - first)


def batch_tok_s(cluster, tokens, streams):
    done, errors = [], []

    def one(i):
        try:
            one_stream(i)
        except Exception as e:  # noqa: BLE001 - reported after the join
            errors.append(e)

    def one_stream(i):
        toks, _, _ = cluster.generate(token_ids=inference_pb2.TokenIds(ids=[i + 3] + PROMPT),
                                      max_tokens=tokens, ignore_eos=True, timeout=600)
        done.append(len(toks))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.perf_counter() - t0)


def router_cpu(fixture):
    """Router CPU per streamed token at the highest token rate (tiny model)."""
    with Cluster(fixture, 1) as c:
        pid = c.router_pid()
        batch_tok_s(c, 20, 8)  # warm-up
        for streams in (1, 8, 32):
            before = cpu_seconds(pid)
            t0 = time.perf_counter()
            streamed = 0
            for _ in range(3):
                batch_tok_s(c, 200, streams)
                streamed += streams * 200
            wall = time.perf_counter() - t0
            after = cpu_seconds(pid)
            us = 1e6 * (after - before) / streamed
            print(f"router, tiny model, {streams} streams: {streamed} tokens streamed in "
                  f"{wall:.2f} s ({streamed / wall:.0f} tok/s); router CPU "
                  f"{after - before:.3f} s = {us:.1f} us per streamed token", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--router-only", action="store_true")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--router-fixture", default="tests/fixtures/qwen3_moe_f32")
    a = p.parse_args()
    if a.router_only:
        router_cpu(a.router_fixture)
        return
    if not a.model:
        p.error("--model is required (or --router-only)")
    cores = os.cpu_count()
    print(f"machine: {cores} cores; model {a.model}; {a.tokens} tokens after a "
          f"{len(PROMPT)}-token prompt; median of {a.repeats}")

    rows = []
    run_rates = []
    router_us = []
    for n in [int(x) for x in a.workers.split(",")]:
        # `moeserve run` measured again before each cluster: the host drifts.
        run_rate = statistics.median(run_tok_s(a.model, a.tokens, cores)
                                     for _ in range(a.repeats))
        run_rates.append(run_rate)
        with Cluster(a.model, n, timeout=600, threads=max(1, cores // n)) as c:
            stream_tok_s(c, 8)  # warm-up
            pid = c.router_pid()
            cpu0 = cpu_seconds(pid)
            rate = statistics.median(stream_tok_s(c, a.tokens) for _ in range(a.repeats))
            cpu1 = cpu_seconds(pid)
            batch = batch_tok_s(c, a.tokens, 8)
            cpu2 = cpu_seconds(pid)
            router_us.append((n, 1e6 * (cpu1 - cpu0) / (a.repeats * a.tokens),
                              1e6 * (cpu2 - cpu1) / (8 * a.tokens)))
            shares = []
            for r in range(n):
                st = c.worker_status(r)
                shares.append(st.all_to_all_seconds / st.step_seconds if st.step_seconds else 0)
            # Wake-ups: 20 one-token requests, each on an idle group.
            for _ in range(20):
                time.sleep(0.05)
                c.generate(token_ids=inference_pb2.TokenIds(ids=[7]), max_tokens=1,
                           ignore_eos=True)
            wakes = [c.worker_status(r) for r in range(n)]
            count = sum(w.wakes_by_peer for w in wakes)
            wake_mean = sum(w.wake_latency_seconds_sum for w in wakes) / count if count else 0
            wake_max = max(w.wake_latency_seconds_max for w in wakes)
        rows.append((n, run_rate, rate, batch, shares, wake_mean, wake_max))
        print(f"workers={n}: run {run_rate:.1f} tok/s | cluster batch-1 {rate:.1f} tok/s "
              f"({100 * rate / run_rate:.0f}% of run) | batch-8 {batch:.1f} tok/s | "
              f"all-to-all share of step per rank "
              f"{', '.join(f'{100 * s:.1f}%' for s in shares)} | ring-to-wake mean "
              f"{wake_mean * 1e6:.0f} us, max {wake_max * 1e6:.0f} us ({count} wakes)",
              flush=True)

    for n, one, eight in router_us:
        print(f"router CPU per streamed token, bench model, {n} worker(s): batch-1 {one:.1f} us, "
              f"batch-8 {eight:.1f} us")
    router_cpu(a.router_fixture)
    print("\n| workers | run tok/s | cluster batch-1 tok/s | cluster / run | cluster batch-8 tok/s"
          " | all-to-all share of step (per rank) | ring-to-wake mean / max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, run_rate, rate, batch, shares, wake_mean, wake_max in rows:
        print(f"| {n} | {run_rate:.1f} | {rate:.1f} | {100 * rate / run_rate:.0f}% | {batch:.1f} "
              f"| {', '.join(f'{100 * s:.1f}%' for s in shares)} | "
              + (f"{wake_mean * 1e6:.0f} / {wake_max * 1e6:.0f} us |" if n > 1 else "- |"))


if __name__ == "__main__":
    main()
