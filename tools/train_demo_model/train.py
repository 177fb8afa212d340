"""Trains moeserve's demo model: a small Qwen3-MoE on Jane Austen's six novels, with its own
byte-level BPE tokenizer, and writes it in Hugging Face layout.

    /usr/bin/python3 tools/train_demo_model/train.py --out models/austen-moe-6m
        [--deb r-cran-janeaustenr_1.0.0-1_all.deb] [--steps 1500] [--seed 1234]

Everything comes from Debian: the text from r-cran-janeaustenr (austen_data.py), torch from
python3-torch (run it with /usr/bin/python3; libopenblas0-pthread makes the matmuls ~10x faster).
The architecture is exactly HF's Qwen3MoeForCausalLM (per-head q/k RMSNorm before rotate-half
RoPE, GQA, softmax router with top-k renormalised, SwiGLU experts, untied lm_head), so moeserve
and transformers load the result as they load Qwen3-30B-A3B.

Data: each novel's lines are joined into paragraphs (one per blank-line-separated block, its line
breaks turned into spaces), paragraphs are separated by "\n\n" and novels by <|endoftext|>. The
last 5% of each novel's paragraphs are held out for validation; eval.json records the validation
loss and the perplexity of one held-out paragraph, computed from the saved bf16 weights, which
tests/demo_model_test.py checks moeserve reproduces.
"""
import argparse
import hashlib
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../../tests/reference"))
import austen_data  # noqa: E402
import bpe_fast  # noqa: E402
import bpe_tokenizer  # noqa: E402
import model_card  # noqa: E402
import safetensors_io  # noqa: E402

VOCAB = 2048
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
NUM_MERGES = VOCAB - 256 - len(SPECIALS)
HELD_OUT_FRACTION = 0.05

# A ChatML template (Qwen's message framing without tools or thinking). The model was trained on
# novels, not dialogues, so it continues text rather than answering; the template lets chat
# clients talk to it all the same.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def config_json(dtype="bfloat16"):
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": VOCAB - 3,
        "decoder_sparse_step": 1,
        "eos_token_id": VOCAB - 3,
        "head_dim": 32,
        "hidden_act": "silu",
        "hidden_size": 192,
        "initializer_range": 0.02,
        "intermediate_size": 768,
        "max_position_embeddings": 1024,
        "max_window_layers": 4,
        "mlp_only_layers": [],
        "model_type": "qwen3_moe",
        "moe_intermediate_size": 256,
        "norm_topk_prob": True,
        "num_attention_heads": 6,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "output_router_logits": False,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "router_aux_loss_coef": 0.01,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.57.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB,
    }


# ------------------------------------------------------------------------------------------------
# Data


def paragraphs(text):
    out = []
    for block in re.split(r"\n\s*\n", text):
        p = " ".join(block.split())
        if p:
            out.append(p)
    return out


def split_books(books):
    """{book: (train paragraphs, held-out paragraphs)}: the last 5% of each novel held out."""
    out = {}
    for name, text in books.items():
        ps = paragraphs(text)
        cut = int(len(ps) * (1 - HELD_OUT_FRACTION))
        out[name] = (ps[:cut], ps[cut:])
    return out


def scoring_paragraph(splits):
    """The held-out paragraph whose perplexity eval.json records: the first one of 400-800
    characters in Persuasion's held-out part."""
    return next(p for p in splits["persuasion"][1] if 400 <= len(p) <= 800)


class Encoder:
    """bpe_tokenizer.Tokenizer with a per-piece cache (the corpus repeats its words)."""

    def __init__(self, tj):
        self.tok = bpe_tokenizer.Tokenizer(tj)
        self.cache = {}

    def encode(self, text):
        ids = []
        for piece in bpe_tokenizer.qwen2_pretokenize(text):
            hit = self.cache.get(piece)
            if hit is None:
                hit = self.cache[piece] = self.tok._bpe(bpe_tokenizer.byte_level(piece))
            ids.extend(hit)
        return ids


def token_stream(enc, books_paragraphs, eot):
    ids = []
    for ps in books_paragraphs:
        for p in ps:
            ids.extend(enc.encode(p + "\n\n"))
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# Model: HF Qwen3-MoE in plain torch


