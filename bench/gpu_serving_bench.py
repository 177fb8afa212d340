#!/usr/bin/python3
"""Decode throughput of one GPU worker serving through the whole stack
(router, gRPC, the engine's scheduler, sampling on the device), on a
Qwen3-30B-A3B-shaped model cut to a few layers with random bf16 weights.

    bench/gpu_serving_bench.py [--model DIR] [--layers 2] [--concurrency 1,64]
                               [--modes graphs,eager]

Makes the model with bench/make_bench_model.py when DIR has none, and for
each mode (graphs: the worker's default, decode steps replayed as CUDA
graphs; eager: --enforce-eager) starts `moeserve local --workers 1 --device
cuda:0` and for each concurrency C starts C `moeserve generate` clients at
once, each asking for --tokens tokens (--ignore-eos, --temperature) after a
16-token prompt. Two rates, each the median of --repeats runs:
  - wall tok/s: C * tokens over the wall time from the first client's start
    to the last one's end (client start-up and prefill included: a lower
    bound);
  - decode tok/s: the sum over the C streams of (tokens - 1) / (time from
    its first token to its end), as each client reports it: the rate while
    the streams decode together (vLLM's 1 / TPOT, summed).
Also the router's CPU per streamed token: the CPU time of all its threads
(/proc/PID/task/*/schedstat) over a round, over the tokens streamed. Only
the standard library (numpy for making the model), so it runs on the GPU
machine (tests/proc_util.py is standard library too).

The roofline is the bytes one decode step must read (attention and router
weights of every layer, the experts the batch hits, lm_head; KV cache of a
few hundred positions is negligible here) over --copy-gbps.
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from proc_util import children, cmdline, cpu_seconds  # noqa: E402
BIN = os.environ.get("MOESERVE_BIN", "bazel-bin/tools/moeserve")
SHAPE = dict(hidden=2048, experts=128, width=768, top_k=8, vocab=151936, heads=32, kv_heads=4,
             head_dim=128)


def make_model(path, layers):
    s = SHAPE
    cmd = [sys.executable, os.path.join(HERE, "make_bench_model.py"), path,
           "--hidden", str(s["hidden"]), "--experts", str(s["experts"]), "--expert-width",
           str(s["width"]), "--top-k", str(s["top_k"]), "--vocab", str(s["vocab"]),
           "--heads", str(s["heads"]), "--kv-heads", str(s["kv_heads"]), "--head-dim",
           str(s["head_dim"]), "--layers", str(layers)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"made {path} ({layers} layers) in {time.time() - t0:.0f} s", flush=True)


def step_bytes(batch, layers):
    s = SHAPE
    h, q = s["hidden"], s["heads"] * s["head_dim"]
    kv = s["kv_heads"] * s["head_dim"]
    attention = (q * h + 2 * kv * h + h * q) * 2
    router = s["experts"] * h * 2
    expert = 3 * h * s["width"] * 2
    hit = s["experts"] * (1 - (1 - s["top_k"] / s["experts"]) ** batch)
    return layers * (attention + router + hit * expert) + s["vocab"] * h * 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="/tmp/moeserve-gpu-bench")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--concurrency", default="1,64")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--copy-gbps", type=float, default=0)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--modes", default="graphs,eager")
    p.add_argument("--temperature", type=float, default=0.0)
    a = p.parse_args()
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        make_model(a.model, a.layers)
    with open(os.path.join(a.model, "config.json")) as f:
        config = json.load(f)
    layers, vocab = config["num_hidden_layers"], config["vocab_size"]
    levels = [int(c) for c in a.concurrency.split(",")]
    modes = a.modes.split(",")
    rows = {}
    for mode in modes:
        if mode not in ("graphs", "eager"):
            print(f"unknown mode {mode}")
            return 2
        rows[mode] = run_mode(a, mode, levels, layers, vocab)
        if rows[mode] is None:
            return 1
    print(f"\nGPU worker, {layers}-layer Qwen3-30B-A3B-shaped model, {a.tokens} tokens per "
          f"request, temperature {a.temperature}")
    print(f"{'mode':>7} {'concurrency':>11} {'wall tok/s':>10} {'decode tok/s':>12} "
          f"{'MB/step':>8} {'roofline tok/s':>15} {'decode/roofline':>15} {'router us/tok':>13}")
    for mode in modes:
        for c, wall, decode, mb, roof, router_us in rows[mode]:
            share = f"{100 * decode / roof:.1f} %" if roof else "-"
            print(f"{mode:>7} {c:>11} {wall:>10.0f} {decode:>12.0f} {mb:>8.0f} {roof:>15.0f} "
                  f"{share:>15} {router_us:>13.1f}")
    if "graphs" in rows and "eager" in rows:
        for (c, gw, gd, *_), (_, ew, ed, *_) in zip(rows["graphs"], rows["eager"]):
            print(f"concurrency {c}: graphs / eager = {gd / ed:.2f}x decode, "
                  f"{gw / ew:.2f}x wall")
    return 0


def router_pid(parent):
    """The router started by `moeserve local` (pid `parent`)."""
    for pid in children(parent):
        if cmdline(pid)[1:2] == ["router"]:
            return pid
    return None


STATS = re.compile(r"\[(\d+) prompt tokens, (\d+) generated, .*time to first token "
                   r"([0-9.]+) s, ([0-9.]+) tokens/s after it\]")


def run_mode(a, mode, levels, layers, vocab):
    t0 = time.time()
    cmd = [BIN, "local", "--model", a.model, "--workers", "1", "--device", a.device,
           "--grpc-port", "0", "--max-num-seqs", str(max(levels)), "--kv-cache-bytes",
           str(4 << 30)]
    if mode == "eager":
        cmd.append("--enforce-eager")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target, lines = None, []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("moeserve ready grpc="):
            target = line.split("grpc=", 1)[1].split()[0]
            break
    if target is None:
        print("the cluster did not start:\n" + "\n".join(lines))
        return None
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    print(f"[{mode}] cluster ready in {time.time() - t0:.1f} s: "
          + "; ".join(l for l in lines if "device=" in l), flush=True)
    rng = random.Random(1)
    router = router_pid(proc.pid)

    def one_round(c):
        prompts = [",".join(str(rng.randrange(vocab)) for _ in range(16))
                   for _ in range(c)]
        start = time.time()
        cpu0 = cpu_seconds(router) if router else 0.0
        procs = [subprocess.Popen([BIN, "generate", "--target", target, "--prompt-ids", pr,
                                   "--max-tokens", str(a.tokens), "--ignore-eos",
                                   "--temperature", str(a.temperature), "--seed", str(i),
                                   "--format", "text"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i, pr in enumerate(prompts)]
        got, decode = 0, 0.0
        for pc in procs:
            _, err = pc.communicate(timeout=300)
            m = STATS.search(err)
            if pc.returncode != 0 or m is None:
                raise SystemExit(f"a client failed (exit {pc.returncode}): {err}")
            got += int(m.group(2))
            decode += float(m.group(4))
        wall = time.time() - start
        router_us = (cpu_seconds(router) - cpu0) / got * 1e6 if router else 0.0
        if got != c * a.tokens:
            raise SystemExit(f"concurrency {c}: {got} tokens, wanted {c * a.tokens}")
        return got / wall, decode, router_us

    one_round(1)  # warm-up
    rows = []
    try:
        for c in levels:
            runs = [one_round(c) for _ in range(a.repeats)]
            wall = statistics.median(r[0] for r in runs)
            decode = statistics.median(r[1] for r in runs)
            router_us = statistics.median(r[2] for r in runs)
            mb = step_bytes(c, layers) / 1e6
            roof = (a.copy_gbps * 1e9 / (mb * 1e6)) * c if a.copy_gbps > 0 else 0
            rows.append((c, wall, decode, mb, roof, router_us))
            print(f"[{mode}] concurrency {c}: {wall:.0f} wall tok/s, {decode:.0f} decode tok/s, "
                  f"router {router_us:.1f} us CPU/token (medians of {a.repeats})", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return rows


if __name__ == "__main__":
    sys.exit(main())
