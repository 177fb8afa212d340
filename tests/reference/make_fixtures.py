#!/usr/bin/python3
"""Write the tiny HF-layout MoE checkpoints and their golden outputs under tests/fixtures/.

    /usr/bin/python3 tests/reference/make_fixtures.py [--only NAME[,NAME...]] [--out DIR]

Deterministic: every random draw comes from numpy's PCG64 seeded per fixture, BLAS is pinned
to one thread, and all JSON is written with sorted keys, so two runs give byte-identical files.
See tests/reference/README.md for what each fixture exercises.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # deterministic float64 reductions; must precede the numpy import

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import unicodedata  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe_tokenizer  # noqa: E402
import reference  # noqa: E402
import safetensors_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
GENERATOR = "tests/reference/make_fixtures.py"
N_GREEDY = 40
PROMPT_LEN = 12
MARGIN_TARGET = 1e-2        # preferred min top1-top2 logit gap over the greedy steps
MARGIN_FLOOR = 1e-3         # hard requirement
ROUTER_GAP_FLOOR = 1e-3     # min router-logit gap at the top-k boundary (so fp32 can't re-route)
MIN_DISTINCT = 18           # greedy continuation must not be degenerate ...
MAX_RUN = 3                 # ... nor repeat one token more than 3 times in a row

# ------------------------------------------------------------------------------------------------
# Prose for the chat fixture's BPE (original text, written for this file).
PROSE = [
    "The river ran low that summer, and the old ferryman spent his afternoons mending nets on "
    "the warm stones of the landing. Children came down from the village to watch him work. He "
    "told them that a good net is mostly holes, held together by patience, and that the same is "
    "true of a good story.",
    "In the morning the market filled with carts of apples, onions, and bread. Traders argued "
    "about the weather and the price of salt, while a dog slept in the shade of the fountain. By "
    "noon the square was quiet again, and the only sound was the clock striking twelve.",
    "She opened the notebook and read the first line twice. It was written in her grandmother's "
    "careful hand: \"Begin where you are, and go as far as the light lets you see.\" She turned "
    "the page and found a map of the garden, with every tree numbered and named.",
    "Engineers like to say that a system is only as fast as its slowest part. When the machine "
    "waits for memory, the processor sits idle; when the memory waits for the network, both of "
    "them sit idle. The art is to keep every part busy without letting any of them fall behind.",
    "On the third day the wind changed. The sailors raised the small sail, checked the ropes, "
    "and watched the clouds gather in the west. Nobody spoke much. They had been at sea long "
    "enough to know that the weather does not listen, but it always answers.",
    "What makes a question worth asking? Perhaps it is one whose answer would change what you "
    "do next. Ask it plainly, write down what you expect, and then look carefully at what "
    "happens. You'll learn more from the surprise than from the agreement.",
]

# The real Qwen3 chat template, verbatim (the tokenizer package's copy of the
# one in Qwen3's tokenizer_config.json), so the fixture's template is what a
# real checkpoint carries.
CHAT_TEMPLATE = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "tokenizer", "testdata", "chat_templates", "qwen3.jinja"),
                     encoding="utf-8").read()

CHAT_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Tell me about the river and the old ferryman."},
]

TOKENIZER_CASES = [
    "Hello world",
    "The ferryman's nets weren't torn; they'll hold. I'M SURE YOU'D AGREE.",
    "Numbers: 12345 and 3.14159, dates like 2024-06-30.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\r\n\n  indented line\n",
    "Unicode: caf\u00e9 na\u0131ve \u00fcber \u4e2d\u6587\u5b57 \u3053\u3093\u306b\u3061\u306f "
    "emoji \U0001F600\U0001F680 dash \u2014 end",
    "decomposed e\u0301 becomes composed by NFC",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "punctuation!!! ...and (brackets) [x] {y} \"quotes\" 'single' #hash @at",
]

# ------------------------------------------------------------------------------------------------
# Fixture specs


def _base_mixtral(dtype):
    return {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 48,
        "initializer_range": 0.02,
        "intermediate_size": 32,
        "max_position_embeddings": 256,
        "model_type": "mixtral",
        "num_attention_heads": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 3,
        "num_key_value_heads": 2,
        "num_local_experts": 8,
        "output_router_logits": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.02,
        "router_jitter_noise": 0.0,
        "sliding_window": 20,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": 320,
    }


def _base_qwen2(dtype):
    return {
        "architectures": ["Qwen2MoeForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 317,
        "decoder_sparse_step": 2,
        "eos_token_id": 317,
        "hidden_act": "silu",
        "hidden_size": 40,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
        "max_window_layers": 6,
        "mlp_only_layers": [3],
        "model_type": "qwen2_moe",
        "moe_intermediate_size": 32,
        "norm_topk_prob": False,
        "num_attention_heads": 4,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 6,
        "num_key_value_heads": 2,
        "output_router_logits": False,
        "qkv_bias": True,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001,
        "shared_expert_intermediate_size": 48,
        "sliding_window": 16,            # ignored by transformers: use_sliding_window is false
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.46.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 320,
    }


def _base_qwen3(dtype, vocab=320, bos=317, eos=319):
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "decoder_sparse_step": 1,
        "eos_token_id": eos,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 40,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
        "max_window_layers": 4,
        "mlp_only_layers": [2],
        "model_type": "qwen3_moe",
        "moe_intermediate_size": 32,
        "norm_topk_prob": True,
        "num_attention_heads": 4,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "output_router_logits": False,
        "rms_norm_eps": 1e-06,
        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
        "router_aux_loss_coef": 0.001,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.57.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }


def _base_olmoe(dtype):
    return {
        "architectures": ["OlmoeForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "clip_qkv": 2.0,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 48,
        "initializer_range": 0.02,
        "intermediate_size": 32,
        "max_position_embeddings": 256,
        "model_type": "olmoe",
        "norm_topk_prob": False,
        "num_attention_heads": 4,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 3,
        "num_key_value_heads": 2,
        "output_router_logits": False,
        "pad_token_id": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "router_aux_loss_coef": 0.01,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": 320,
    }


def _qwen3_tied_f16():
    c = _base_qwen3("float16")
    del c["rope_parameters"]
    c["rope_theta"] = 10000.0
    c["rope_scaling"] = None
    c["tie_word_embeddings"] = True
    c["mlp_only_layers"] = []
    c["decoder_sparse_step"] = 1
    return c


def _qwen3_merged():
    c = _base_qwen3("bfloat16")
    c["transformers_version"] = "5.0.0"
    return c


GEN_MIXTRAL = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2}
GEN_QWEN2 = {"bos_token_id": 317, "do_sample": False, "eos_token_id": 317, "max_new_tokens": 2048}
GEN_QWEN3 = {"bos_token_id": 317, "do_sample": True, "eos_token_id": [319, 317], "pad_token_id": 317,
             "temperature": 0.6, "top_k": 20, "top_p": 0.95}
GEN_OLMOE = {"_from_model_config": True, "eos_token_id": 2, "pad_token_id": 1}

FIXTURES = [
    {"name": "mixtral_f32", "seed": 101, "dtype": "F32", "config": _base_mixtral("float32"),
     "gen": GEN_MIXTRAL, "layout": "per-expert",
     "description": "MixtralForCausalLM, F32, per-expert block_sparse_moe.experts.{j}.w1/w2/w3, "
                    "softmax top-2 always renormalised, GQA 4q/2kv, sliding_window=20 < prompt+generation "
                    "(query p sees keys p-19..p), rope_theta 1e6"},
    {"name": "mixtral_bf16", "seed": 101, "dtype": "BF16", "config": _base_mixtral("bfloat16"),
     "gen": GEN_MIXTRAL, "layout": "per-expert",
     "description": "mixtral_f32's weights rounded to BF16 (RNE) and stored as BF16; golden computed from "
                    "the BF16 values upcast exactly"},
    {"name": "qwen2_moe_f32", "seed": 202, "dtype": "F32", "config": _base_qwen2("float32"),
     "gen": GEN_QWEN2, "layout": "per-expert",
     "description": "Qwen2MoeForCausalLM, F32: q/k/v biases (qkv_bias), shared expert (width 48) with sigmoid "
                    "shared_expert_gate, decoder_sparse_step=2 + mlp_only_layers=[3] -> MoE layers 1,5 and "
                    "dense SwiGLU (width 64) layers 0,2,3,4, norm_topk_prob=false (top-2 softmax weights not "
                    "renormalised), sliding_window=16 present but ignored (use_sliding_window=false)"},
    {"name": "qwen3_moe_f32", "seed": 303, "dtype": "F32", "config": _base_qwen3("float32"),
     "gen": GEN_QWEN3, "layout": "per-expert",
     "description": "Qwen3MoeForCausalLM, F32: per-head q_norm/k_norm (RMSNorm over head_dim, before RoPE), "
                    "head_dim=16 != hidden/heads=10, norm_topk_prob=true, mlp_only_layers=[2] (dense layer 2), "
                    "rope_theta only inside rope_parameters"},
    {"name": "qwen3_moe_bf16_merged_sharded", "seed": 303, "dtype": "BF16", "config": _qwen3_merged(),
     "gen": GEN_QWEN3, "layout": "merged", "shards": 3,
     "description": "qwen3_moe_f32's model in BF16 with transformers-v5 merged experts "
                    "(mlp.experts.gate_up_proj [E,2F,H]: gate rows 0..F-1, up rows F..2F-1; "
                    "mlp.experts.down_proj [E,H,F]), split into 3 shards + model.safetensors.index.json"},
    {"name": "qwen3_moe_tied_f16", "seed": 404, "dtype": "F16", "config": _qwen3_tied_f16(),
     "gen": GEN_QWEN3, "layout": "per-expert",
     "out_gain": 3.0,  # tied models otherwise loop on the embedding of their last token
     "description": "Qwen3MoeForCausalLM, F16 weights, tie_word_embeddings=true (no lm_head.weight in the "
                    "file: logits use model.embed_tokens.weight), top-level rope_theta=10000, all layers MoE"},
    {"name": "olmoe_f32", "seed": 505, "dtype": "F32", "config": _base_olmoe("float32"),
     "gen": GEN_OLMOE, "layout": "per-expert",
     "description": "OlmoeForCausalLM, F32: q_norm over the whole q projection [heads*head_dim], k_norm over "
                    "[kv_heads*head_dim], then clip_qkv=2.0 clamps q, k and v (norm first, then clamp), "
                    "norm_topk_prob=false, GQA 4q/2kv"},
    {"name": "olmoe_bf16", "seed": 505, "dtype": "BF16", "config": _base_olmoe("bfloat16"),
     "gen": GEN_OLMOE, "layout": "per-expert",
     "description": "olmoe_f32's weights stored as BF16"},
    {"name": "qwen3_moe_chat", "seed": 606, "dtype": "BF16", "config": None, "gen": None,
     "layout": "per-expert", "chat": True,
     "description": "Qwen3MoeForCausalLM (BF16) with a byte-level BPE tokenizer.json (Qwen2 split regex, "
                    "NFC, ByteLevel) trained on embedded prose, specials <|endoftext|> <|im_start|> <|im_end|>, "
                    "ChatML chat_template; prompt_ids = encode(chat_template(messages, "
                    "add_generation_prompt=True))"},
]

# ------------------------------------------------------------------------------------------------
# Weights


def _norm_vec(rng, n):
    return 1.0 + 0.3 * rng.standard_normal(n)


def _lin(rng, out_f, in_f, gain=1.0):
    return rng.standard_normal((out_f, in_f)) * (gain / np.sqrt(in_f))


def make_weights(cfg, seed, out_gain=1.0):
    """Module-order list of (name, float64 array) for `cfg` in HF per-expert naming.
    Mixtral experts use block_sparse_moe.experts.{j}.w1/w3/w2 (gate/up/down). `out_gain` scales
    the projections that write into the residual stream (o_proj, down projections)."""
    c = reference.Config(cfg)
    rng = np.random.default_rng(seed)
    H, D, nh, nkv, V = c.hidden, c.head_dim, c.heads, c.kv_heads, c.vocab
    # A tied embedding doubles as the output matrix: scale it like lm_head so the logits have a
    # spread of a few units (RMSNorm makes the input scale irrelevant to the first layer).
    emb_scale = 3.0 / np.sqrt(H) if c.tie else 1.0
    W = [("model.embed_tokens.weight", rng.standard_normal((V, H)) * emb_scale)]
    for i in range(c.layers):
        p = f"model.layers.{i}."
        W.append((p + "input_layernorm.weight", _norm_vec(rng, H)))
        W.append((p + "self_attn.q_proj.weight", _lin(rng, nh * D, H)))
        if c.qkv_bias:
            W.append((p + "self_attn.q_proj.bias", 0.3 * rng.standard_normal(nh * D)))
        W.append((p + "self_attn.k_proj.weight", _lin(rng, nkv * D, H)))
        if c.qkv_bias:
            W.append((p + "self_attn.k_proj.bias", 0.3 * rng.standard_normal(nkv * D)))
        W.append((p + "self_attn.v_proj.weight", _lin(rng, nkv * D, H)))
        if c.qkv_bias:
            W.append((p + "self_attn.v_proj.bias", 0.3 * rng.standard_normal(nkv * D)))
        W.append((p + "self_attn.o_proj.weight", _lin(rng, H, nh * D, gain=out_gain)))
        if c.o_bias:
            W.append((p + "self_attn.o_proj.bias", 0.3 * rng.standard_normal(H)))
        if c.qk_norm == "head":
            W.append((p + "self_attn.q_norm.weight", _norm_vec(rng, D)))
            W.append((p + "self_attn.k_norm.weight", _norm_vec(rng, D)))
        elif c.qk_norm == "full":
            W.append((p + "self_attn.q_norm.weight", _norm_vec(rng, nh * D)))
            W.append((p + "self_attn.k_norm.weight", _norm_vec(rng, nkv * D)))
        W.append((p + "post_attention_layernorm.weight", _norm_vec(rng, H)))
        if c.moe_layer[i]:
            E, F = c.experts, c.expert_ffn
            if c.arch == "mixtral":
                pre, (g, u, d) = p + "block_sparse_moe.", ("w1", "w3", "w2")
            else:
                pre, (g, u, d) = p + "mlp.", ("gate_proj", "up_proj", "down_proj")
            W.append((pre + "gate.weight", _lin(rng, E, H, gain=2.0)))
            for j in range(E):
                W.append((f"{pre}experts.{j}.{g}.weight", _lin(rng, F, H)))
                W.append((f"{pre}experts.{j}.{u}.weight", _lin(rng, F, H)))
                W.append((f"{pre}experts.{j}.{d}.weight", _lin(rng, H, F, gain=out_gain)))
            if c.arch == "qwen2_moe":
                S = c.shared_ffn
                W.append((pre + "shared_expert.gate_proj.weight", _lin(rng, S, H)))
                W.append((pre + "shared_expert.up_proj.weight", _lin(rng, S, H)))
                W.append((pre + "shared_expert.down_proj.weight", _lin(rng, H, S, gain=out_gain)))
                W.append((pre + "shared_expert_gate.weight", _lin(rng, 1, H, gain=2.0)))
        else:
            F = c.dense_ffn
            W.append((p + "mlp.gate_proj.weight", _lin(rng, F, H)))
            W.append((p + "mlp.up_proj.weight", _lin(rng, F, H)))
            W.append((p + "mlp.down_proj.weight", _lin(rng, H, F, gain=out_gain)))
    W.append(("model.norm.weight", _norm_vec(rng, H)))
    lm = _lin(rng, V, H, gain=3.0)
    if not c.tie:
        W.append(("lm_head.weight", lm))
    return W


def merge_experts(W, cfg):
    """Per-expert -> transformers-v5 merged layout: experts.gate_up_proj [E, 2F, H] =
    concat(gate, up) along dim 1, experts.down_proj [E, H, F]. Keeps module order."""
    c = reference.Config(cfg)
    d = dict(W)
    out = []
    done = set()
    for name, arr in W:
        if ".experts." not in name or ".shared_expert" in name:
            out.append((name, arr))
            continue
        pre = name[:name.index(".experts.") + len(".experts.")]
        if pre in done:
            continue
        done.add(pre)
        E = c.experts
        gate = np.stack([d[f"{pre}{j}.gate_proj.weight"] for j in range(E)])
        up = np.stack([d[f"{pre}{j}.up_proj.weight"] for j in range(E)])
        down = np.stack([d[f"{pre}{j}.down_proj.weight"] for j in range(E)])
        out.append((pre + "gate_up_proj", np.concatenate([gate, up], axis=1)))
        out.append((pre + "down_proj", down))
    return out


def stored(arr, dtype):
    """Round a float64 array to the storage dtype (returned as the array written to disk)."""
    if dtype == "F32":
        return arr.astype(np.float32)
    if dtype == "F16":
        return arr.astype(np.float16)
    if dtype == "BF16":
        return safetensors_io.f32_to_bf16_bits(arr.astype(np.float32))
    raise ValueError(dtype)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------
# Tokenizer (chat fixture)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
NUM_MERGES = 200


def build_tokenizer():
    merges = bpe_tokenizer.train_bpe(PROSE, NUM_MERGES)
    tj = bpe_tokenizer.build_tokenizer_json(merges, SPECIALS)
    return tj


def tokenizer_config(tj):
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t["id"]): {"content": t["content"], "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for t in tj["added_tokens"]},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 256,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }, ids


def render_chat(messages, add_generation_prompt=True, **kw):
    """Render like transformers' apply_chat_template: jinja2 with trim_blocks + lstrip_blocks."""
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(CHAT_TEMPLATE).render(messages=messages,
                                                 add_generation_prompt=add_generation_prompt, **kw)


