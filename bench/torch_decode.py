#!/usr/bin/python3
"""Batch-1 decode tokens/s of the same Qwen3-30B-A3B-shaped model in PyTorch.

The side-by-side baseline for bench/decode_bench.cc: the same widths and
layer count, random weights, written the way Hugging Face's eager
Qwen3-MoE code runs (softmax router, top-k, a loop over the experts hit,
index_add_), with a growing KV cache. Run with Debian's PyTorch:

    /usr/bin/python3 bench/torch_decode.py --layers 2 --threads 2 --dtype bfloat16
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

H, E, FW, K, NH, NKV, D, V = 2048, 128, 768, 8, 32, 4, 128, 151936


def rms(x, w, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(x, pos, theta=1e6):
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = torch.outer(pos.float(), inv)
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rot = torch.cat([-x2, x1], -1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def make_layer(dtype):
    u = lambda *s: torch.empty(*s, dtype=dtype).uniform_(-0.03, 0.03)
    return {
        "in_norm": torch.ones(H, dtype=dtype), "post_norm": torch.ones(H, dtype=dtype),
        "q": u(NH * D, H), "k": u(NKV * D, H), "v": u(NKV * D, H), "o": u(H, NH * D),
        "q_norm": torch.ones(D, dtype=dtype), "k_norm": torch.ones(D, dtype=dtype),
        "gate": u(E, H),
        "experts": [(u(FW, H), u(FW, H), u(H, FW)) for _ in range(E)],
    }


def moe(x, L):
    logits = F.linear(x, L["gate"])
    w = F.softmax(logits, dim=1, dtype=torch.float)
    w, sel = torch.topk(w, K, dim=-1)
    w = (w / w.sum(-1, keepdim=True)).to(x.dtype)
    out = torch.zeros_like(x)
    mask = F.one_hot(sel, num_classes=E).permute(2, 1, 0)
    hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit:
        idx, top = torch.where(mask[e].squeeze(0))
        g, u_, d = L["experts"][e]
        cur = x[None, top].reshape(-1, H)
        y = F.linear(F.silu(F.linear(cur, g)) * F.linear(cur, u_), d) * w[top, idx, None]
        out.index_add_(0, top, y.to(x.dtype))
    return out


def layer_forward(x, L, cache, pos):
    h = rms(x, L["in_norm"])
    T = x.shape[0]
    q = rms(F.linear(h, L["q"]).view(T, NH, D), L["q_norm"])
    k = rms(F.linear(h, L["k"]).view(T, NKV, D), L["k_norm"])
    v = F.linear(h, L["v"]).view(T, NKV, D)
    q, k = rope(q, pos), rope(k, pos)
    cache["k"] = k if cache["k"] is None else torch.cat([cache["k"], k], 0)
    cache["v"] = v if cache["v"] is None else torch.cat([cache["v"], v], 0)
    kk = cache["k"].repeat_interleave(NH // NKV, dim=1).transpose(0, 1)
    vv = cache["v"].repeat_interleave(NH // NKV, dim=1).transpose(0, 1)
    s = torch.matmul(q.transpose(0, 1), kk.transpose(1, 2)) / D ** 0.5
    S = kk.shape[1]
    causal = torch.arange(S)[None, :] <= pos[:, None]
    s = s.masked_fill(~causal[None], float("-inf"))
    a = torch.matmul(F.softmax(s.float(), -1).to(x.dtype), vv).transpose(0, 1).reshape(T, NH * D)
    x = x + F.linear(a, L["o"])
    return x + moe(rms(x, L["post_norm"]), L)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    embed = torch.empty(V, H, dtype=dtype).uniform_(-0.05, 0.05)
    lm_head = torch.empty(V, H, dtype=dtype).uniform_(-0.05, 0.05)
    final_norm = torch.ones(H, dtype=dtype)
    layers = [make_layer(dtype) for _ in range(args.layers)]
    steps = []
    with torch.inference_mode():
        for r in range(args.repeats + 1):
            caches = [{"k": None, "v": None} for _ in layers]
            ids = torch.randint(0, V, (args.prompt,))
            pos = torch.arange(args.prompt)
            x = embed[ids]
            for L, c in zip(layers, caches):
                x = layer_forward(x, L, c, pos)
            logits = F.linear(rms(x[-1:], final_norm), lm_head)
            for i in range(args.tokens):
                tok = logits.argmax(-1)
                t0 = time.perf_counter()
                x = embed[tok]
                p = torch.tensor([args.prompt + i])
                for L, c in zip(layers, caches):
                    x = layer_forward(x, L, c, p)
                logits = F.linear(rms(x, final_norm), lm_head)
                if r > 0:
                    steps.append(time.perf_counter() - t0)
    step = statistics.median(steps)
    print(f"torch {torch.__version__} eager decode, batch 1, {args.layers} layers, {args.dtype}, "
          f"{args.threads} threads: median step {step * 1e3:.2f} ms, {1 / step:.2f} tokens/s")
    print(f'JSON {{"layers": {args.layers}, "dtype": "{args.dtype}", "threads": {args.threads}, '
          f'"tok_s": {1 / step:.3f}}}')


if __name__ == "__main__":
    main()
