#!/usr/bin/python3
"""Independent float64 reference forward pass for Hugging Face MoE causal LMs.

Supported: MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM,
read straight from a HF checkpoint directory (config.json + model.safetensors or sharded
model-*.safetensors + model.safetensors.index.json). Written from the math with numpy in
float64; weights stored as BF16/F16 are upcast exactly. Full recompute, no KV cache: this is
the reference, not an engine.

Semantics (each verified against the transformers source, see tests/reference/README.md):
  x = embed[ids]
  per layer:  h = x + Attn(RMSNorm_in(x));  x = h + FFN(RMSNorm_post(h))
  RMSNorm(v) = v / sqrt(mean(v^2) + eps) * w
  Attn: q,k,v = projections (+bias: qwen2_moe `qkv_bias` (default true) on q/k/v only;
        `attention_bias` on q/k/v/o for qwen3_moe/olmoe; none for mixtral)
        olmoe:  q = RMSNorm_{q_norm}(q) over the whole projection, k likewise; then, if
                clip_qkv, q,k,v are clamped to [-clip, clip] (norm first, then clamp)
        qwen3_moe: q_norm/k_norm = RMSNorm over head_dim, per head, before RoPE
        RoPE, rotate-half pairing (i, i + d/2), inv_freq_i = theta^(-2i/d), position = index
        scores = q.k / sqrt(head_dim); causal; mixtral sliding window W: query p sees keys
        j with p - W < j <= p; GQA: query head h reads kv head h // (n_heads / n_kv_heads)
  FFN dense (SwiGLU): down(silu(gate(x)) * up(x))
  FFN MoE: p = softmax(router(x)) over all E; top-k by p; renormalise the k weights
        (mixtral always; others iff norm_topk_prob); out = sum_k w_k * expert_k(x)
        qwen2_moe adds sigmoid(shared_expert_gate(x)) * shared_expert(x)
  logits = RMSNorm_final(x) @ lm_head^T  (lm_head = embed_tokens when tie_word_embeddings)

Usage:  /usr/bin/python3 tests/reference/reference.py CKPT_DIR --ids 1,2,3 [--generate N]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

SUPPORTED = {
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "OlmoeForCausalLM": "olmoe",
}

# transformers' per-config defaults, used when config.json omits a field
_DEFAULT_THETA = {"mixtral": 1e6, "qwen2_moe": 10000.0, "qwen3_moe": 10000.0, "olmoe": 10000.0}
_DEFAULT_EPS = {"mixtral": 1e-5, "qwen2_moe": 1e-6, "qwen3_moe": 1e-6, "olmoe": 1e-5}


class Config:
    """The subset of config.json the forward pass needs, with HF's defaults and validation."""

    def __init__(self, cfg):
        self.raw = cfg
        arch = None
        for a in cfg.get("architectures") or []:
            if a in SUPPORTED:
                arch = SUPPORTED[a]
        if arch is None:
            arch = cfg.get("model_type")
        if arch not in _DEFAULT_THETA:
            raise ValueError(f"unsupported architecture {cfg.get('architectures')} / {cfg.get('model_type')}")
        if cfg.get("model_type") not in (None, arch):
            raise ValueError(f"model_type {cfg.get('model_type')} does not match architecture {arch}")
        self.arch = arch
        self.hidden = int(cfg["hidden_size"])
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        kv = cfg.get("num_key_value_heads")
        self.kv_heads = int(kv) if kv is not None else self.heads
        if self.heads % self.kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        hd = cfg.get("head_dim")
        self.head_dim = int(hd) if hd else self.hidden // self.heads
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for RoPE")
        self.vocab = int(cfg["vocab_size"])
        self.eps = float(cfg.get("rms_norm_eps", _DEFAULT_EPS[arch]))
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act {act} unsupported")

        # RoPE: v5 `rope_parameters` (or v4 `rope_scaling`) dict; rope_theta inside it wins over
        # a top-level rope_theta; otherwise the config class default.
        rp = cfg.get("rope_parameters")
        if rp is None:
            rp = cfg.get("rope_scaling")
        rp = dict(rp or {})
        if rp and not isinstance(rp.get("rope_theta", 0), (int, float)):
            raise ValueError("per-layer-type rope_parameters are not supported")
        rtype = rp.get("rope_type", rp.get("type", "default"))
        if rtype != "default":
            raise ValueError(f"rope_type {rtype!r} unsupported (only default RoPE)")
        theta = rp.get("rope_theta")
        if theta is None:
            theta = cfg.get("rope_theta")
        if theta is None:
            theta = _DEFAULT_THETA[arch]
        self.rope_theta = float(theta)
        prf = rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
        if float(prf) != 1.0:
            raise ValueError("partial_rotary_factor != 1 unsupported")

        # Attention variants
        self.sliding_window = None
        if arch == "mixtral":
            sw = cfg.get("sliding_window")
            self.sliding_window = int(sw) if sw else None
            self.qkv_bias = False
            self.o_bias = False
        elif arch == "qwen2_moe":
            # Qwen2-MoE: qkv_bias (default True; older transformers hard-code bias=True on q/k/v);
            # o_proj never has a bias.
            self.qkv_bias = bool(cfg.get("qkv_bias", True))
            self.o_bias = False
        else:
            ab = bool(cfg.get("attention_bias", False))
            self.qkv_bias = ab
            self.o_bias = ab
        if arch in ("qwen2_moe", "qwen3_moe") and cfg.get("use_sliding_window", False):
            # transformers ignores sliding_window unless use_sliding_window is set; the
            # layer-selection rules for the set case differ across versions: refuse.
            raise ValueError("use_sliding_window=true is not supported by the reference")
        if arch == "olmoe":
            if self.heads * self.head_dim != self.hidden:
                raise ValueError("olmoe q_norm is over hidden_size: needs heads*head_dim == hidden")
            c = cfg.get("clip_qkv")
            self.clip_qkv = float(c) if c is not None else None
        else:
            self.clip_qkv = None
        self.qk_norm = {"qwen3_moe": "head", "olmoe": "full"}.get(arch)

        # MoE
        self.top_k = int(cfg["num_experts_per_tok"])
        if arch == "mixtral":
            self.experts = int(cfg.get("num_local_experts", cfg.get("num_experts", 8)))
            self.expert_ffn = int(cfg["intermediate_size"])
            self.norm_topk = True
        elif arch == "olmoe":
            self.experts = int(cfg.get("num_experts", cfg.get("num_local_experts", 64)))
            self.expert_ffn = int(cfg["intermediate_size"])
            self.norm_topk = bool(cfg.get("norm_topk_prob", False))
        else:
            self.experts = int(cfg["num_experts"])
            self.expert_ffn = int(cfg["moe_intermediate_size"])
            self.norm_topk = bool(cfg.get("norm_topk_prob", False))
        self.dense_ffn = int(cfg["intermediate_size"])
        self.shared_ffn = int(cfg.get("shared_expert_intermediate_size", 0)) if arch == "qwen2_moe" else 0
        if arch in ("qwen2_moe", "qwen3_moe"):
            step = int(cfg.get("decoder_sparse_step", 1))
            only = set(int(i) for i in (cfg.get("mlp_only_layers") or []))
            self.moe_layer = [(i not in only) and self.experts > 0 and (i + 1) % step == 0
                              for i in range(self.layers)]
        else:
            self.moe_layer = [True] * self.layers