class RMSNorm(torch.nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, D, theta, dtype):
    inv = theta ** (-(torch.arange(0, D // 2, dtype=torch.float64) * 2.0) / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rope(x, cos, sin):
    """x [B, heads, T, D], rotate-half."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        H, D = c["hidden_size"], c["head_dim"]
        self.nh, self.nkv, self.D = c["num_attention_heads"], c["num_key_value_heads"], D
        self.q_proj = torch.nn.Linear(H, self.nh * D, bias=False)
        self.k_proj = torch.nn.Linear(H, self.nkv * D, bias=False)
        self.v_proj = torch.nn.Linear(H, self.nkv * D, bias=False)
        self.o_proj = torch.nn.Linear(self.nh * D, H, bias=False)
        self.q_norm = RMSNorm(D, c["rms_norm_eps"])
        self.k_norm = RMSNorm(D, c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.nh, self.D)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.nkv, self.D)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.D).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.nh // self.nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.D) + mask
        y = torch.softmax(s, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.nh * self.D))


class Expert(torch.nn.Module):
    def __init__(self, H, W):
        super().__init__()
        self.gate_proj = torch.nn.Linear(H, W, bias=False)
        self.up_proj = torch.nn.Linear(H, W, bias=False)
        self.down_proj = torch.nn.Linear(W, H, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseMoe(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.E, self.k = c["num_experts"], c["num_experts_per_tok"]
        self.gate = torch.nn.Linear(c["hidden_size"], self.E, bias=False)
        self.experts = torch.nn.ModuleList(
            Expert(c["hidden_size"], c["moe_intermediate_size"]) for _ in range(self.E))

    def forward(self, x):
        """Returns (output, load-balancing loss) as HF's load_balancing_loss_func defines it:
        E * sum_e (fraction of routed slots on e) * (mean router probability of e)."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.gate(x), dim=-1)
        w, idx = probs.topk(self.k, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(self.E):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, self.experts[e](x[tok]) * w[tok, slot, None])
        frac = F.one_hot(idx, self.E).float().mean(dim=(0, 1))
        aux = self.E * (frac * probs.mean(0)).sum()
        return out.view(shape), aux


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = SparseMoe(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        y, aux = self.mlp(self.post_attention_layernorm(x))
        return x + y, aux


class Qwen3Moe(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = torch.nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=c["initializer_range"])

    def forward(self, ids):
        T = ids.shape[1]
        dtype = self.embed_tokens.weight.dtype
        cos, sin = rope_tables(T, self.c["head_dim"], self.c["rope_theta"], dtype)
        mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
        x = self.embed_tokens(ids)
        aux = 0.0
        for layer in self.layers:
            x, a = layer(x, cos, sin, mask)
            aux = aux + a
        return self.lm_head(self.norm(x)), aux / len(self.layers)

    def hf_state(self):
        """{HF tensor name: float32 array}."""
        return {("lm_head.weight" if k == "lm_head.weight" else "model." + k): v.detach().float().numpy()
                for k, v in self.state_dict().items()}


# ------------------------------------------------------------------------------------------------
# Training


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def mean_loss(model, data, seq, batches, batch, seed):
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(batches):
        starts = rng.integers(0, len(data) - seq - 1, size=batch)
        x = torch.from_numpy(np.stack([data[s:s + seq + 1] for s in starts]))
        logits, _ = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()
    return total / batches


def perplexity(model, ids):
    """exp(mean over positions 1..T-1 of -log p(ids[i] | ids[:i])), in float64."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
        lp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
        nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    return math.exp(nll.mean().item()), nll.sum().item()


def train(model, train_ids, val_ids, a, log):
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr, a.warmup)
        starts = rng.integers(0, len(train_ids) - a.seq - 1, size=a.batch)
        x = torch.from_numpy(np.stack([train_ids[s:s + a.seq + 1] for s in starts]))
        logits, aux = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        (loss + a.aux_coef * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            msg = f"step {step:5d}  loss {loss.item():.4f}  aux {aux.item():.4f}  " \
                  f"lr {opt.param_groups[0]['lr']:.2e}  {time.time() - t0:7.1f} s"
            if step % 250 == 0 or step == a.steps - 1:
                model.eval()
                msg += f"  val {mean_loss(model, val_ids, a.seq, 8, a.batch, 7):.4f}"
                model.train()
            log(msg)
    return time.time() - t0


# ------------------------------------------------------------------------------------------------
# Output


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def tokenizer_config():
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(VOCAB - len(SPECIALS) + i): {"content": s, "lstrip": False, "normalized": False,
                                             "rstrip": False, "single_word": False, "special": True}
            for i, s in enumerate(SPECIALS)},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 1024,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def generation_config():
    return {"bos_token_id": VOCAB - 3, "do_sample": True, "eos_token_id": [VOCAB - 3, VOCAB - 1],
            "pad_token_id": VOCAB - 3, "temperature": 0.8, "top_k": 50, "top_p": 0.95,
            "repetition_penalty": 1.1, "transformers_version": "4.57.0"}


def bf16_roundtrip(model):
    """The model with every parameter rounded to bf16 (as saved), computing in float64."""
    m = Qwen3Moe(model.c).double()
    with torch.no_grad():
        for (n, p), (_, q) in zip(model.named_parameters(), m.named_parameters()):
            bits = safetensors_io.f32_to_bf16_bits(p.detach().float().numpy())
            q.copy_(torch.from_numpy(safetensors_io.bf16_bits_to_f32(bits).astype(np.float64)))
    return m.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--deb", help="r-cran-janeaustenr .deb (default: apt-get download)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--aux-coef", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-batches", type=int, default=32,
                    help="held-out batches for the final loss (tests use fewer)")
    a = ap.parse_args()

    torch.set_num_threads(1)  # OpenBLAS threads the matmuls itself; two pools would fight
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    books = austen_data.load_books(a.deb)
    splits = split_books(books)
    train_text = [p for name in austen_data.BOOKS for p in splits[name][0]]
    merges = bpe_fast.train_bpe(train_text, NUM_MERGES)
    assert len(merges) == NUM_MERGES, len(merges)
    tj = bpe_tokenizer.build_tokenizer_json(merges, SPECIALS)
    enc = Encoder(tj)
    eot = VOCAB - 3
    train_ids = token_stream(enc, [splits[b][0] for b in austen_data.BOOKS], eot)
    val_ids = token_stream(enc, [splits[b][1] for b in austen_data.BOOKS], eot)
    log(f"tokenizer: {VOCAB} ids ({NUM_MERGES} merges); train {len(train_ids)} tokens, "
        f"held out {len(val_ids)} tokens")

    cfg = config_json()
    model = Qwen3Moe(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters")
    seconds = train(model, train_ids, val_ids, a, log)

    # Evaluate what is saved: the bf16-rounded weights, computed in float64.
    saved = bf16_roundtrip(model)
    val_loss = mean_loss(saved, val_ids, a.seq, a.eval_batches, a.batch, 99)
    para = scoring_paragraph(splits)
    para_ids = enc.encode(para)
    ppl, nll_sum = perplexity(saved, para_ids)
    log(f"final (bf16 weights): held-out loss {val_loss:.4f} (perplexity {math.exp(val_loss):.2f}); "
        f"scoring paragraph: {len(para_ids)} tokens, perplexity {ppl:.4f}")

    tensors = {k: ("BF16", v) for k, v in sorted(model.hf_state().items())}
    safetensors_io.write_safetensors(os.path.join(a.out, "model.safetensors"), tensors,
                                     {"format": "pt"})
    with open(os.path.join(a.out, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    write_json(os.path.join(a.out, "config.json"), cfg)
    write_json(os.path.join(a.out, "tokenizer.json"), tj)
    write_json(os.path.join(a.out, "tokenizer_config.json"), tokenizer_config())
    write_json(os.path.join(a.out, "generation_config.json"), generation_config())
    write_json(os.path.join(a.out, "eval.json"), {
        "held_out_loss": round(val_loss, 4),
        "held_out_perplexity": round(math.exp(val_loss), 3),
        "scoring_paragraph": para,
        "scoring_paragraph_tokens": len(para_ids),
        "scoring_paragraph_token_ids": para_ids,
        "scoring_paragraph_perplexity": ppl,
        "scoring_paragraph_nll_sum": nll_sum,
        "note": "perplexity = exp(mean over tokens 2..T of -log p(token | previous)), the first "
                "token unscored; computed from the saved bf16 weights in float64",
    })
    with open(os.path.join(a.out, "training_log.txt"), "w") as f:
        f.write("\n".join(log_lines) + "\n")
    summary = {"parameters": n_params, "steps": a.steps, "batch": a.batch, "seq": a.seq,
               "lr": a.lr, "warmup": a.warmup, "aux_coef": a.aux_coef, "seed": a.seed,
               "train_tokens": int(len(train_ids)), "held_out_tokens": int(len(val_ids)),
               "train_seconds": round(seconds), "final_train_loss_line": log_lines[-2],
               "sha256": sha}
    write_json(os.path.join(a.out, "training_summary.json"), summary)
    model_card.write_card(a.out)
    log(f"wrote {a.out} (model.safetensors sha256 {sha})")


if __name__ == "__main__":
    main()
