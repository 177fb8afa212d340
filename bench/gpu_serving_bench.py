#!/usr/bin/python3
"""Decode throughput of one GPU worker serving through the whole stack
(router, gRPC, the engine's scheduler and host-side sampling), on a
Qwen3-30B-A3B-shaped model cut to a few layers with random bf16 weights.

    bench/gpu_serving_bench.py [--model DIR] [--layers 2] [--concurrency 1,64]

Makes the model with bench/make_bench_model.py when DIR has none, starts
`moeserve local --workers 1 --device cuda:0`, and for each concurrency C
starts C `moeserve generate` clients at once, each asking for --tokens
greedy tokens (--ignore-eos) after a 16-token prompt. Output tokens/s is
C * tokens over the wall time from the first client's start to the last
one's end (client start-up and prefill included, so it is a lower bound on
the decode rate); the median of --repeats runs is printed. Only the
standard library (numpy for making the model), so it runs on the GPU machine.

The roofline is the bytes one decode step must read (attention and router
weights of every layer, the experts the batch hits, lm_head; KV cache of a
few hundred positions is negligible here) over --copy-gbps.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
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
    a = p.parse_args()
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        make_model(a.model, a.layers)
    with open(os.path.join(a.model, "config.json")) as f:
        config = json.load(f)
    layers, vocab = config["num_hidden_layers"], config["vocab_size"]
    levels = [int(c) for c in a.concurrency.split(",")]
    t0 = time.time()
    proc = subprocess.Popen([BIN, "local", "--model", a.model, "--workers", "1", "--device",
                             a.device, "--grpc-port", "0", "--max-num-seqs", str(max(levels)),
                             "--kv-cache-bytes", str(4 << 30)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target, lines = None, []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("moeserve ready grpc="):
            target = line.split("grpc=", 1)[1].split()[0]
            break
    if target is None:
        print("the cluster did not start:\n" + "\n".join(lines))
        return 1
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    print(f"cluster ready in {time.time() - t0:.1f} s: "
          + "; ".join(l for l in lines if "device=" in l), flush=True)
    rng = random.Random(1)

    def one_round(c):
        prompts = [",".join(str(rng.randrange(vocab)) for _ in range(16))
                   for _ in range(c)]
        start = time.time()
        procs = [subprocess.Popen([BIN, "generate", "--target", target, "--prompt-ids", pr,
                                   "--max-tokens", str(a.tokens), "--ignore-eos", "--format",
                                   "json"], stdout=subprocess.PIPE, text=True)
                 for pr in prompts]
        got = 0
        for pc in procs:
            out, _ = pc.communicate(timeout=300)
            got += len(json.loads(out)["token_ids"])
        wall = time.time() - start
        if got != c * a.tokens:
            raise SystemExit(f"concurrency {c}: {got} tokens, wanted {c * a.tokens}")
        return got / wall

    one_round(1)  # warm-up
    rows = []
    try:
        for c in levels:
            rates = [one_round(c) for _ in range(a.repeats)]
            rate = statistics.median(rates)
            mb = step_bytes(c, layers) / 1e6
            roof = (a.copy_gbps * 1e9 / (mb * 1e6)) * c if a.copy_gbps > 0 else 0
            rows.append((c, rate, mb, roof))
            print(f"concurrency {c}: {rate:.0f} output tok/s (median of "
                  f"{', '.join(f'{r:.0f}' for r in rates)})", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"\nGPU worker, {layers}-layer Qwen3-30B-A3B-shaped model, {a.tokens} tokens per "
          f"request (client start-up included)")
    print(f"{'concurrency':>11} {'tok/s':>8} {'MB/step':>8} {'roofline tok/s':>15} {'of roofline':>11}")
    for c, rate, mb, roof in rows:
        share = f"{100 * rate / roof:.1f} %" if roof else "-"
        print(f"{c:>11} {rate:>8.0f} {mb:>8.0f} {roof:>15.0f} {share:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