def load_config(ckpt_dir):
    with open(os.path.join(ckpt_dir, "config.json")) as f:
        return Config(json.load(f))


class Model:
    def __init__(self, ckpt_dir):
        self.cfg = c = load_config(ckpt_dir)
        w, self.stored_dtypes = safetensors_io.load_checkpoint_f64(ckpt_dir)
        self._used = set()

        def take(name, shape=None, optional=False):
            if name not in w:
                if optional:
                    return None
                raise KeyError(f"missing tensor {name}")
            self._used.add(name)
            t = w[name]
            if shape is not None and tuple(t.shape) != tuple(shape):
                raise ValueError(f"{name}: shape {t.shape}, expected {tuple(shape)}")
            return t

        H, D, nh, nkv = c.hidden, c.head_dim, c.heads, c.kv_heads
        self.embed = take("model.embed_tokens.weight", (c.vocab, H))
        self.final_norm = take("model.norm.weight", (H,))
        if c.tie:
            self.lm_head = self.embed
            if "lm_head.weight" in w:  # transformers re-ties it to the embedding
                self._used.add("lm_head.weight")
        else:
            self.lm_head = take("lm_head.weight", (c.vocab, H))

        self.layers = []
        for i in range(c.layers):
            p = f"model.layers.{i}."
            L = {
                "in_norm": take(p + "input_layernorm.weight", (H,)),
                "post_norm": take(p + "post_attention_layernorm.weight", (H,)),
                "q": take(p + "self_attn.q_proj.weight", (nh * D, H)),
                "k": take(p + "self_attn.k_proj.weight", (nkv * D, H)),
                "v": take(p + "self_attn.v_proj.weight", (nkv * D, H)),
                "o": take(p + "self_attn.o_proj.weight", (H, nh * D)),
            }
            if c.qkv_bias:
                L["q_b"] = take(p + "self_attn.q_proj.bias", (nh * D,))
                L["k_b"] = take(p + "self_attn.k_proj.bias", (nkv * D,))
                L["v_b"] = take(p + "self_attn.v_proj.bias", (nkv * D,))
            if c.o_bias:
                L["o_b"] = take(p + "self_attn.o_proj.bias", (H,))
            if c.qk_norm == "head":
                L["q_norm"] = take(p + "self_attn.q_norm.weight", (D,))
                L["k_norm"] = take(p + "self_attn.k_norm.weight", (D,))
            elif c.qk_norm == "full":
                L["q_norm"] = take(p + "self_attn.q_norm.weight", (nh * D,))
                L["k_norm"] = take(p + "self_attn.k_norm.weight", (nkv * D,))

            if c.moe_layer[i]:
                L["moe"] = self._load_moe(p, take, w)
            else:
                F = c.dense_ffn
                L["mlp"] = (take(p + "mlp.gate_proj.weight", (F, H)),
                            take(p + "mlp.up_proj.weight", (F, H)),
                            take(p + "mlp.down_proj.weight", (H, F)))
            self.layers.append(L)
        unused = sorted(set(w) - self._used)
        if unused:
            raise ValueError(f"checkpoint has tensors the model does not use: {unused[:8]}")

    def _load_moe(self, p, take, w):
        c = self.cfg
        H, E, F = c.hidden, c.experts, c.expert_ffn
        # Mixtral: per-expert weights live under block_sparse_moe (w1 = gate, w3 = up, w2 = down);
        # transformers v5 renames the block to `mlp` and merges the experts.
        if c.arch == "mixtral" and (p + "block_sparse_moe.gate.weight") in w:
            pre = p + "block_sparse_moe."
        else:
            pre = p + "mlp."
        names = ("w1", "w3", "w2") if c.arch == "mixtral" else ("gate_proj", "up_proj", "down_proj")
        m = {"router": take(pre + "gate.weight", (E, H))}
        if (pre + "experts.gate_up_proj") in w:
            # merged (transformers v5): gate_up_proj [E, 2F, H] = concat(gate, up) on dim 1
            gu = take(pre + "experts.gate_up_proj", (E, 2 * F, H))
            m["gate"], m["up"] = gu[:, :F, :], gu[:, F:, :]
            m["down"] = take(pre + "experts.down_proj", (E, H, F))
        else:
            m["gate"] = np.stack([take(f"{pre}experts.{j}.{names[0]}.weight", (F, H)) for j in range(E)])
            m["up"] = np.stack([take(f"{pre}experts.{j}.{names[1]}.weight", (F, H)) for j in range(E)])
            m["down"] = np.stack([take(f"{pre}experts.{j}.{names[2]}.weight", (H, F)) for j in range(E)])
        if c.arch == "qwen2_moe":
            S = c.shared_ffn
            m["shared"] = (take(pre + "shared_expert.gate_proj.weight", (S, H)),
                           take(pre + "shared_expert.up_proj.weight", (S, H)),
                           take(pre + "shared_expert.down_proj.weight", (H, S)))
            m["shared_gate"] = take(pre + "shared_expert_gate.weight", (1, H))
        return m

    # ---- math -------------------------------------------------------------------------------

    def rms_norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.cfg.eps) * w

    @staticmethod
    def sigmoid(x):
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow

    @classmethod
    def silu(cls, x):
        return x * cls.sigmoid(x)

    def rope(self, x, pos):
        """x [T, n, D]; rotate-half RoPE at integer positions pos [T]."""
        D = x.shape[-1]
        half = D // 2
        inv_freq = self.cfg.rope_theta ** (-(np.arange(half, dtype=np.float64) * 2.0) / D)
        ang = pos.astype(np.float64)[:, None] * inv_freq[None, :]           # [T, D/2]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def attention(self, L, x, aux):
        c = self.cfg
        T = x.shape[0]
        D, nh, nkv = c.head_dim, c.heads, c.kv_heads
        q = x @ L["q"].T
        k = x @ L["k"].T
        v = x @ L["v"].T
        if c.qkv_bias:
            q, k, v = q + L["q_b"], k + L["k_b"], v + L["v_b"]
        if c.qk_norm == "full":
            q = self.rms_norm(q, L["q_norm"])
            k = self.rms_norm(k, L["k_norm"])
        if c.clip_qkv is not None:
            lim = c.clip_qkv
            aux["clipped"] += int((np.abs(q) > lim).sum() + (np.abs(k) > lim).sum() + (np.abs(v) > lim).sum())
            aux["clip_total"] += q.size + k.size + v.size
            q, k, v = np.clip(q, -lim, lim), np.clip(k, -lim, lim), np.clip(v, -lim, lim)
        q = q.reshape(T, nh, D)
        k = k.reshape(T, nkv, D)
        v = v.reshape(T, nkv, D)
        if c.qk_norm == "head":
            q = self.rms_norm(q, L["q_norm"])
            k = self.rms_norm(k, L["k_norm"])
        pos = np.arange(T)
        q = self.rope(q, pos)
        k = self.rope(k, pos)
        allowed = pos[None, :] <= pos[:, None]                 # [query, key] causal
        if c.sliding_window is not None:
            allowed &= pos[None, :] > pos[:, None] - c.sliding_window
        rep = nh // nkv
        out = np.empty((T, nh, D))
        for h in range(nh):
            kh = k[:, h // rep, :]
            vh = v[:, h // rep, :]
            s = (q[:, h, :] @ kh.T) / np.sqrt(D)
            s = np.where(allowed, s, -np.inf)
            s = s - s.max(axis=1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=1, keepdims=True)
            out[:, h, :] = pr @ vh
        y = out.reshape(T, nh * D) @ L["o"].T
        if c.o_bias:
            y = y + L["o_b"]
        return y

    def swiglu(self, x, gate, up, down):
        return (self.silu(x @ gate.T) * (x @ up.T)) @ down.T

    def moe(self, m, x, aux):
        c = self.cfg
        logits = x @ m["router"].T                              # [T, E]
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            order = sorted(range(c.experts), key=lambda e: (-probs[t, e], e))
            sel = order[:c.top_k]
            if c.top_k < c.experts:  # gap at the top-k boundary, in router-logit units
                gap = logits[t, order[c.top_k - 1]] - logits[t, order[c.top_k]]
                aux["min_router_gap"] = min(aux["min_router_gap"], float(gap))
            wts = probs[t, sel]
            if c.norm_topk:
                wts = wts / wts.sum()
            xt = x[t:t + 1]
            for e, wgt in zip(sel, wts):
                out[t] += wgt * self.swiglu(xt, m["gate"][e], m["up"][e], m["down"][e])[0]
                aux["expert_hits"][e] = aux["expert_hits"].get(e, 0) + 1
        if "shared" in m:
            g = self.sigmoid(x @ m["shared_gate"].T)                  # [T, 1]
            out = out + g * self.swiglu(x, *m["shared"])
        return out

    def forward(self, ids, return_aux=False):
        """ids: sequence of token ids (positions 0..T-1). Returns float64 logits [T, vocab]."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("ids must be a non-empty 1-D sequence")
        if ids.min() < 0 or ids.max() >= self.cfg.vocab:
            raise ValueError("token id out of range")
        aux = {"min_router_gap": np.inf, "clipped": 0, "clip_total": 0, "expert_hits": {}}
        x = self.embed[ids]
        for L in self.layers:
            x = x + self.attention(L, self.rms_norm(x, L["in_norm"]), aux)
            hn = self.rms_norm(x, L["post_norm"])
            if "moe" in L:
                x = x + self.moe(L["moe"], hn, aux)
            else:
                x = x + self.swiglu(hn, *L["mlp"])
        logits = self.rms_norm(x, self.final_norm) @ self.lm_head.T
        return (logits, aux) if return_aux else logits

    def greedy(self, prompt_ids, n):
        """Greedy decoding with full recompute. Returns (ids [n], step_logits [n, vocab]) where
        step_logits[i] are the last-position logits of prompt + ids[:i] and ids[i] = argmax."""
        seq = [int(t) for t in prompt_ids]
        out, rows = [], []
        for _ in range(n):
            last = self.forward(seq)[-1]
            tok = int(np.argmax(last))        # first index on exact ties
            rows.append(last)
            out.append(tok)
            seq.append(tok)
        return np.array(out, dtype=np.int64), np.stack(rows)


def top2_margin(row):
    s = np.sort(row)
    return float(s[-1] - s[-2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--ids", required=True, help="comma-separated prompt token ids")
    ap.add_argument("--generate", type=int, default=0)
    a = ap.parse_args()
    m = Model(a.ckpt)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    logits = m.forward(ids)
    print("last-position top5:", np.argsort(-logits[-1])[:5].tolist())
    if a.generate:
        toks, _ = m.greedy(ids, a.generate)
        print("greedy:", toks.tolist())


if __name__ == "__main__":
    main()