# ------------------------------------------------------------------------------------------------
# Golden


def evaluate_prompt(model, prompt, special_ids):
    greedy, rows = model.greedy(prompt, N_GREEDY)
    margins = [reference.top2_margin(r) for r in rows]
    full = list(prompt) + [int(t) for t in greedy[:-1]]
    _, aux = model.forward(full, return_aux=True)
    ok_tokens = not any(int(t) in special_ids for t in greedy)
    run, longest = 1, 1
    for a, b in zip(greedy[:-1], greedy[1:]):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    return {"greedy": greedy, "rows": rows, "min_margin": min(margins), "aux": aux,
            "distinct": len(set(int(t) for t in greedy)), "no_special": ok_tokens, "longest_run": longest}


def choose_prompt(model, spec, special_ids, fixed_prompt=None):
    V = model.cfg.vocab
    candidates = []
    if fixed_prompt is not None:
        candidates.append((None, fixed_prompt))
    else:
        for ps in range(200):
            rng = np.random.default_rng([spec["seed"], 7777, ps])
            allowed = np.array([t for t in range(V) if t not in special_ids])
            candidates.append((ps, [int(t) for t in rng.choice(allowed, size=PROMPT_LEN)]))
    fallback = None
    stats = []
    for ps, prompt in candidates:
        r = evaluate_prompt(model, prompt, special_ids)
        stats.append((round(r["min_margin"], 4), round(r["aux"]["min_router_gap"], 4), r["distinct"],
                      r["no_special"]))
        good = (r["min_margin"] >= MARGIN_FLOOR and r["aux"]["min_router_gap"] >= ROUTER_GAP_FLOOR
                and r["distinct"] >= MIN_DISTINCT and r["longest_run"] <= MAX_RUN and r["no_special"])
        if good and r["min_margin"] >= MARGIN_TARGET:
            return ps, prompt, r
        if good and fallback is None:
            fallback = (ps, prompt, r)
    if fallback is not None:
        return fallback
    raise RuntimeError(f"{spec['name']}: no prompt met the margin / routing / diversity requirements: "
                       f"(margin, router_gap, distinct, no_special) for the first tries: {stats[:10]}")


