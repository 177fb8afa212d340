#!/usr/bin/python3
"""Writes a random-weight Qwen3-MoE checkpoint in Hugging Face layout for the
cluster benchmark (config.json + model.safetensors, BF16).

Default shape: hidden 1024, 4 layers, 16/4 heads of 64, 64 experts of width
384, top-8, vocabulary 32768: ~0.9 GB, ~160 MB read per decoded token, so a
decode step takes milliseconds on a CPU and fixed per-step costs (gRPC,
all-to-all) show in the ratio.

    /usr/bin/python3 bench/make_bench_model.py /tmp/moeserve-bench-model

Qwen3-30B-A3B's own dimensions, cut to 4 of its 48 layers (3.7 GB; the
serving benchmark's model):

    /usr/bin/python3 bench/make_bench_model.py /tmp/moeserve-bench-30b --hidden 2048 \
        --experts 128 --expert-width 768 --top-k 8 --vocab 151936 --heads 32 --kv-heads 4 \
        --head-dim 128
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from safetensors_io import f32_to_bf16_bits  # noqa: E402

CHUNK = 1 << 24  # elements generated and converted at a time


def write_streaming(path, specs, metadata):
    """Writes a BF16 safetensors file tensor by tensor, each generated in row chunks by
    its function, so that memory stays at one chunk whatever the checkpoint's size.
    specs: [(name, shape, fill(rows) -> float32 array [rows, *shape[1:]])]."""
    header, off = {"__metadata__": metadata}, 0
    for name, shape, _ in specs:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for _, shape, fill in specs:
            row = int(np.prod(shape[1:]))
            step = max(1, CHUNK // max(1, row))
            for r in range(0, shape[0], step):
                f.write(f32_to_bf16_bits(fill(min(step, shape[0] - r))).tobytes())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--experts", type=int, default=64)
    p.add_argument("--expert-width", type=int, default=384)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    a = p.parse_args()
    heads, kv_heads, head_dim = a.heads, a.kv_heads, a.head_dim
    h = a.hidden
    rng = np.random.default_rng(0)

    def bf16(*shape, scale=None):
        fan_in = shape[-1]

        def fill(rows):
            x = rng.standard_normal((rows,) + shape[1:], dtype=np.float32)
            return x * np.float32(scale or fan_in ** -0.5)
        return (shape, fill)

    def ones(n):
        return ((n,), lambda rows: np.ones(rows, np.float32))

    t = {"model.embed_tokens.weight": bf16(a.vocab, h, scale=0.02),
         "model.norm.weight": ones(h), "lm_head.weight": bf16(a.vocab, h)}
    for i in range(a.layers):
        pre = f"model.layers.{i}."
        t[pre + "input_layernorm.weight"] = ones(h)
        t[pre + "post_attention_layernorm.weight"] = ones(h)
        t[pre + "self_attn.q_proj.weight"] = bf16(heads * head_dim, h)
        t[pre + "self_attn.k_proj.weight"] = bf16(kv_heads * head_dim, h)
        t[pre + "self_attn.v_proj.weight"] = bf16(kv_heads * head_dim, h)
        t[pre + "self_attn.o_proj.weight"] = bf16(h, heads * head_dim)
        t[pre + "self_attn.q_norm.weight"] = ones(head_dim)
        t[pre + "self_attn.k_norm.weight"] = ones(head_dim)
        t[pre + "mlp.gate.weight"] = bf16(a.experts, h)
        for e in range(a.experts):
            ep = f"{pre}mlp.experts.{e}."
            t[ep + "gate_proj.weight"] = bf16(a.expert_width, h)
            t[ep + "up_proj.weight"] = bf16(a.expert_width, h)
            t[ep + "down_proj.weight"] = bf16(h, a.expert_width)
    os.makedirs(a.out, exist_ok=True)
    write_streaming(os.path.join(a.out, "model.safetensors"),
                    [(name, shape, fill) for name, (shape, fill) in t.items()], {"format": "pt"})
    config = {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": h, "num_hidden_layers": a.layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim, "vocab_size": a.vocab,
        "num_experts": a.experts, "num_experts_per_tok": a.top_k,
        "moe_intermediate_size": a.expert_width, "intermediate_size": 4 * h,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
        "sliding_window": None, "use_sliding_window": False,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(a.out)


if __name__ == "__main__":
    main()
