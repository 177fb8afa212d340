#!/usr/bin/python3
"""Self-check of tests/reference/reference.py: recompute every fixture's logits a second way with
torch (float64) and assert they agree to 1e-9; then check the goldens against them.

    /usr/bin/python3 tests/reference/check_reference.py [--fixtures DIR]

The torch path shares nothing with reference.py: it parses config.json and the safetensors
files itself (torch.frombuffer, torch's own bfloat16/float16 upcast), attends over the whole
sequence with an explicit additive mask, and runs *every* expert on every token with einsum,
combining them through a dense [T, E] routing matrix built with torch.topk + scatter.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402
import safetensors_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
TOL = 1e-9
torch.set_default_dtype(torch.float64)

_TORCH_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32,
             "F64": torch.float64, "I64": torch.int64}


def torch_load_file(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(bytes(data[8:8 + n]))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = _TORCH_DT[info["dtype"]]
        if e > b:
            t = torch.frombuffer(data, dtype=dt, count=(e - b) // torch.tensor([], dtype=dt).element_size(),
                                 offset=base + b)
        else:
            t = torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out, meta


def torch_load_ckpt(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) \
        else ["model.safetensors"]
    w = {}
    for fn in files:
        t, _ = torch_load_file(os.path.join(d, fn))
        w.update(t)
    return {k: v.to(torch.float64) for k, v in w.items()}


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class TorchModel:
    def __init__(self, d):
        c = json.load(open(os.path.join(d, "config.json")))
        self.c = c
        self.w = torch_load_ckpt(d)
        self.arch = c["model_type"]
        self.H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.D = c.get("head_dim") or self.H // self.nh
        self.eps = c["rms_norm_eps"]
        rp = c.get("rope_parameters") or c.get("rope_scaling") or {}
        self.theta = rp.get("rope_theta") or c.get("rope_theta") or (1e6 if self.arch == "mixtral" else 1e4)
        self.window = c.get("sliding_window") if self.arch == "mixtral" else None
        self.E = c.get("num_local_experts") if self.arch == "mixtral" else c["num_experts"]
        self.k = c["num_experts_per_tok"]
        self.norm_topk = True if self.arch == "mixtral" else c.get("norm_topk_prob", False)

    def is_moe(self, i):
        if self.arch in ("qwen2_moe", "qwen3_moe"):
            return i not in (self.c.get("mlp_only_layers") or []) and (i + 1) % self.c.get("decoder_sparse_step", 1) == 0
        return True

    def lin(self, x, name, bias=None):
        b = self.w.get(bias) if bias else None
        return F.linear(x, self.w[name], b)

    def experts(self, p):
        w = self.w
        if self.arch == "mixtral":
            pre = p + ("block_sparse_moe." if p + "block_sparse_moe.gate.weight" in w else "mlp.")
            names = ("w1", "w3", "w2")
        else:
            pre, names = p + "mlp.", ("gate_proj", "up_proj", "down_proj")
        if pre + "experts.gate_up_proj" in w:
            g, u = w[pre + "experts.gate_up_proj"].chunk(2, dim=1)
            dn = w[pre + "experts.down_proj"]
        else:
            g = torch.stack([w[f"{pre}experts.{j}.{names[0]}.weight"] for j in range(self.E)])
            u = torch.stack([w[f"{pre}experts.{j}.{names[1]}.weight"] for j in range(self.E)])
            dn = torch.stack([w[f"{pre}experts.{j}.{names[2]}.weight"] for j in range(self.E)])
        return pre, g, u, dn

    def forward(self, ids):
        w, T = self.w, len(ids)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        pos = torch.arange(T, dtype=torch.float64)
        inv = 1.0 / (self.theta ** (torch.arange(0, self.D, 2, dtype=torch.float64) / self.D))
        emb = torch.cat([torch.outer(pos, inv)] * 2, dim=-1)
        cos, sin = emb.cos(), emb.sin()
        qi = torch.arange(T)[:, None]
        ki = torch.arange(T)[None, :]
        ok = ki <= qi
        if self.window:
            ok = ok & (ki > qi - self.window)
        mask = torch.zeros(T, T).masked_fill(~ok, float("-inf"))
        bias = self.arch == "qwen2_moe" and self.c.get("qkv_bias", True)
        abias = self.arch in ("qwen3_moe", "olmoe") and self.c.get("attention_bias", False)
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms(x, w[p + "input_layernorm.weight"], self.eps)
            bq = (p + "self_attn.q_proj.bias") if (bias or abias) else None
            bk = (p + "self_attn.k_proj.bias") if (bias or abias) else None
            bv = (p + "self_attn.v_proj.bias") if (bias or abias) else None
            q = self.lin(h, p + "self_attn.q_proj.weight", bq)
            k = self.lin(h, p + "self_attn.k_proj.weight", bk)
            v = self.lin(h, p + "self_attn.v_proj.weight", bv)
            if self.arch == "olmoe":
                q = rms(q, w[p + "self_attn.q_norm.weight"], self.eps)
                k = rms(k, w[p + "self_attn.k_norm.weight"], self.eps)
                clip = self.c.get("clip_qkv")
                if clip is not None:
                    q, k, v = q.clamp(-clip, clip), k.clamp(-clip, clip), v.clamp(-clip, clip)
            q = q.view(T, self.nh, self.D).transpose(0, 1)
            k = k.view(T, self.nkv, self.D).transpose(0, 1)
            v = v.view(T, self.nkv, self.D).transpose(0, 1)
            if self.arch == "qwen3_moe":
                q = rms(q, w[p + "self_attn.q_norm.weight"], self.eps)
                k = rms(k, w[p + "self_attn.k_norm.weight"], self.eps)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
            att = torch.softmax(q @ k.transpose(1, 2) * self.D ** -0.5 + mask, dim=-1) @ v
            a = self.lin(att.transpose(0, 1).reshape(T, self.nh * self.D), p + "self_attn.o_proj.weight",
                         (p + "self_attn.o_proj.bias") if abias else None)
            x = x + a
            h = rms(x, w[p + "post_attention_layernorm.weight"], self.eps)
            if self.is_moe(i):
                pre, g, u, dn = self.experts(p)
                probs = torch.softmax(F.linear(h, w[pre + "gate.weight"]), dim=-1)
                tv, ti = torch.topk(probs, self.k, dim=-1)
                if self.norm_topk:
                    tv = tv / tv.sum(-1, keepdim=True)
                comb = torch.zeros(T, self.E).scatter(1, ti, tv)
                act = F.silu(torch.einsum("th,efh->tef", h, g)) * torch.einsum("th,efh->tef", h, u)
                y = torch.einsum("tef,ehf->teh", act, dn)
                out = torch.einsum("te,teh->th", comb, y)
                if pre + "shared_expert_gate.weight" in w:
                    s = F.linear(F.silu(F.linear(h, w[pre + "shared_expert.gate_proj.weight"]))
                                 * F.linear(h, w[pre + "shared_expert.up_proj.weight"]),
                                 w[pre + "shared_expert.down_proj.weight"])
                    out = out + torch.sigmoid(F.linear(h, w[pre + "shared_expert_gate.weight"])) * s
                x = x + out
            else:
                x = x + F.linear(F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"]))
                                 * F.linear(h, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"])
        x = rms(x, w["model.norm.weight"], self.eps)
        head = w["model.embed_tokens.weight"] if self.c.get("tie_word_embeddings", False) else w["lm_head.weight"]
        return x @ head.T


def check_bf16_rounding():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * 10,
                        np.array([0.0, -0.0, 1.0, 1.00390625, 1.01171875, 3.0e38, -3.0e38, 1e-40, np.inf, -np.inf],
                                 dtype=np.float32)])
    # add exact ties: bf16 mantissa boundary values (low 16 bits == 0x8000)
    ties = (rng.integers(0x3F800000, 0x40800000, 1000, dtype=np.uint32) & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    x = np.concatenate([x, ties.view(np.float32)])
    ours = safetensors_io.f32_to_bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs), "f32 -> bf16 RNE differs from torch"
    back = safetensors_io.bf16_bits_to_f32(ours)
    assert np.array_equal(back, torch.from_numpy(theirs.view(np.int16)).view(torch.bfloat16).float().numpy())
    print("bf16 rounding: identical to torch on", x.size, "values (incl. ties)")


def check_fixture(d):
    name = os.path.basename(d)
    ref = reference.Model(d)
    tm = TorchModel(d)
    g, meta = torch_load_file(os.path.join(d, "golden.safetensors"))
    prompt = g["prompt_ids"].tolist()
    greedy = g["greedy_ids"].tolist()
    P, N = len(prompt), len(greedy)
    full = prompt + greedy[:-1]
    a = ref.forward(full)
    b = tm.forward(full).numpy()
    diff = float(np.abs(a - b).max())
    assert diff < TOL, f"{name}: reference vs torch max|diff| = {diff}"
    # goldens: prompt rows, decode rows (row i = position P-1+i), greedy = argmax, margin
    pl = g["prompt_logits"].double().numpy()
    dl = g["decode_logits"].double().numpy()
    scale = max(1.0, float(np.abs(b).max()))
    gp = float(np.abs(pl - b[:P]).max())
    gd = float(np.abs(dl - b[P - 1:P - 1 + N]).max())
    assert gp <= 1e-6 * scale and gd <= 1e-6 * scale, f"{name}: golden vs torch {gp} {gd}"
    assert np.array_equal(dl[0], pl[-1]), f"{name}: decode_logits[0] != prompt_logits[-1]"
    am = b[P - 1:P - 1 + N].argmax(axis=1).tolist()
    assert am == greedy, f"{name}: greedy ids are not the argmax of the torch logits"
    srt = np.sort(b[P - 1:P - 1 + N], axis=1)
    margin = float((srt[:, -1] - srt[:, -2]).min())
    assert abs(margin - float(meta["min_margin"])) < 1e-6, f"{name}: min_margin {margin} vs {meta['min_margin']}"
    assert margin >= 1e-3
    print(f"{name:32s} ref-vs-torch max|diff| {diff:.2e}  golden-vs-torch {max(gp, gd):.2e}  "
          f"T={len(full)} min_margin={margin:.4f}  OK")
    return diff


# ---- mutation sensitivity: each plausible loader/semantics mistake must visibly change the logits

def _rope_interleaved(self, x, pos):
    D = x.shape[-1]
    inv = self.cfg.rope_theta ** (-(np.arange(D // 2) * 2.0) / D)
    ang = pos[:, None] * inv[None, :]
    c, s_ = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s_
    out[..., 1::2] = x2 * c + x1 * s_
    return out


def _mutations(model):
    c = model.cfg
    muts = [("rope pairs (2i,2i+1) instead of (i,i+d/2)", lambda m: setattr(m, "rope", _rope_interleaved.__get__(m))),
            ("rope_theta 10000 <-> 1e6", lambda m: setattr(m.cfg, "rope_theta", 1e6 if c.rope_theta != 1e6 else 1e4)),
            ("norm_topk_prob flipped", lambda m: setattr(m.cfg, "norm_topk", not c.norm_topk)),
            ("(info) rms_norm_eps 1e-6 <-> 1e-5", lambda m: setattr(m.cfg, "eps", 1e-5 if c.eps != 1e-5 else 1e-6)),
            ("gate/up swapped in experts", lambda m: [L["moe"].update(gate=L["moe"]["up"], up=L["moe"]["gate"])
                                                    for L in m.layers if "moe" in L])]
    if c.arch == "mixtral":
        muts += [("sliding window ignored", lambda m: setattr(m.cfg, "sliding_window", None)),
                 ("sliding window off by one (W+1 keys)", lambda m: setattr(m.cfg, "sliding_window", c.sliding_window + 1))]
    if c.arch == "qwen2_moe":
        muts += [("qkv biases dropped", lambda m: setattr(m.cfg, "qkv_bias", False)),
                 ("sliding_window honoured although use_sliding_window=false",
                  lambda m: setattr(m.cfg, "sliding_window", m.cfg.raw["sliding_window"])),
                 ("shared expert gate not applied (no sigmoid)",
                  lambda m: [L["moe"].update(shared_gate=L["moe"]["shared_gate"] * 0 + 1e6) for L in m.layers if "moe" in L])]
    if c.qk_norm == "head":
        muts += [("q_norm/k_norm skipped", lambda m: setattr(m.cfg, "qk_norm", None))]
    if c.qk_norm == "full":
        muts += [("q_norm/k_norm skipped", lambda m: setattr(m.cfg, "qk_norm", None)),
                 ("clip_qkv ignored", lambda m: setattr(m.cfg, "clip_qkv", None))]
    if c.tie:
        muts += [("lm_head = row-reversed embedding instead of the tied one",
                  lambda m: setattr(m, "lm_head", m.embed[::-1].copy()))]
    return muts


def check_mutations(d):
    name = os.path.basename(d)
    g, _ = torch_load_file(os.path.join(d, "golden.safetensors"))
    full = g["prompt_ids"].tolist() + g["greedy_ids"].tolist()[:-1]
    P = len(g["prompt_ids"])
    base = reference.Model(d).forward(full)
    weakest = None
    for label, apply in _mutations(reference.Model(d)):
        m = reference.Model(d)
        apply(m)
        out = m.forward(full)
        delta = float(np.abs(out - base).max())
        flips = int((out[P - 1:].argmax(1) != base[P - 1:].argmax(1)).sum())
        if not label.startswith("(info)"):  # informational rows are too subtle to demand
            assert delta > 1e-2, f"{name}: mutation '{label}' changes logits by only {delta}"
            weakest = min(weakest or (delta, label), (delta, label))
        print(f"    {label:58s} max|dlogit| {delta:8.3f}  greedy flips {flips:2d}")
    return weakest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--no-mutations", action="store_true", help="skip the mutation-sensitivity check")
    a = ap.parse_args()
    check_bf16_rounding()
    dirs = sorted(os.path.join(a.fixtures, n) for n in os.listdir(a.fixtures)
                  if os.path.exists(os.path.join(a.fixtures, n, "golden.safetensors")))
    if not dirs:
        sys.exit("no fixtures found")
    worst = max(check_fixture(d) for d in dirs)
    print(f"all {len(dirs)} fixtures OK (worst reference-vs-torch diff {worst:.2e} < {TOL})")
    if not a.no_mutations:
        print("mutation sensitivity (each mistake must move some logit by > 1e-2):")
        for d in dirs:
            print("  " + os.path.basename(d))
            check_mutations(d)
        print("mutation sensitivity OK")


if __name__ == "__main__":
    main()