def make_fixture(spec, out_root):
    name = spec["name"]
    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    extra_meta = {}
    fixed_prompt = None
    if spec.get("chat"):
        tj = build_tokenizer()
        tok = bpe_tokenizer.Tokenizer(tj)
        tcfg, sid = tokenizer_config(tj)
        ntok = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
        vocab = ((ntok + 63) // 64) * 64
        cfg = _base_qwen3("bfloat16", vocab=vocab, bos=sid["<|endoftext|>"], eos=sid["<|im_end|>"])
        gen = {"bos_token_id": sid["<|endoftext|>"], "do_sample": True,
               "eos_token_id": [sid["<|im_end|>"], sid["<|endoftext|>"]], "pad_token_id": sid["<|endoftext|>"],
               "temperature": 0.6, "top_k": 20, "top_p": 0.95}
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:  # HF key order (vocab by id)
            f.write(json.dumps(tj, indent=2, ensure_ascii=False) + "\n")
        write_json(os.path.join(d, "tokenizer_config.json"), tcfg)
        text = render_chat(CHAT_MESSAGES, add_generation_prompt=True)
        fixed_prompt = tok.encode(text)
        assert tok.decode(fixed_prompt) == text
        extra_meta["prompt_text"] = text
        extra_meta["tokenizer_size"] = str(ntok)
        cases = [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_CASES]
        for cs in cases:
            dec = tok.decode(cs["ids"])
            assert dec == unicodedata.normalize("NFC", cs["text"]), cs
        write_json(os.path.join(d, "tokenizer_cases.json"), {
            "generator": GENERATOR,
            "note": "encode(text) with tokenizer.json (added tokens split first, then NFC, Qwen2 split "
                    "regex, byte-level, BPE); decode(ids) == NFC(text)",
            "cases": cases,
            "chat": {"messages": CHAT_MESSAGES, "add_generation_prompt": True, "rendered": text,
                     "ids": fixed_prompt,
                     "rendered_no_thinking": render_chat(CHAT_MESSAGES, True, enable_thinking=False)},
        })
        special_ids = set(sid.values())
    else:
        cfg = copy.deepcopy(spec["config"])
        gen = dict(spec["gen"])
        special_ids = set()
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            v = cfg.get(k)
            special_ids.update(v if isinstance(v, list) else ([v] if v is not None else []))
        for k in ("eos_token_id",):
            v = gen.get(k)
            special_ids.update(v if isinstance(v, list) else ([v] if v is not None else []))
    gen["transformers_version"] = cfg["transformers_version"]

    write_json(os.path.join(d, "config.json"), cfg)
    write_json(os.path.join(d, "generation_config.json"), gen)

    # Weights seed: spec["seed"]; a fixture with a fixed prompt (chat) moves on to the next seed
    # when the prompt's greedy run misses the margin / routing / diversity requirements.
    for wseed in range(spec["seed"], spec["seed"] + (50 if fixed_prompt is not None else 1)):
        W = make_weights(cfg, wseed, out_gain=spec.get("out_gain", 1.0))
        if spec["layout"] == "merged":
            W = merge_experts(W, cfg)
        dt = spec["dtype"]
        items = [(n, dt, stored(a, dt)) for n, a in W]
        if spec.get("shards"):
            safetensors_io.write_sharded(d, items, spec["shards"], metadata={"format": "pt"})
        else:
            safetensors_io.write_safetensors(os.path.join(d, "model.safetensors"),
                                             sorted(items, key=lambda it: it[0]), metadata={"format": "pt"})
        model = reference.Model(d)
        try:
            ps, prompt, r = choose_prompt(model, spec, special_ids, fixed_prompt)
            break
        except RuntimeError:
            if wseed == spec["seed"] + (49 if fixed_prompt is not None else 0):
                raise
    prompt_logits = model.forward(prompt)
    assert np.array_equal(prompt_logits[-1], r["rows"][0])
    meta = {
        "min_margin": "%.6g" % r["min_margin"],
        "generator": GENERATOR,
        "description": spec["description"],
        "min_router_gap": "%.6g" % r["aux"]["min_router_gap"],
        "distinct_greedy_tokens": str(r["distinct"]),
        "weights_seed": str(wseed),
        "prompt_seed": "chat" if ps is None else str(ps),
        "note": "decode_logits[i] = logits at the last position of prompt_ids + greedy_ids[:i]; "
                "greedy_ids[i] = argmax(decode_logits[i]); generation ignores EOS (none is produced); "
                "logits computed in float64 (tests/reference/reference.py) and stored as F32",
    }
    if r["aux"]["clip_total"]:
        meta["clip_fraction"] = "%.4f" % (r["aux"]["clipped"] / r["aux"]["clip_total"])
    if model.cfg.sliding_window is not None:
        full = list(prompt) + [int(t) for t in r["greedy"][:-1]]
        a = model.forward(full)
        model.cfg.sliding_window = None
        b = model.forward(full)
        model.cfg.sliding_window = cfg["sliding_window"]
        meta["sliding_window_effect"] = "%.4f" % float(np.abs(a - b).max())
    meta.update(extra_meta)
    golden = [
        ("prompt_ids", "I32", np.array(prompt, dtype=np.int32)),
        ("prompt_logits", "F32", prompt_logits.astype(np.float32)),
        ("greedy_ids", "I32", r["greedy"].astype(np.int32)),
        ("decode_logits", "F32", r["rows"].astype(np.float32)),
    ]
    safetensors_io.write_safetensors(os.path.join(d, "golden.safetensors"), golden, metadata=meta)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name:32s} {model.cfg.arch:10s} {dt:5s} {spec['layout']:10s} L={model.cfg.layers} "
          f"P={len(prompt):3d} N={N_GREEDY} min_margin={r['min_margin']:.4f} "
          f"router_gap={r['aux']['min_router_gap']:.4f} distinct={r['distinct']:2d} "
          f"size={size / 1024:.0f}KiB" + (f" clip={meta['clip_fraction']}" if "clip_fraction" in meta else "")
          + (f" sw_effect={meta['sliding_window_effect']}" if "sliding_window_effect" in meta else ""))
    return {"name": name, "size": size, "min_margin": r["min_margin"], "P": len(prompt)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    a = ap.parse_args()
    only = set(s for s in a.only.split(",") if s)
    os.makedirs(a.out, exist_ok=True)
    for spec in FIXTURES:
        if only and spec["name"] not in only:
            continue
        make_fixture(spec, a.out)


if __name__ == "__main__":
    main()
