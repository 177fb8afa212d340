#!/usr/bin/python3
"""Serving benchmark: continuous batching under concurrent load, as vLLM's
benchmark_serving measures it.

A `moeserve local` cluster on the benchmark model; for each concurrency C, C
client threads (python3-grpcio) each send requests back to back until
--requests-per-client have finished. Prompts and output lengths are drawn
at random (seeded), the same set for every C. Reported per C: output tokens/s
over the whole run, requests/s, time to first token (TTFT) and time per output
token after the first (TPOT), median and p99 over requests, the workers'
preemptions and prefix-cache hit rate from GetStatus, and the router's CPU time
per output token (all its threads, /proc/PID/task/*/schedstat).

    bazel build -c opt //tools:moeserve //proto:py_stubs
    /usr/bin/python3 bench/make_bench_model.py /tmp/moeserve-bench-model
    MOESERVE_BIN=bazel-bin/tools/moeserve /usr/bin/python3 bench/serving_bench.py \\
        --model /tmp/moeserve-bench-model
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from cluster_util import Cluster, cpu_seconds, inference_pb2  # noqa: E402


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def workload(n, vocab, seed, prompt_range, output_range):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        plen = rng.randint(*prompt_range)
        out.append(([rng.randrange(1, vocab) for _ in range(plen)], rng.randint(*output_range)))
    return out


def one_request(cluster, prompt, max_tokens):
    """(ttft, tpot, output tokens) of one streamed completion."""
    t0 = time.perf_counter()
    first = last = None
    n = 0
    for chunk in cluster.stub.Generate(inference_pb2.GenerateRequest(
            token_ids=inference_pb2.TokenIds(ids=prompt), max_tokens=max_tokens,
            ignore_eos=True), timeout=900):
        if chunk.token_ids:
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
            n += len(chunk.token_ids)
    tpot = (last - first) / (n - 1) if n > 1 else 0.0
    return first - t0, tpot, n


def run_level(cluster, concurrency, requests):
    """All of `requests` through `concurrency` client threads."""
    lock = threading.Lock()
    queue = list(requests)
    results, errors = [], []

    def client():
        while True:
            with lock:
                if not queue:
                    return
                prompt, m = queue.pop()
            try:
                r = one_request(cluster, prompt, m)
            except Exception as e:  # noqa: BLE001 - reported after the join
                with lock:
                    errors.append(e)
                return
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--min-requests", type=int, default=16)
    p.add_argument("--prompt", default="32,256", help="prompt length range MIN,MAX")
    p.add_argument("--output", default="32,128", help="output length range MIN,MAX")
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--extra", default="", help="extra `moeserve local` flags, space-separated")
    a = p.parse_args()
    prompt_range = tuple(int(x) for x in a.prompt.split(","))
    output_range = tuple(int(x) for x in a.output.split(","))
    levels = [int(x) for x in a.concurrency.split(",")]
    cores = os.cpu_count()
    print(f"machine: {cores} cores; model {a.model}; {a.workers} worker(s); prompts "
          f"{prompt_range[0]}-{prompt_range[1]} tokens, outputs {output_range[0]}-"
          f"{output_range[1]} tokens (random, seeded)")
    rows = []
    with Cluster(a.model, a.workers, *a.extra.split(), timeout=600,
                 threads=max(1, cores // a.workers)) as c:
        one_request(c, [5, 6, 7], 4)  # warm-up
        router = c.router_pid()
        for conc in levels:
            n = max(a.min_requests, conc * a.requests_per_client)
            reqs = workload(n, a.vocab, 1234 + conc, prompt_range, output_range)
            before = [c.worker_status(r) for r in range(a.workers)]
            cpu0 = cpu_seconds(router)
            wall, res = run_level(c, conc, reqs)
            cpu1 = cpu_seconds(router)
            after = [c.worker_status(r) for r in range(a.workers)]
            out_tokens = sum(r[2] for r in res)
            preempt = sum(x.preemptions - y.preemptions for x, y in zip(after, before))
            q = sum(x.prefix_cache_queries - y.prefix_cache_queries for x, y in zip(after, before))
            h = sum(x.prefix_cache_hits - y.prefix_cache_hits for x, y in zip(after, before))
            ttft = [r[0] for r in res]
            tpot = [r[1] for r in res if r[2] > 1]
            row = dict(conc=conc, n=n, wall=wall, tok_s=out_tokens / wall, req_s=n / wall,
                       ttft_med=statistics.median(ttft), ttft_p99=pct(ttft, 0.99),
                       tpot_med=statistics.median(tpot), tpot_p99=pct(tpot, 0.99),
                       preempt=preempt, hit=h / q if q else 0.0,
                       router_us=1e6 * (cpu1 - cpu0) / out_tokens)
            rows.append(row)
            print(f"concurrency {conc}: {n} requests in {wall:.1f} s, {row['tok_s']:.1f} "
                  f"output tok/s, TTFT median {1e3 * row['ttft_med']:.0f} ms, TPOT median "
                  f"{1e3 * row['tpot_med']:.1f} ms", flush=True)
    print()
    print("| concurrency | requests | output tok/s | vs 1 | req/s | TTFT median / p99 (ms) "
          "| TPOT median / p99 (ms) | preemptions | prefix hit rate | router CPU µs/token |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = rows[0]["tok_s"]
    for r in rows:
        print(f"| {r['conc']} | {r['n']} | {r['tok_s']:.1f} | {r['tok_s'] / base:.2f}x "
              f"| {r['req_s']:.2f} | {1e3 * r['ttft_med']:.0f} / {1e3 * r['ttft_p99']:.0f} "
              f"| {1e3 * r['tpot_med']:.1f} / {1e3 * r['tpot_p99']:.1f} | {r['preempt']} "
              f"| {100 * r['hit']:.1f}% | {r['router_us']:.1f} |")


if __name__ == "__main__":
    main()
